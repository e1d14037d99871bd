//! The operator's actions: `POST /api/services/{service}/instances/{addr}/{action}`
//! with `drain`, `undrain`, `weight` or `deregister`.
//!
//! Refused, in this order: a cross-site request (403, even with a
//! token); any action on a console started without a token (403); a
//! request without the token (401) or with another (403, compared in
//! constant time). Nothing is written to Redis for a refused request.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;

use axum::extract::{ConnectInfo, Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::header::{self, HeaderMap};
use http::StatusCode;
use redis_discovery::{Override, RegistryError, ServiceName};
use serde::Deserialize;
use serde_json::json;

use super::routes::error;
use super::state::Console;

#[derive(Debug, Deserialize)]
struct WeightBody {
    weight: u32,
}

pub(super) async fn action(
    State(console): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((service, addr, action)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = authorize(&console, &headers) {
        let (service, addr, action) = (clip(&service), clip(&addr), clip(&action));
        tracing::info!(target: "console", %peer, service, addr, action, ?refused, "refused");
        return refused.into_response();
    }
    let service = match ServiceName::new(&service) {
        Ok(service) => service,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let registry = &console.registry;
    let done = match action.as_str() {
        "drain" => {
            registry
                .set_override(service.clone(), &addr, Override::drain())
                .await
        }
        "weight" => match serde_json::from_slice::<WeightBody>(&body) {
            Ok(WeightBody { weight }) => {
                registry
                    .set_override(service.clone(), &addr, Override::Weight(weight))
                    .await
            }
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "the body must be {\"weight\":N}, N from 0 to 4294967295",
                )
            }
        },
        "undrain" => registry
            .clear_override(service.clone(), &addr)
            .await
            .map(|_| registered(&console, &service, &addr)),
        "deregister" => match registry.deregister(service.clone(), &addr).await {
            Ok(false) => {
                let message = format!("{addr} is not registered in {service}");
                return error(StatusCode::NOT_FOUND, message);
            }
            done => done,
        },
        _ => return error(StatusCode::NOT_FOUND, "unknown action"),
    };
    match done {
        Ok(registered) => {
            tracing::info!(target: "console", %peer, %service, addr, action, "done");
            console.pending.mark(Some(service));
            Json(json!({"ok": true, "registered": registered})).into_response()
        }
        Err(RegistryError::Invalid(e)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(RegistryError::OverridesUnsupported) => {
            error(StatusCode::CONFLICT, "the Hertz schema has no overrides")
        }
        Err(e) => {
            tracing::warn!(target: "console", %peer, %service, addr, action, error = %e, "failed");
            error(StatusCode::BAD_GATEWAY, format!("Redis: {e}"))
        }
    }
}

/// The start of what an unauthenticated client sent, for the log.
fn clip(text: &str) -> &str {
    const MAX: usize = 128;
    let mut end = text.len().min(MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Whether the console shows an instance at `addr` now.
fn registered(console: &Console, service: &ServiceName, addr: &str) -> bool {
    console
        .model()
        .service(service)
        .is_some_and(|s| s.read.instances.iter().any(|i| i.addr == addr))
}

/// Why an action is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    CrossSite,
    ReadOnly,
    NoToken,
    WrongToken,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::CrossSite => error(StatusCode::FORBIDDEN, "cross-site request refused"),
            Refusal::ReadOnly => error(
                StatusCode::FORBIDDEN,
                "read-only console: started without --token",
            ),
            Refusal::NoToken => {
                let mut refused = error(
                    StatusCode::UNAUTHORIZED,
                    "this action needs the console's token",
                );
                refused.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                refused
            }
            Refusal::WrongToken => error(StatusCode::FORBIDDEN, "wrong token"),
        }
    }
}

/// The refusals, in the order the module docs give.
fn authorize(console: &Console, headers: &HeaderMap) -> Result<(), Refusal> {
    if cross_site(headers) {
        return Err(Refusal::CrossSite);
    }
    let token = console.token.as_ref().ok_or(Refusal::ReadOnly)?;
    let given = bearer(headers).ok_or(Refusal::NoToken)?;
    if token.matches(given) {
        Ok(())
    } else {
        Err(Refusal::WrongToken)
    }
}

/// The token of `Authorization: Bearer TOKEN`.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then_some(token)
        .filter(|t| !t.is_empty())
}

/// A request another site's page made: its `Origin` is not this
/// console's, or the browser says so in `Sec-Fetch-Site`.
fn cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        if !matches!(site.as_bytes(), b"same-origin" | b"none") {
            return true;
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let host = headers.get(header::HOST).map(|h| h.as_bytes());
    let origin = origin.as_bytes();
    // `https://` too: behind a reverse proxy that adds TLS.
    let origin_host = origin
        .strip_prefix(b"http://")
        .or_else(|| origin.strip_prefix(b"https://"));
    match (origin_host, host) {
        (Some(origin_host), Some(host)) => !origin_host.eq_ignore_ascii_case(host),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().expect("header value"));
        }
        map
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(
            bearer(&headers(&[("authorization", "Bearer abc")])),
            Some(&b"abc"[..])
        );
        assert_eq!(
            bearer(&headers(&[("authorization", "bearer abc")])),
            Some(&b"abc"[..])
        );
        assert_eq!(bearer(&headers(&[("authorization", "Bearer ")])), None);
        assert_eq!(bearer(&headers(&[("authorization", "Basic abc")])), None);
        assert_eq!(bearer(&headers(&[])), None);
    }

    #[test]
    fn cross_site_requests() {
        let same = [
            ("host", "127.0.0.1:8500"),
            ("origin", "http://127.0.0.1:8500"),
        ];
        assert!(!cross_site(&headers(&same)));
        assert!(!cross_site(&headers(&[("host", "127.0.0.1:8500")])));
        assert!(cross_site(&headers(&[
            ("host", "127.0.0.1:8500"),
            ("origin", "http://evil.example")
        ])));
        assert!(cross_site(&headers(&[
            ("host", "127.0.0.1:8500"),
            ("origin", "null")
        ])));
        assert!(cross_site(&headers(&[
            ("host", "127.0.0.1:8500"),
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(cross_site(&headers(&[
            ("host", "127.0.0.1:8500"),
            ("sec-fetch-site", "same-site")
        ])));
        assert!(!cross_site(&headers(&[
            ("host", "127.0.0.1:8500"),
            ("sec-fetch-site", "same-origin")
        ])));
    }
}
