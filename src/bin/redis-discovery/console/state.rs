//! The console's shared state: the model behind a lock, the broadcast of
//! changes to the live streams, and the JSON bodies both the API and the
//! streams send.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use redis_discovery::resolver::{ChangeKind, RedisResolver};
use redis_discovery::{KeySchema, RedisRegistry, ServiceName};
use serde_json::{json, Value};
use tokio::sync::{broadcast, Semaphore};
use tokio_util::sync::CancellationToken;

use super::model::{Changed, Model, ServiceState, Source};
use super::watcher::Pending;
use super::Token;

/// Messages queued per live stream before a slow reader is told to
/// resync instead.
const STREAM_BACKLOG: usize = 256;
/// The most live streams at once.
pub(super) const MAX_STREAMS: usize = 64;

/// A change for the live streams, serialized once for all of them.
#[derive(Debug, Clone)]
pub(super) enum Update {
    /// The body of `GET /api/services`.
    Services(Arc<str>),
    /// The body of `GET /api/services/{service}`.
    Service(Arc<str>),
    /// One event of the feed.
    Registry(Arc<str>),
}

/// Everything the handlers and the background tasks share.
#[derive(Debug)]
pub(super) struct Console {
    pub(super) resolver: RedisResolver,
    pub(super) registry: RedisRegistry,
    pub(super) token: Option<Token>,
    pub(super) schema: KeySchema,
    pub(super) prefix: String,
    /// The Redis URL with any password hidden.
    pub(super) redis: String,
    model: Mutex<Model>,
    updates: broadcast::Sender<Update>,
    /// Whether the last read reached Redis.
    reachable: AtomicBool,
    pub(super) streams: Arc<Semaphore>,
    /// Services to re-read before the next periodic refresh.
    pub(super) pending: Pending,
    /// Cancelled at shutdown: the live streams end.
    pub(super) stop: CancellationToken,
}

impl Console {
    pub(super) fn new(
        resolver: RedisResolver,
        registry: RedisRegistry,
        token: Option<Token>,
        prefix: String,
        redis: String,
    ) -> Self {
        Console {
            schema: registry.schema(),
            resolver,
            registry,
            token,
            prefix,
            redis,
            model: Mutex::new(Model::default()),
            updates: broadcast::channel(STREAM_BACKLOG).0,
            reachable: AtomicBool::new(true),
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            pending: Pending::default(),
            stop: CancellationToken::new(),
        }
    }

    /// The model; never held across an `.await`.
    pub(super) fn model(&self) -> MutexGuard<'_, Model> {
        // A panic while holding it leaves data that is still consistent
        // enough to show.
        self.model
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<Update> {
        self.updates.subscribe()
    }

    pub(super) fn read_only(&self) -> bool {
        self.token.is_none()
    }

    pub(super) fn set_reachable(&self, reachable: bool) -> bool {
        self.reachable.swap(reachable, Ordering::Relaxed) != reachable
    }

    /// Sends an update to the live streams; `make` serializes it, and
    /// runs only if a stream is open.
    fn send(&self, make: impl FnOnce() -> Update) {
        if self.updates.receiver_count() > 0 {
            // A stream that ended meanwhile is no error.
            let _ = self.updates.send(make());
        }
    }

    /// Sends what `changed` says of `service` to the live streams (its
    /// summary row goes with [`publish_services`](Self::publish_services),
    /// once per pass).
    pub(super) fn publish(&self, service: &ServiceName, changed: Changed) {
        for event in &changed.events {
            self.send(|| Update::Registry(to_text(event)));
        }
        if changed.service {
            self.send(|| {
                let model = self.model();
                let empty = ServiceState::default();
                let state = model.service(service).unwrap_or(&empty);
                Update::Service(to_text(&service_body(service, state, now_ms())))
            });
        }
    }

    /// Sends the services' summaries to the live streams.
    pub(super) fn publish_services(&self) {
        self.send(|| Update::Services(to_text(&services_body(&self.model(), now_ms()))));
    }

    /// Adds a registry event to the feed and sends it.
    pub(super) fn record_event(&self, service: &ServiceName, kind: ChangeKind, addr: &str) {
        let view = self
            .model()
            .record(service, kind, addr, Source::Registry, now_ms());
        self.send(|| Update::Registry(to_text(&view)));
    }

    /// The body of `GET /api/info`.
    pub(super) fn info_body(&self) -> Value {
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "read_only": self.read_only(),
            "schema": self.schema.to_string(),
            "prefix": self.prefix,
            "redis": self.redis,
            "reachable": self.reachable.load(Ordering::Relaxed),
            "overrides": !matches!(self.schema, KeySchema::Hertz),
            "now_ms": now_ms(),
        })
    }
}

/// The body of `GET /api/services`.
pub(super) fn services_body(model: &Model, now_ms: u64) -> Value {
    let services: Vec<Value> = model
        .services()
        .iter()
        .map(|(name, state)| {
            let instances = &state.read.instances;
            json!({
                "service": name.as_str(),
                "live": instances.len(),
                "drained": instances.iter().filter(|i| i.weight == 0).count(),
                "total_weight": instances.iter().map(|i| u64::from(i.weight)).sum::<u64>(),
                "last_change_ms": state.last_change_ms,
            })
        })
        .collect();
    json!({"now_ms": now_ms, "services": services})
}

/// The body of `GET /api/services/{service}`.
pub(super) fn service_body(name: &ServiceName, state: &ServiceState, now_ms: u64) -> Value {
    json!({
        "now_ms": now_ms,
        "service": name.as_str(),
        "last_change_ms": state.last_change_ms,
        "instances": state.read.instances,
        "pending_overrides": state.read.pending_overrides,
    })
}

/// Serializes for the streams; our own types always serialize.
pub(super) fn to_text(value: &impl serde::Serialize) -> Arc<str> {
    serde_json::to_string(value)
        .unwrap_or_else(|_| "{}".to_owned())
        .into()
}

/// Now, in Unix milliseconds (0 if the clock is before 1970).
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
