//! `GET /api/stream`: the live updates, as Server-Sent Events.
//!
//! A stream starts with `hello` (the page then reads what it shows), then
//! carries `services`, `service` and `registry` messages as they happen.
//! A reader too slow for the backlog gets `resync` (read everything
//! again) instead of an unbounded queue. Streams end when the console
//! stops; the browser's `EventSource` reconnects by itself, and its next
//! `hello` resyncs the page.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use http::StatusCode;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, OwnedSemaphorePermit};

use super::routes::error;
use super::state::{now_ms, Console, Update};

/// A comment this often keeps proxies and the browser from closing an
/// idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What one stream holds: its place in the broadcast and its slot.
struct Reader {
    console: Arc<Console>,
    updates: broadcast::Receiver<Update>,
    hello: bool,
    _slot: OwnedSemaphorePermit,
}

pub(super) async fn stream(State(console): State<Arc<Console>>) -> Response {
    let Ok(slot) = console.streams.clone().try_acquire_owned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live streams open; close a console tab",
        );
    };
    let reader = Reader {
        updates: console.subscribe(),
        console,
        hello: false,
        _slot: slot,
    };
    Sse::new(events(reader))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

fn events(reader: Reader) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(reader, |mut reader| async move {
        if !reader.hello {
            reader.hello = true;
            let hello = json!({"read_only": reader.console.read_only(), "now_ms": now_ms()});
            let event = Event::default().event("hello").data(hello.to_string());
            return Some((Ok(event), reader));
        }
        let update = tokio::select! {
            _ = reader.console.stop.cancelled() => return None,
            update = reader.updates.recv() => update,
        };
        let event = match update {
            Ok(Update::Services(body)) => Event::default().event("services").data(&*body),
            Ok(Update::Service(body)) => Event::default().event("service").data(&*body),
            Ok(Update::Registry(body)) => Event::default().event("registry").data(&*body),
            // Messages were dropped for this reader: it reads afresh.
            Err(RecvError::Lagged(_)) => Event::default().event("resync").data("{}"),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), reader))
    })
}
