//! The console's routes: the page and its assets, the read API, the live
//! stream and the actions; and what every response carries (a strict
//! content security policy, no caching of the API).

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::header::{self, HeaderValue};
use http::StatusCode;
use redis_discovery::ServiceName;
use serde::Deserialize;
use serde_json::json;

use super::actions::action;
use super::assets;
use super::model::MAX_EVENTS;
use super::state::{now_ms, service_body, services_body, Console};
use super::stream::stream;

/// Larger than any action's body (`{"weight":N}`).
const MAX_BODY: usize = 1024;
/// The longest refusal text of axum's that is passed on.
const MAX_REFUSAL: usize = 1024;
/// Events sent when `GET /api/events` names no limit.
const DEFAULT_EVENTS: usize = 200;

/// The page may load only what the console serves: no inline script, no
/// other origin, and no framing by another site.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub(super) fn router(console: Arc<Console>, allow_hosts: Vec<String>) -> Router {
    let allow_hosts: Arc<[String]> = allow_hosts.into();
    Router::new()
        .route("/", get(index))
        .route("/assets/app.js", get(app_js))
        .route("/assets/style.css", get(style_css))
        .route("/assets/favicon.svg", get(favicon))
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/info", get(info))
        .route("/api/services", get(services))
        .route("/api/services/{service}", get(service))
        .route("/api/events", get(events))
        .route("/api/stream", get(stream))
        .route(
            "/api/services/{service}/instances/{addr}/{action}",
            post(action),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(move |req, next| {
            guard(allow_hosts.clone(), req, next)
        }))
        .with_state(console)
}

/// A JSON error body: `{"error":"…"}`.
pub(super) fn error(status: StatusCode, message: impl AsRef<str>) -> Response {
    let message = message.as_ref();
    (status, Json(json!({ "error": message }))).into_response()
}

/// Refuses requests for a host name not allowed (another site's page
/// that points its own name at the console's address must not read the
/// registry: DNS rebinding), gives every API error a JSON body, and adds
/// the security headers.
async fn guard(allow_hosts: Arc<[String]>, req: Request, next: Next) -> Response {
    if !allowed_host(req.headers().get(header::HOST), &allow_hosts) {
        return error(
            StatusCode::FORBIDDEN,
            "this console answers only to IP addresses, localhost and the names given with --allow-host",
        );
    }
    let api = req.uri().path().starts_with("/api/");
    let mut response = next.run(req).await;
    if api && !is_json(&response) && response.status().is_client_error() {
        // axum's own refusals (a bad query, a body too large) are text.
        let status = response.status();
        let text = axum::body::to_bytes(response.into_body(), MAX_REFUSAL)
            .await
            .unwrap_or_default();
        response = error(status, String::from_utf8_lossy(&text).trim());
    }
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if api {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"))
}

/// An IP address, `localhost`, or a name of `--allow-host`, with any port.
fn allowed_host(host: Option<&HeaderValue>, allow_hosts: &[String]) -> bool {
    let Some(host) = host.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`, nothing else.
        Some(rest) => match rest.split_once(']') {
            Some((v6, "")) => v6,
            Some((v6, port)) if port.starts_with(':') => v6,
            _ => return false,
        },
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allow_hosts.iter().any(|a| a.eq_ignore_ascii_case(name))
}

async fn index() -> Response {
    asset(assets::INDEX, "text/html; charset=utf-8")
}

async fn app_js() -> Response {
    asset(assets::APP_JS, "text/javascript; charset=utf-8")
}

async fn style_css() -> Response {
    asset(assets::STYLE_CSS, "text/css; charset=utf-8")
}

async fn favicon() -> Response {
    asset(assets::FAVICON_SVG, "image/svg+xml")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The assets change with the binary: revalidate each time.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not found")
}

async fn info(State(console): State<Arc<Console>>) -> Response {
    Json(console.info_body()).into_response()
}

async fn services(State(console): State<Arc<Console>>) -> Response {
    let body = services_body(&console.model(), now_ms());
    Json(body).into_response()
}

async fn service(State(console): State<Arc<Console>>, Path(name): Path<String>) -> Response {
    let unknown = || error(StatusCode::NOT_FOUND, format!("unknown service {name}"));
    let Ok(service) = ServiceName::new(&name) else {
        return unknown();
    };
    let model = console.model();
    match model.service(&service) {
        Some(state) => Json(service_body(&service, state, now_ms())).into_response(),
        None => unknown(),
    }
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    limit: Option<usize>,
}

async fn events(State(console): State<Arc<Console>>, Query(query): Query<EventsQuery>) -> Response {
    let limit = query.limit.unwrap_or(DEFAULT_EVENTS).min(MAX_EVENTS);
    let model = console.model();
    let events: Vec<_> = model.events(limit).collect();
    Json(json!({"now_ms": now_ms(), "events": events})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(host: &str) -> bool {
        let host = HeaderValue::from_str(host).expect("header");
        allowed_host(Some(&host), &["console.internal".to_owned()])
    }

    #[test]
    fn hosts() {
        for ok in [
            "127.0.0.1:8500",
            "localhost:8500",
            "LOCALHOST",
            "[::1]:8500",
            "[::1]",
            "10.0.0.7:8500",
            "console.internal:8500",
        ] {
            assert!(allowed(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:8500",
            "[::1]evil",
            "localhost.evil:80",
            "",
        ] {
            assert!(!allowed(refused), "{refused}");
        }
        assert!(!allowed_host(None, &[]));
    }
}
