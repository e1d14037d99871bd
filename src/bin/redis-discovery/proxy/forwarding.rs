//! One request's way: its target checked, its head rewritten, then sent
//! through the `DiscoveryLayer` over hyper-util's pooled client; and the
//! access log line.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Method, Request, Response, Version};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use redis_discovery::layer::{BoxError, DiscoveryLayer, DiscoveryService};
use redis_discovery::resolver::RedisResolver;
use tower::{Layer, ServiceExt};

use super::answers::{self, AnswerBody};
use super::body::ForwardBody;
use super::headers::{strip_hop_by_hop, Downstream};
use super::registered::{Known, Registered};
use super::target::{target, Target};
use super::Limits;

type Upstream = DiscoveryService<Client<HttpConnector, ForwardBody>>;

/// How long a connection to an instance may take: a lost SYN is sent
/// again after 1 s, then 3 s (Envoy's default is 5 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What every connection shares: the layer over the client, and which
/// hosts are services.
pub(crate) struct Proxy {
    upstream: Upstream,
    registered: Registered,
    listen: SocketAddr,
    /// How long a held body may take to arrive (`--idle-timeout`).
    body_timeout: Duration,
}

impl Proxy {
    pub(crate) fn new(layer: DiscoveryLayer, resolver: RedisResolver, limits: Limits) -> Self {
        let mut connector = HttpConnector::new();
        // Requests are small and latency matters.
        connector.set_nodelay(true);
        // A connection not made in time is a connect failure, which the
        // layer retries elsewhere whatever the method (nothing was sent),
        // rather than an attempt timeout (idempotent requests only).
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT.min(limits.attempt_timeout)));
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            // Idle connections to instances: at most as many as client
            // connections could use at once.
            .pool_max_idle_per_host(limits.max_connections)
            .build(connector);
        Proxy {
            upstream: layer.layer(client),
            registered: Registered::new(resolver),
            listen: limits.listen,
            body_timeout: limits.idle_timeout,
        }
    }

    /// The address the proxy was asked to serve on.
    pub(crate) fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// Answers one request; never fails (errors are answers).
    ///
    /// Cancel safety: dropping the future (the client went away) drops
    /// the attempt in flight, as the layer documents, and writes the
    /// request's access line with status 499; nothing is left.
    pub(crate) async fn handle(
        &self,
        client: &Downstream,
        req: Request<Incoming>,
    ) -> Response<AnswerBody> {
        let mut line = AccessLine {
            client,
            method: req.method().clone(),
            path: req.uri().path_and_query().cloned(),
            started: Instant::now(),
            service: None,
            written: false,
        };
        let Answer { response, error } = self.answer(client, req, &mut line.service).await;
        line.write(response.status().as_u16(), error.as_ref());
        response
    }

    /// The answer to `req`; `service` is set once the request is known to
    /// be for one (for the access log).
    async fn answer(
        &self,
        client: &Downstream,
        req: Request<Incoming>,
        service: &mut Option<Authority>,
    ) -> Answer {
        let (route, from_host_header) = match target(&req) {
            Ok(Target::Health) => return answers::healthy().into(),
            Err(refusal) => return answers::refused(&refusal).into(),
            Ok(Target::Service {
                host,
                authority,
                from_host_header,
            }) => match client.route(authority, host) {
                Some(route) => (route, from_host_header),
                None => return answers::not_a_service(authority).into(),
            },
        };
        // The service's name from here on, without copying it.
        let host = service.insert(route.authority.clone()).host();
        let refused = match self.registered.knows(host).await {
            Known::Service => None,
            Known::NotService => Some(answers::not_a_service(host)),
            Known::Unknown => Some(answers::registry_unavailable(host)),
        };
        if let Some(response) = refused {
            return response.into();
        }
        let (mut parts, body) = req.into_parts();
        if from_host_header {
            let mut uri = std::mem::take(&mut parts.uri).into_parts();
            uri.scheme = Some(Scheme::HTTP);
            uri.authority = Some(route.authority);
            if uri.path_and_query.is_none() {
                uri.path_and_query = Some(PathAndQuery::from_static("/"));
            }
            match Uri::from_parts(uri) {
                Ok(uri) => parts.uri = uri,
                Err(_) => return answers::not_a_service(host).into(),
            }
        }
        strip_hop_by_hop(&mut parts.headers);
        // The layer sets `Host: SERVICE` (for HTTP/1.1; HTTP/2 clients
        // reach instances over HTTP/1.1 too).
        parts.headers.remove(HOST);
        parts.version = Version::HTTP_11;
        client.add_forwarding(&mut parts.headers, route.forwarded);
        // A client that sends a small body slowly holds its connection,
        // not an instance's: bounded like nginx's `client_body_timeout`.
        let (response, error): (_, BoxError) =
            match tokio::time::timeout(self.body_timeout, ForwardBody::new(body)).await {
                Ok(Ok(body)) => return self.send(Request::from_parts(parts, body), host).await,
                Ok(Err(e)) => (answers::body_unread(), e.into()),
                Err(elapsed) => (answers::body_timeout(), elapsed.into()),
            };
        Answer {
            response,
            error: Some(error),
        }
    }

    /// Sends a request through the layer.
    async fn send(&self, req: Request<ForwardBody>, host: &str) -> Answer {
        match self.upstream.clone().oneshot(req).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                // The proxy speaks HTTP/1.1 (or HTTP/2) to its client,
                // whatever the instance spoke.
                parts.version = Version::HTTP_11;
                Response::from_parts(parts, Either::Left(body)).into()
            }
            Err(e) => Answer {
                response: answers::failed(host, &e),
                error: Some(e),
            },
        }
    }
}

/// A response, and the error that made the proxy answer itself.
struct Answer {
    response: Response<AnswerBody>,
    error: Option<BoxError>,
}

impl From<Response<AnswerBody>> for Answer {
    fn from(response: Response<AnswerBody>) -> Self {
        Answer {
            response,
            error: None,
        }
    }
}

/// One request's access log line: written once its response head is
/// ready, or with nginx's 499 when the client goes away before (the
/// request's future is dropped).
struct AccessLine<'a> {
    client: &'a Downstream,
    method: Method,
    path: Option<PathAndQuery>,
    started: Instant,
    service: Option<Authority>,
    written: bool,
}

/// The status logged for a request whose client went away first.
const CLIENT_GONE: u16 = 499;

impl AccessLine<'_> {
    fn write(&mut self, status: u16, error: Option<&BoxError>) {
        self.written = true;
        tracing::info!(
            target: "access",
            client = %self.client.ip(),
            method = %self.method,
            service = %self.service.as_ref().map_or("-", Authority::host),
            path = %self.path.as_ref().map_or("/", PathAndQuery::as_str),
            status,
            ms = %Millis(self.started.elapsed()),
            error = error.map(tracing::field::display),
        );
    }
}

impl Drop for AccessLine<'_> {
    fn drop(&mut self) {
        if !self.written {
            self.write(CLIENT_GONE, None);
        }
    }
}

/// A duration in milliseconds with 3 decimals, for the access log.
struct Millis(Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}", self.0.as_secs_f64() * 1e3)
    }
}
