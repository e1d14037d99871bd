//! One request's way: its target checked, its head rewritten, then sent
//! through the `DiscoveryLayer` over hyper-util's pooled client; and the
//! access log line.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Request, Response, Version};
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
    /// the attempt in flight, as the layer documents; nothing is left.
    pub(crate) async fn handle(
        &self,
        client: &Downstream,
        req: Request<Incoming>,
    ) -> Response<AnswerBody> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path_and_query().cloned();
        let Answer {
            response,
            service,
            error,
        } = self.answer(client, req).await;
        tracing::info!(
            target: "access",
            client = %client.ip(),
            %method,
            service = %service.as_ref().map_or("-", Authority::host),
            path = %path.as_ref().map_or("/", PathAndQuery::as_str),
            status = response.status().as_u16(),
            ms = %Millis(started.elapsed()),
            error = error.as_ref().map(tracing::field::display),
        );
        response
    }

    async fn answer(&self, client: &Downstream, req: Request<Incoming>) -> Answer {
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
        let service = route.authority.clone();
        let host = service.host();
        let refused = match self.registered.knows(host).await {
            Known::Service => None,
            Known::NotService => Some(answers::not_a_service(host)),
            Known::Unknown => Some(answers::registry_unavailable(host)),
        };
        if let Some(response) = refused {
            return Answer {
                response,
                service: Some(service),
                error: None,
            };
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
                Ok(Ok(body)) => return self.send(Request::from_parts(parts, body), service).await,
                Ok(Err(e)) => (answers::body_unread(), e.into()),
                Err(elapsed) => (answers::body_timeout(), elapsed.into()),
            };
        Answer {
            response,
            service: Some(service),
            error: Some(error),
        }
    }

    /// Sends a request through the layer.
    async fn send(&self, req: Request<ForwardBody>, service: Authority) -> Answer {
        let host = service.host();
        match self.upstream.clone().oneshot(req).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                // The proxy speaks HTTP/1.1 (or HTTP/2) to its client,
                // whatever the instance spoke.
                parts.version = Version::HTTP_11;
                Answer {
                    response: Response::from_parts(parts, Either::Left(body)),
                    service: Some(service),
                    error: None,
                }
            }
            Err(e) => Answer {
                response: answers::failed(host, &e),
                service: Some(service),
                error: Some(e),
            },
        }
    }
}

/// A response, the service asked for if any, and the error that made the
/// proxy answer itself.
struct Answer {
    response: Response<AnswerBody>,
    service: Option<Authority>,
    error: Option<BoxError>,
}

impl From<Response<AnswerBody>> for Answer {
    fn from(response: Response<AnswerBody>) -> Self {
        Answer {
            response,
            service: None,
            error: None,
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
