//! The registry's change events on the wire: the payload the registry's
//! scripts publish, shared by the resolver's cache (which refreshes on
//! them) and [`RegistryEvents`](super::RegistryEvents); and the one
//! `PSUBSCRIBE` pattern that matches every events channel of a keyspace.

use std::borrow::Cow;

use super::{ChangeKind, RegistryChange};
use crate::instance::{check_addr_form, ServiceName};
use crate::resolver::skipped;
use crate::schema::Keyspace;

/// The most characters of a skipped event logged (anyone who may publish
/// on the channel chooses its size).
const MAX_LOGGED_CHARS: usize = 256;

/// A change event as published by the registry's scripts:
/// `{"event":"register"|"update"|"deregister"|"expire"|"override","addr":"host:port"}`.
#[derive(serde::Deserialize)]
pub(in crate::resolver) struct EventMessage<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow)]
    addr: Cow<'a, str>,
}

impl<'a> EventMessage<'a> {
    /// The message in `payload`, unless it is not one.
    pub(in crate::resolver) fn parse(payload: &'a [u8]) -> Option<Self> {
        serde_json::from_slice(payload).ok()
    }

    /// What happened; `None` for a kind this version does not know.
    pub(in crate::resolver) fn kind(&self) -> Option<ChangeKind> {
        ChangeKind::from_wire(&self.event)
    }

    /// The instance's address, as published (unchecked).
    pub(in crate::resolver) fn addr(&self) -> &str {
        &self.addr
    }
}

impl ChangeKind {
    /// The kind named `name` on the wire (see [`as_str`](Self::as_str)).
    pub(in crate::resolver) fn from_wire(name: &str) -> Option<ChangeKind> {
        Some(match name {
            "register" => ChangeKind::Register,
            "update" => ChangeKind::Update,
            "deregister" => ChangeKind::Deregister,
            "expire" => ChangeKind::Expire,
            "override" => ChangeKind::Override,
            _ => return None,
        })
    }
}

/// The `PSUBSCRIBE` pattern matching the events channel of every service
/// of `keyspace` (`sd:{*}:events`), the prefix's glob characters escaped
/// so that it matches only itself. `None`: the schema has no events.
pub(super) fn pattern(keyspace: &Keyspace) -> Option<String> {
    let channel = keyspace.events_channel("*")?;
    let prefix = keyspace.prefix();
    // The channel is the prefix, then the service's part.
    let rest = channel.strip_prefix(prefix)?;
    Some(escape_glob(prefix) + rest)
}

/// `text` with Redis's glob characters (`* ? [ ] \`) escaped.
pub(super) fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The change a message on `channel` announces; `None` (logged at trace
/// level, truncated) for a channel of no service, an invalid service name
/// or address, a payload that is not an event, or a kind this version
/// does not know.
pub(super) fn change(keyspace: &Keyspace, channel: &str, payload: &[u8]) -> Option<RegistryChange> {
    let change = keyspace.service_of_channel(channel).and_then(|service| {
        let service = ServiceName::new(service).ok()?;
        let message = EventMessage::parse(payload)?;
        let kind = message.kind()?;
        check_addr_form(message.addr()).ok()?;
        Some(RegistryChange {
            service,
            kind,
            addr: message.addr().to_owned(),
        })
    });
    if change.is_none() && tracing::enabled!(tracing::Level::TRACE) {
        // Four bytes per character at most.
        let head = &payload[..payload.len().min(4 * MAX_LOGGED_CHARS)];
        let payload = String::from_utf8_lossy(head);
        let event = skipped::truncated(&payload, MAX_LOGGED_CHARS);
        let channel = skipped::truncated(channel, MAX_LOGGED_CHARS);
        tracing::trace!(
            channel,
            event,
            "skipping a message that is no registry change"
        );
    }
    change
}
