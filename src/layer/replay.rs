//! [`ReplayBody`]: request bodies the layer can send again for a retry.

use bytes::Bytes;

/// A request body that can be sent again: cloned when it is bytes in
/// memory, or re-created when it is empty.
///
/// Implemented for the usual client bodies: `String`, `Vec<u8>`, `Bytes`,
/// `()`, `http_body_util::{Full, Empty}`, and `BoxBody`/`UnsyncBoxBody`
/// when they are empty. Streaming bodies (`StreamBody`, hyper's `Incoming`
/// when proxying) go through the layer but are never replayed.
pub trait ReplayBody: Sized {
    /// A copy of the body, or `None` if it cannot be replayed.
    fn replay(&self) -> Option<Self>;
}

macro_rules! replay_by_clone {
    ($($t:ty),*) => {$(
        impl ReplayBody for $t {
            fn replay(&self) -> Option<Self> {
                Some(self.clone())
            }
        }
    )*};
}
replay_by_clone!(String, Vec<u8>, Bytes, (), &'static str, &'static [u8]);

impl<D: Clone> ReplayBody for http_body_util::Full<D> {
    fn replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl<D> ReplayBody for http_body_util::Empty<D> {
    fn replay(&self) -> Option<Self> {
        Some(http_body_util::Empty::new())
    }
}

impl<D, E> ReplayBody for http_body_util::combinators::BoxBody<D, E>
where
    D: bytes::Buf + Send + Sync + 'static,
{
    fn replay(&self) -> Option<Self> {
        http_body::Body::is_end_stream(self).then(Self::default)
    }
}

impl<D, E> ReplayBody for http_body_util::combinators::UnsyncBoxBody<D, E>
where
    D: bytes::Buf + Send + 'static,
{
    fn replay(&self) -> Option<Self> {
        http_body::Body::is_end_stream(self).then(Self::default)
    }
}

impl<S> ReplayBody for http_body_util::StreamBody<S> {
    fn replay(&self) -> Option<Self> {
        None
    }
}

impl ReplayBody for hyper::body::Incoming {
    fn replay(&self) -> Option<Self> {
        None
    }
}

#[cfg(feature = "reqwest")]
impl ReplayBody for reqwest::Body {
    fn replay(&self) -> Option<Self> {
        self.as_bytes()
            .map(|b| reqwest::Body::from(Bytes::copy_from_slice(b)))
    }
}
