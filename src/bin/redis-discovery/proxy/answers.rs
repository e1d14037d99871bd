//! The proxy's own answers: `/healthz`, and errors as proper HTTP
//! responses with a one-line text body.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use redis_discovery::layer::{BoxError, DiscoveryError};

use super::target::Refusal;

/// What the proxy answers with: an instance's response streamed, or one
/// line of its own.
pub(crate) type AnswerBody = Either<Incoming, Full<Bytes>>;

/// Seconds a client should wait before asking again for a service with no
/// live instance: the resolver notices a new instance of a service it had
/// none of within its 5 s negative cache.
const RETRY_AFTER_SECONDS: HeaderValue = HeaderValue::from_static("5");

/// A one-line `text/plain` answer.
pub(crate) fn text(status: StatusCode, line: impl Into<Bytes>) -> Response<AnswerBody> {
    let mut response = Response::new(Either::Right(Full::new(line.into())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// `/healthz`: the proxy serves.
pub(crate) fn healthy() -> Response<AnswerBody> {
    text(StatusCode::OK, "ok\n")
}

/// A request refused before anything was sent anywhere.
pub(crate) fn refused(refusal: &Refusal<'_>) -> Response<AnswerBody> {
    match refusal {
        Refusal::Malformed(why) => text(StatusCode::BAD_REQUEST, format!("{why}\n")),
        Refusal::NotService(host) => not_a_service(host),
        Refusal::Connect => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not supported: this proxy forwards http://SERVICE/ requests\n",
        ),
    }
}

/// 403: the host is not a registered service.
pub(crate) fn not_a_service(host: &str) -> Response<AnswerBody> {
    text(
        StatusCode::FORBIDDEN,
        format!(
            "{host} is not a registered service (only http://SERVICE/ with no port is proxied)\n"
        ),
    )
}

/// 400: the client's body (of known length, read before sending) could
/// not be read whole.
pub(crate) fn body_unread() -> Response<AnswerBody> {
    text(
        StatusCode::BAD_REQUEST,
        "the request body could not be read whole\n",
    )
}

/// 408: a body of known length, held before sending, did not arrive
/// within `--idle-timeout`.
pub(crate) fn body_timeout() -> Response<AnswerBody> {
    text(
        StatusCode::REQUEST_TIMEOUT,
        "the request body did not arrive in time\n",
    )
}

/// 503 with `Retry-After`.
pub(crate) fn unavailable(line: String) -> Response<AnswerBody> {
    let mut response = text(StatusCode::SERVICE_UNAVAILABLE, line);
    response
        .headers_mut()
        .insert(RETRY_AFTER, RETRY_AFTER_SECONDS);
    response
}

/// 503: the registry cannot be listed, so whether `host` is a service is
/// not known.
pub(crate) fn registry_unavailable(host: &str) -> Response<AnswerBody> {
    unavailable(format!(
        "cannot tell whether {host} is a service: the registry is unavailable\n"
    ))
}

/// The answer to a request the layer could not get a response for.
pub(crate) fn failed(service: &str, error: &BoxError) -> Response<AnswerBody> {
    match error.downcast_ref::<DiscoveryError>() {
        Some(DiscoveryError::NoInstance { .. }) => {
            unavailable(format!("no live instance of service {service}\n"))
        }
        Some(DiscoveryError::Resolve { .. }) => unavailable(format!(
            "cannot read the instances of service {service}: the registry is unavailable\n"
        )),
        Some(DiscoveryError::AttemptTimeout { timeout, .. }) => text(
            StatusCode::GATEWAY_TIMEOUT,
            format!("no instance of service {service} answered within {timeout:?}\n"),
        ),
        // The target was checked before: not expected.
        Some(
            DiscoveryError::NoHost { .. }
            | DiscoveryError::PortInUri { .. }
            | DiscoveryError::InvalidService(_),
        ) => text(StatusCode::BAD_REQUEST, format!("{error}\n")),
        // A connection refused, lost or reset, on every attempt made.
        _ => text(
            StatusCode::BAD_GATEWAY,
            format!("no instance of service {service} answered\n"),
        ),
    }
}
