//! What a failed attempt tells about the instance and the request: read
//! from the error's source chain, the same way whatever client and cargo
//! features are in use.

use std::error::Error as StdError;
use std::io::ErrorKind;

/// What a failed attempt tells about the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The instance refused the connection: it is not listening.
    Refused,
    /// No connection was established for another reason (a DNS failure,
    /// a connect timeout, an unreachable host): the request certainly did
    /// not reach the server.
    Connect,
    /// The connection closed or was reset before a response: the server
    /// may or may not have seen the request.
    ConnectionLost,
    /// A timeout of the client's own (reqwest's `timeout`, a tower
    /// `Timeout` inside the layer, an I/O timeout) fired before the
    /// response: as the layer's attempt timeout.
    TimedOut,
    /// Anything else (not the instance's fault as far as the layer can tell).
    Other,
}

/// Classifies an error by walking its source chain: the connect phase as
/// the client reports it (`is_connect()` of hyper-util's and reqwest's
/// errors), else `std::io::Error` kinds and hyper's own errors.
pub(crate) fn classify(error: &(dyn StdError + 'static)) -> Failure {
    let mut connect = false;
    let mut lost = false;
    let mut timed_out = false;
    let mut current = Some(error);
    while let Some(e) = current {
        // The client's own mistake (a service whose name pattern gives no
        // valid TLS name): no instance is at fault, and none would do better.
        #[cfg(feature = "rustls")]
        if e.is::<crate::https::InvalidServerName>() {
            return Failure::Other;
        }
        if e.downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(|e| e.is_connect())
        {
            connect = true;
        }
        #[cfg(feature = "reqwest")]
        if let Some(e) = e.downcast_ref::<reqwest::Error>() {
            connect |= e.is_connect();
            timed_out |= e.is_timeout();
        }
        #[cfg(feature = "reqwest-middleware")]
        if let Some(reqwest_middleware::Error::Reqwest(e)) =
            e.downcast_ref::<reqwest_middleware::Error>()
        {
            // `Error::Reqwest` is transparent: its `source()` skips the
            // reqwest error itself.
            connect |= e.is_connect();
            timed_out |= e.is_timeout();
        }
        timed_out |= e.is::<tower::timeout::error::Elapsed>();
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(|e| e.is_incomplete_message() || e.is_canceled() || e.is_closed())
        {
            lost = true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                ErrorKind::ConnectionRefused => return Failure::Refused,
                ErrorKind::HostUnreachable
                | ErrorKind::NetworkUnreachable
                | ErrorKind::AddrNotAvailable => connect = true,
                ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::NotConnected
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof => lost = true,
                ErrorKind::TimedOut => timed_out = true,
                _ => {}
            }
        }
        current = e.source();
    }
    // A timeout or reset in the connect phase is a connect failure.
    if connect {
        Failure::Connect
    } else if timed_out {
        Failure::TimedOut
    } else if lost {
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
        assert_eq!(of(ErrorKind::ConnectionRefused), Failure::Refused);
        for kind in [
            ErrorKind::HostUnreachable,
            ErrorKind::NetworkUnreachable,
            ErrorKind::AddrNotAvailable,
        ] {
            assert_eq!(of(kind), Failure::Connect, "{kind:?}");
        }
        for kind in [
            ErrorKind::ConnectionReset,
            ErrorKind::ConnectionAborted,
            ErrorKind::NotConnected,
            ErrorKind::BrokenPipe,
            ErrorKind::UnexpectedEof,
        ] {
            assert_eq!(of(kind), Failure::ConnectionLost, "{kind:?}");
        }
        assert_eq!(of(ErrorKind::TimedOut), Failure::TimedOut);
        let elapsed: tower::BoxError = tower::timeout::error::Elapsed::new().into();
        assert_eq!(classify(&*elapsed), Failure::TimedOut);
        assert_eq!(of(ErrorKind::InvalidData), Failure::Other);
        assert_eq!(classify(&Error::other("refused?")), Failure::Other);
    }
}
