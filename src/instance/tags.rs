//! An instance's tags and their limits.

use std::collections::{btree_map, BTreeMap};
use std::fmt;
use std::iter::FusedIterator;

use serde::{Deserialize, Serialize};

use super::Instance;
use crate::error::ValidationError;

/// Tags of an instance: string keys to string values, e.g. `zone=a`,
/// in key order.
///
/// An [`Instance`] holds tags within its limits
/// ([`MAX_TAGS`](Instance::MAX_TAGS), [`MAX_TAG_LEN`](Instance::MAX_TAG_LEN));
/// they are set with [`Instance::with_tag`] and [`Instance::with_tags`] and
/// read with [`Instance::tags`]. They serialize as a JSON object, as in the
/// stored entry.
///
/// ```
/// use redis_discovery::{Instance, Tags};
///
/// let instance = Instance::new("10.0.0.7:8080")?.with_tags([("zone", "eu-1a"), ("env", "prod")])?;
/// let tags: &Tags = instance.tags();
/// assert_eq!(tags.get("zone"), Some("eu-1a"));
/// assert!(tags.contains_key("env") && !tags.contains_key("rack"));
/// assert_eq!(tags.len(), 2);
/// // In key order.
/// let pairs: Vec<(&str, &str)> = tags.iter().collect();
/// assert_eq!(pairs, [("env", "prod"), ("zone", "eu-1a")]);
/// assert_eq!(serde_json::to_string(tags).unwrap(), r#"{"env":"prod","zone":"eu-1a"}"#);
/// // Copied to another instance (checked again there).
/// let other = Instance::new("10.0.0.8:8080")?.with_tags(tags)?;
/// assert_eq!(other.tags(), tags);
/// # Ok::<(), redis_discovery::ValidationError>(())
/// ```
// Transparent: the stored entry's `tags` object is the map itself, so
// entries encode and decode byte for byte as before.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tags(BTreeMap<String, String>);

impl Tags {
    /// No tags.
    pub fn new() -> Self {
        Tags(BTreeMap::new())
    }

    /// The value of the tag `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Whether there is a tag `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// The number of tags.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no tags.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tags as `(key, value)`, in key order.
    pub fn iter(&self) -> TagsIter<'_> {
        TagsIter(self.0.iter())
    }

    /// Adds or replaces one tag (unchecked: the instance checks).
    pub(super) fn insert(&mut self, key: String, value: String) {
        self.0.insert(key, value);
    }

    /// Fails if there are too many tags or one is empty or too long.
    pub(super) fn validate(&self) -> Result<(), ValidationError> {
        if self.len() > Instance::MAX_TAGS {
            return Err(ValidationError::TooManyTags { count: self.len() });
        }
        self.iter().try_for_each(|(k, v)| validate_tag(k, v))
    }
}

impl fmt::Debug for Tags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Tags {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Tags(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl<K: Into<String>, V: Into<String>, const N: usize> From<[(K, V); N]> for Tags {
    fn from(pairs: [(K, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a Tags {
    type Item = (&'a str, &'a str);
    type IntoIter = TagsIter<'a>;

    fn into_iter(self) -> TagsIter<'a> {
        self.iter()
    }
}

/// The tags of [`Tags::iter`], `(key, value)` in key order.
///
/// ```
/// use redis_discovery::Instance;
///
/// let instance = Instance::new("10.0.0.7:8080")?.with_tag("zone", "eu-1a")?;
/// for (key, value) in instance.tags() {
///     assert_eq!((key, value), ("zone", "eu-1a"));
/// }
/// # Ok::<(), redis_discovery::ValidationError>(())
/// ```
#[derive(Clone, Debug)]
pub struct TagsIter<'a>(btree_map::Iter<'a, String, String>);

impl<'a> Iterator for TagsIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for TagsIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl ExactSizeIterator for TagsIter<'_> {}

impl FusedIterator for TagsIter<'_> {}

/// Fails if `key` is empty or `key` or `value` is too long.
pub(super) fn validate_tag(key: &str, value: &str) -> Result<(), ValidationError> {
    if key.is_empty() {
        return Err(ValidationError::EmptyTagKey);
    }
    if key.len() > Instance::MAX_TAG_LEN || value.len() > Instance::MAX_TAG_LEN {
        return Err(ValidationError::TagTooLong {
            key: key.chars().take(64).collect(),
        });
    }
    Ok(())
}
