//! [`ForwardBody`]: a client's request body on its way to an instance,
//! streamed, and replayable when empty so that GETs can be retried.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use redis_discovery::layer::ReplayBody;

/// A request body as the proxy forwards it.
#[derive(Debug)]
pub(crate) enum ForwardBody {
    /// No body (a GET): sent again as it is when the layer retries.
    Empty,
    /// The client's body, streamed frame by frame, never buffered whole;
    /// such a request is not retried (its frames are gone once sent).
    Streaming(Incoming),
}

impl ForwardBody {
    pub(crate) fn new(incoming: Incoming) -> Self {
        if incoming.is_end_stream() {
            ForwardBody::Empty
        } else {
            ForwardBody::Streaming(incoming)
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
            ForwardBody::Streaming(incoming) => Pin::new(incoming).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ForwardBody::Empty => true,
            ForwardBody::Streaming(incoming) => incoming.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ForwardBody::Empty => SizeHint::with_exact(0),
            ForwardBody::Streaming(incoming) => incoming.size_hint(),
        }
    }
}

impl ReplayBody for ForwardBody {
    fn replay(&self) -> Option<Self> {
        matches!(self, ForwardBody::Empty).then_some(ForwardBody::Empty)
    }
}
