//! What the layer reads of a response: its status, for the failure
//! classifier.

use http::StatusCode;

use super::request::sealed::Internal;

/// A response type the discovery layer can judge: `http::Response<B>`
/// (any body) and, with the `reqwest` feature, `reqwest::Response`.
///
/// Sealed: name it in bounds; the layer alone implements and calls it.
///
/// ```
/// use redis_discovery::layer::{DiscoverRequest, DiscoverResponse};
///
/// fn judged<S, Req>(_: &S)
/// where
///     S: tower::Service<Req>,
///     S::Response: DiscoverResponse,
///     Req: DiscoverRequest,
/// {
/// }
/// ```
pub trait DiscoverResponse: sealed::StatusResponse {}

impl<T: sealed::StatusResponse> DiscoverResponse for T {}

pub(crate) mod sealed {
    use super::{Internal, StatusCode};

    /// What the layer needs of a response. Public in a private module, so
    /// that no one outside the crate can implement or call it.
    #[allow(unreachable_pub)]
    pub trait StatusResponse {
        /// The response status.
        fn status(&self, _: Internal) -> StatusCode;
    }
}

impl<B> sealed::StatusResponse for http::Response<B> {
    #[inline]
    fn status(&self, _: Internal) -> StatusCode {
        self.status()
    }
}

#[cfg(feature = "reqwest")]
impl sealed::StatusResponse for reqwest::Response {
    #[inline]
    fn status(&self, _: Internal) -> StatusCode {
        self.status()
    }
}
