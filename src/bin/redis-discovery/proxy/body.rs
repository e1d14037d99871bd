//! [`ForwardBody`]: a client's request body on its way to an instance:
//! small ones held, so that the request can be sent again to another
//! instance after a refused connection, larger ones streamed.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use redis_discovery::layer::ReplayBody;

/// The largest body held to be replayable (as nginx buffers client
/// bodies up to `client_body_buffer_size`); larger ones stream.
pub(crate) const MAX_HELD: u64 = 64 * 1024;

/// A request body as the proxy forwards it.
#[derive(Debug)]
pub(crate) enum ForwardBody {
    /// No body (a GET): sent again as it is when the layer retries.
    Empty,
    /// A body of known length up to [`MAX_HELD`], read whole before it
    /// is sent: sent again as it is when the layer retries.
    Held(Option<Bytes>),
    /// The client's body, streamed frame by frame, never buffered whole;
    /// such a request is not retried (its frames are gone once sent).
    Streaming(Incoming),
}

impl ForwardBody {
    /// The body to forward: empty, held (its length is known and at most
    /// [`MAX_HELD`]: it is read here), or streaming. Fails if the client's
    /// body cannot be read (the client went away or broke its framing).
    ///
    /// Cancel safety: dropping the future drops the body read so far.
    pub(crate) async fn new(incoming: Incoming) -> Result<Self, hyper::Error> {
        if incoming.is_end_stream() {
            return Ok(ForwardBody::Empty);
        }
        match incoming.size_hint().exact() {
            Some(length) if length <= MAX_HELD => {
                // Trailers of a body with a length (HTTP/2 only) are dropped.
                let bytes = incoming.collect().await?.to_bytes();
                Ok(ForwardBody::Held(Some(bytes)))
            }
            _ => Ok(ForwardBody::Streaming(incoming)),
        }
    }
}

impl Body for ForwardBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ForwardBody::Empty => Poll::Ready(None),
            ForwardBody::Held(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ForwardBody::Streaming(incoming) => Pin::new(incoming).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ForwardBody::Empty => true,
            ForwardBody::Held(bytes) => bytes.is_none(),
            ForwardBody::Streaming(incoming) => incoming.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ForwardBody::Empty => SizeHint::with_exact(0),
            ForwardBody::Held(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ForwardBody::Streaming(incoming) => incoming.size_hint(),
        }
    }
}

impl ReplayBody for ForwardBody {
    fn replay(&self) -> Option<Self> {
        match self {
            ForwardBody::Empty => Some(ForwardBody::Empty),
            // A clone of `Bytes` shares the buffer.
            ForwardBody::Held(bytes) => Some(ForwardBody::Held(bytes.clone())),
            ForwardBody::Streaming(_) => None,
        }
    }
}
