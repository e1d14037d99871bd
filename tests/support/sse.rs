//! A reader of a server-sent events stream (`text/event-stream`), for the
//! console's `/api/stream`: its events in order, their data as JSON.

use std::time::Instant;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;

use super::DEADLINE;

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its `event:` name (`message` if it had none).
    pub name: String,
    /// Its `data:` lines joined, as JSON.
    pub data: Value,
}

/// An open `/api/stream`: its events in order.
pub struct Stream {
    body: Incoming,
    buffer: String,
}

impl Stream {
    /// Reads events from a response body.
    pub fn new(body: Incoming) -> Stream {
        Stream {
            body,
            buffer: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped); panics after
    /// [`DEADLINE`] or if the stream ends.
    pub async fn next(&mut self) -> Event {
        match tokio::time::timeout(DEADLINE, self.read_event()).await {
            Ok(event) => event,
            Err(_) => panic!("no event on /api/stream within {DEADLINE:?}"),
        }
    }

    /// Events until one named `name` for which `check` holds; that one.
    pub async fn next_matching(&mut self, name: &str, check: impl Fn(&Value) -> bool) -> Event {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = match tokio::time::timeout(left, self.read_event()).await {
                Ok(event) => event,
                Err(_) => panic!("no matching {name:?} event within {DEADLINE:?}"),
            };
            if event.name == name && check(&event.data) {
                return event;
            }
        }
    }

    async fn read_event(&mut self) -> Event {
        loop {
            // Events end with a blank line (`\n\n`; `\r\n` normalized).
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_event(&block) {
                    return event;
                }
                continue;
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let text = String::from_utf8_lossy(data).replace("\r\n", "\n");
                        self.buffer.push_str(&text);
                        assert!(self.buffer.len() < 1 << 20, "an SSE event over 1 MiB");
                    }
                }
                Some(Err(e)) => panic!("/api/stream broke: {e}"),
                None => panic!("/api/stream ended"),
            }
        }
    }
}

/// An event block, or `None` for a comment-only (keep-alive) block.
fn parse_event(block: &str) -> Option<Event> {
    let mut name = None;
    let mut data = Vec::new();
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            name = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
        }
    }
    if name.is_none() && data.is_empty() {
        return None;
    }
    let data = data.join("\n");
    let data = serde_json::from_str(&data)
        .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {data:?}"));
    Some(Event {
        name: name.unwrap_or_else(|| "message".to_owned()),
        data,
    })
}
