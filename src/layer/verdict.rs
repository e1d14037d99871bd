//! What the end of one attempt means, for its instance (outlier
//! detection) and for the request (retry elsewhere or not): one place for
//! the tower layer's future and the reqwest middleware, which runs the
//! same future.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use http::StatusCode;

use super::failure::{classify, Failure};
use super::pick::Outcome;
use crate::metrics::AttemptClass;

/// How one attempt ends: the rules of the options the future copies, so a
/// request needs no reference to the layer to judge its attempts.
#[derive(Clone, Copy)]
pub(crate) struct AttemptRules {
    /// From sending an attempt to its response headers; `None`: no limit.
    pub timeout: Option<Duration>,
    /// Which response statuses are the instance's failure.
    pub is_failure: fn(StatusCode) -> bool,
    /// Retry idempotent requests whose connection was lost.
    pub retry_lost_connections: bool,
}

impl fmt::Debug for AttemptRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttemptRules")
            .field("timeout", &self.timeout)
            .field("retry_lost_connections", &self.retry_lost_connections)
            .finish_non_exhaustive()
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ended<'a> {
    /// Response headers arrived.
    Response(StatusCode),
    /// The inner service failed.
    Failed(&'a (dyn StdError + 'static)),
    /// The attempt timeout fired first.
    TimedOut,
}

/// What an attempt's end means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// For the instance's outlier detection and load.
    pub outcome: Outcome,
    /// Whether the request may go to another instance (if its body can be
    /// replayed, an instance is left, and the budget allows).
    pub retry: bool,
    /// How the attempt ended, for its metrics (and a retry's reason).
    pub class: AttemptClass,
}

impl AttemptRules {
    /// Judges an attempt of a request (`idempotent`: its method is).
    ///
    /// A request that certainly did not reach a server (no connection) is
    /// retried whatever its method; one that may have (a lost connection,
    /// a timeout, a gateway-error response) only if idempotent.
    ///
    /// Inlined for responses (a class nothing reads costs nothing); a
    /// failure's source chain is walked out of line.
    #[inline]
    pub(crate) fn judge(&self, ended: Ended<'_>, idempotent: bool) -> Verdict {
        use AttemptClass as Class;
        let (outcome, retry, class) = match ended {
            Ended::Response(status) if (self.is_failure)(status) => {
                (Outcome::GatewayFailure, idempotent, Class::FailureStatus)
            }
            Ended::Response(_) => (Outcome::Success, false, Class::Ok),
            Ended::TimedOut => (Outcome::GatewayFailure, idempotent, Class::TimedOut),
            Ended::Failed(error) => return self.judge_failure(error, idempotent),
        };
        Verdict {
            outcome,
            retry,
            class,
        }
    }

    #[inline(never)]
    fn judge_failure(&self, error: &(dyn StdError + 'static), idempotent: bool) -> Verdict {
        use AttemptClass as Class;
        let (outcome, retry, class) = match classify(error) {
            Failure::Refused => (Outcome::Refused, true, Class::Refused),
            Failure::Connect => (Outcome::GatewayFailure, true, Class::Connect),
            Failure::ConnectionLost => (
                Outcome::GatewayFailure,
                idempotent && self.retry_lost_connections,
                Class::ConnectionLost,
            ),
            Failure::TimedOut => (Outcome::GatewayFailure, idempotent, Class::TimedOut),
            Failure::Other => (Outcome::Other, false, Class::Other),
        };
        Verdict {
            outcome,
            retry,
            class,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use super::*;
    use crate::layer::options::Options;

    #[test]
    fn verdicts() {
        let rules = Options::default().rules;
        let judge = |ended, idempotent| {
            let v = rules.judge(ended, idempotent);
            (v.outcome, v.retry)
        };
        let class = |ended| rules.judge(ended, true).class;
        use Outcome::*;
        let ok = Ended::Response(StatusCode::OK);
        assert_eq!(judge(ok, true), (Success, false));
        let e404 = Ended::Response(StatusCode::NOT_FOUND);
        assert_eq!(judge(e404, true), (Success, false));
        for status in [502, 503, 504] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(judge(Ended::Response(status), true), (GatewayFailure, true));
            assert_eq!(
                judge(Ended::Response(status), false),
                (GatewayFailure, false)
            );
        }
        let e500 = Ended::Response(StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(judge(e500, true), (Success, false));
        assert_eq!(judge(Ended::TimedOut, true), (GatewayFailure, true));
        assert_eq!(judge(Ended::TimedOut, false), (GatewayFailure, false));
        let refused = Error::from(ErrorKind::ConnectionRefused);
        assert_eq!(judge(Ended::Failed(&refused), false), (Refused, true));
        let unreachable = Error::from(ErrorKind::HostUnreachable);
        assert_eq!(
            judge(Ended::Failed(&unreachable), false),
            (GatewayFailure, true)
        );
        let reset = Error::from(ErrorKind::ConnectionReset);
        assert_eq!(judge(Ended::Failed(&reset), true), (GatewayFailure, true));
        assert_eq!(judge(Ended::Failed(&reset), false), (GatewayFailure, false));
        let other = Error::other("bad header");
        assert_eq!(judge(Ended::Failed(&other), true), (Other, false));

        let strict = AttemptRules {
            retry_lost_connections: false,
            is_failure: |s| s.is_server_error(),
            ..rules
        };
        assert!(!strict.judge(Ended::Failed(&reset), true).retry);
        assert_eq!(strict.judge(e500, true).class, AttemptClass::FailureStatus);

        // The metrics' classes: a response the classifier accepts (even a
        // 404 or 500) is no error.
        assert_eq!(class(ok), AttemptClass::Ok);
        assert_eq!(class(e404), AttemptClass::Ok);
        assert_eq!(class(e500), AttemptClass::Ok);
        let e503 = Ended::Response(StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(class(e503), AttemptClass::FailureStatus);
        assert_eq!(class(Ended::TimedOut), AttemptClass::TimedOut);
        let client_timeout = Error::from(ErrorKind::TimedOut);
        assert_eq!(
            class(Ended::Failed(&client_timeout)),
            AttemptClass::TimedOut
        );
        assert_eq!(class(Ended::Failed(&refused)), AttemptClass::Refused);
        assert_eq!(class(Ended::Failed(&unreachable)), AttemptClass::Connect);
        assert_eq!(class(Ended::Failed(&reset)), AttemptClass::ConnectionLost);
        assert_eq!(class(Ended::Failed(&other)), AttemptClass::Other);
        assert_eq!(strict.judge(e500, true).outcome, GatewayFailure);
    }
}
