//! Tag filters: select the instances that carry some tags.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::Instance;

/// Selects the instances whose tags contain all of the filter's `key=value`
/// pairs; the empty filter selects every instance.
///
/// The string form is `key=value,key2=value2` ([`Display`](fmt::Display) and
/// [`FromStr`]). Whitespace around keys and values is ignored, as are empty
/// pairs; a `,`, `=` or `\` inside a key or value is written `\,`, `\=` or
/// `\\`. Keys must not be empty; values may be.
///
/// ```
/// use redis_discovery::balance::{Fallback, TagFilter};
/// use redis_discovery::Instance;
///
/// let filter = TagFilter::new().with("zone", "a").with("tier", "gold");
/// assert_eq!(filter.to_string(), "tier=gold,zone=a");
/// assert_eq!("zone=a, tier=gold".parse::<TagFilter>()?, filter);
///
/// let instances = [
///     Instance::new("10.0.0.1:80")?.with_tag("zone", "a")?.with_tag("tier", "gold")?,
///     Instance::new("10.0.0.2:80")?.with_tag("zone", "b")?.with_tag("tier", "gold")?,
/// ];
/// assert!(filter.matches(&instances[0]));
/// assert!(!filter.matches(&instances[1]));
///
/// let selected = filter.select(&instances, Fallback::Fail).expect("one matches");
/// assert_eq!(selected.len(), 1);
/// assert_eq!(selected[0].addr(), "10.0.0.1:80");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TagFilter {
    pairs: BTreeMap<String, String>,
}

/// What to do when a [`TagFilter`] selects no instance with weight > 0.
///
/// ```
/// use redis_discovery::balance::{Fallback, TagFilter};
/// use redis_discovery::Instance;
///
/// let instances = [Instance::new("10.0.0.1:80")?.with_tag("zone", "b")?];
/// let filter: TagFilter = "zone=a".parse()?;
/// assert!(filter.select(&instances, Fallback::Fail).is_none());
/// let all = filter.select(&instances, Fallback::AllInstances).expect("all");
/// assert_eq!(all.len(), 1);
/// assert_eq!(Fallback::default(), Fallback::Fail);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fallback {
    /// Use every instance of the service, as if there were no filter: the
    /// filter is a preference (e.g. "my zone if it has any instance").
    AllInstances,
    /// Fail the request with "no instance": the filter is a requirement
    /// (the default; sending traffic where it was not asked to go should be
    /// a choice).
    #[default]
    Fail,
}

impl TagFilter {
    /// The empty filter: selects every instance.
    pub fn new() -> Self {
        TagFilter::default()
    }

    /// Adds a required `key=value` pair (replacing an earlier value of `key`).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.pairs.insert(key.into(), value.into());
        self
    }

    /// Whether the filter has no pair (and so selects every instance).
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The pairs, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether `instance` has every pair of the filter among its tags.
    pub fn matches(&self, instance: &Instance) -> bool {
        self.pairs
            .iter()
            .all(|(key, value)| instance.tag(key) == Some(value.as_str()))
    }

    /// The instances to build a picker from: those that match, if any of
    /// them has weight > 0; otherwise all of them with
    /// [`Fallback::AllInstances`], or `None` with [`Fallback::Fail`].
    ///
    /// Borrows `instances` when every instance is selected (always with the
    /// empty filter), so unfiltered services cost nothing.
    pub fn select<'a>(
        &self,
        instances: &'a [Instance],
        fallback: Fallback,
    ) -> Option<Cow<'a, [Instance]>> {
        if self.is_empty() {
            return Some(Cow::Borrowed(instances));
        }
        let matching = instances.iter().filter(|i| self.matches(i));
        if matching.clone().any(|i| i.weight() > 0) {
            let count = matching.clone().count();
            if count == instances.len() {
                return Some(Cow::Borrowed(instances));
            }
            return Some(Cow::Owned(matching.cloned().collect()));
        }
        match fallback {
            Fallback::AllInstances => Some(Cow::Borrowed(instances)),
            Fallback::Fail => None,
        }
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for TagFilter {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        pairs
            .into_iter()
            .fold(TagFilter::new(), |filter, (k, v)| filter.with(k, v))
    }
}

impl fmt::Display for TagFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn escaped(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
            for c in s.chars() {
                if matches!(c, ',' | '=' | '\\') {
                    f.write_str("\\")?;
                }
                fmt::Write::write_char(f, c)?;
            }
            Ok(())
        }
        for (n, (key, value)) in self.pairs.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            escaped(f, key)?;
            f.write_str("=")?;
            escaped(f, value)?;
        }
        Ok(())
    }
}

/// Why a string is not a [`TagFilter`].
///
/// ```
/// use redis_discovery::balance::{ParseTagFilterError, TagFilter};
///
/// let err = "zone=a,zone=b".parse::<TagFilter>().unwrap_err();
/// assert_eq!(err, ParseTagFilterError::DuplicateKey { key: "zone".into() });
/// assert_eq!(err.to_string(), r#"invalid tag filter: the key "zone" appears twice"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseTagFilterError {
    /// A pair has no unescaped `=`.
    #[error("invalid tag filter: {pair:?} is not key=value")]
    MissingEquals {
        /// The pair, as written.
        pair: String,
    },
    /// A pair has an empty key.
    #[error("invalid tag filter: {pair:?} has an empty key")]
    EmptyKey {
        /// The pair, as written.
        pair: String,
    },
    /// A key appears twice.
    #[error("invalid tag filter: the key {key:?} appears twice")]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// A `\` is followed by something else than `,`, `=` or `\`.
    #[error("invalid tag filter: in {pair:?}, `\\` must be followed by `,`, `=` or `\\`")]
    BadEscape {
        /// The pair, as written.
        pair: String,
    },
}

impl FromStr for TagFilter {
    type Err = ParseTagFilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut filter = TagFilter::new();
        for pair in split_unescaped(s, ',') {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let mut halves = split_unescaped(pair, '=');
            let (Some(key), Some(_)) = (halves.next(), halves.next()) else {
                return Err(ParseTagFilterError::MissingEquals { pair: pair.into() });
            };
            // The value is everything after the first unescaped `=`.
            let value = &pair[key.len() + 1..];
            let bad_escape = || ParseTagFilterError::BadEscape { pair: pair.into() };
            let key = unescape(key.trim()).ok_or_else(bad_escape)?;
            let value = unescape(value.trim()).ok_or_else(bad_escape)?;
            if key.is_empty() {
                return Err(ParseTagFilterError::EmptyKey { pair: pair.into() });
            }
            if filter.pairs.contains_key(&key) {
                return Err(ParseTagFilterError::DuplicateKey { key });
            }
            filter.pairs.insert(key, value);
        }
        Ok(filter)
    }
}

/// Splits `s` at each `separator` not preceded by an escaping `\`.
fn split_unescaped(s: &str, separator: char) -> impl Iterator<Item = &str> + '_ {
    let mut escaped = false;
    s.split(move |c: char| {
        let split = !escaped && c == separator;
        escaped = !escaped && c == '\\';
        split
    })
}

/// Removes the escaping `\`s; `None` on a bad escape.
fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(c @ (',' | '=' | '\\')) => out.push(c),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests;
