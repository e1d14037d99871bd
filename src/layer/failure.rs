//! What a failed attempt tells about the request: whether it may have
//! reached a server, read from the error's source chain.

use std::error::Error as StdError;

/// What a failed attempt tells about the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No connection was established (refused, or the client's connect
    /// phase failed): the request certainly did not reach the server.
    Connect,
    /// The connection closed or was reset before a response: the server
    /// may or may not have seen the request.
    ConnectionLost,
    /// Anything else.
    Other,
}

/// Classifies an error by walking its source chain.
pub(crate) fn classify(error: &(dyn StdError + 'static)) -> Failure {
    use std::io::ErrorKind;
    let mut lost = false;
    let mut current = Some(error);
    while let Some(e) = current {
        #[cfg(feature = "hyper-util")]
        if e.downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(|e| e.is_connect())
        {
            return Failure::Connect;
        }
        #[cfg(feature = "reqwest")]
        if e.downcast_ref::<reqwest::Error>()
            .is_some_and(|e| e.is_connect())
        {
            return Failure::Connect;
        }
        #[cfg(any(feature = "hyper-util", feature = "reqwest"))]
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(|e| e.is_incomplete_message() || e.is_canceled() || e.is_closed())
        {
            lost = true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                ErrorKind::ConnectionRefused => return Failure::Connect,
                ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::NotConnected
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof => lost = true,
                _ => {}
            }
        }
        current = e.source();
    }
    if lost {
        Failure::ConnectionLost
    } else {
        Failure::Other
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use super::{classify, Failure};

    /// An error whose source is `source`, as clients wrap I/O errors.
    #[derive(Debug)]
    struct Wrapped(Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn failures_are_classified_by_their_source_chain() {
        let of = |kind| classify(&Wrapped(Error::from(kind)));
        assert_eq!(of(ErrorKind::ConnectionRefused), Failure::Connect);
        for kind in [
            ErrorKind::ConnectionReset,
            ErrorKind::ConnectionAborted,
            ErrorKind::NotConnected,
            ErrorKind::BrokenPipe,
            ErrorKind::UnexpectedEof,
        ] {
            assert_eq!(of(kind), Failure::ConnectionLost, "{kind:?}");
        }
        assert_eq!(of(ErrorKind::TimedOut), Failure::Other);
        assert_eq!(classify(&Error::other("refused?")), Failure::Other);
    }
}
