//! `S3Error`: what went wrong with a request, in the terms a caller decides on (missing,
//! refused, busy, slow, broken); the one map from HTTP status and S3 error code to it.

use std::fmt;
use std::io;

/// Why an S3 request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Error {
    /// The object (or upload) does not exist: an FTP `550`.
    NotFound,
    /// The credentials may not do this (HTTP 403).
    AccessDenied,
    /// The server asked us to slow down (HTTP 429, 503 or `SlowDown`); worth retrying later.
    Throttled,
    /// The server failed (HTTP 5xx); worth retrying later.
    Server(u16),
    /// The server took longer than the configured timeout for one step of the request.
    Timeout,
    /// The connection failed or broke (refused, reset, TLS, DNS); the text says how.
    Transport(String),
    /// Any other refusal (a 4xx such as `NoSuchBucket` or `InvalidArgument`): a bug or a
    /// misconfiguration rather than a passing condition.
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The S3 error code, e.g. `NoSuchBucket`; empty when the reply had no body.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The reply could not be understood (bad XML, a missing header).
    Protocol(String),
    /// A request this crate will not send, e.g. a copy larger than one CopyObject allows.
    Unsupported(String),
}

impl S3Error {
    /// True for the failures that a later try may not meet: throttling, a server error, a
    /// timeout or a broken connection.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            S3Error::Throttled | S3Error::Server(_) | S3Error::Timeout | S3Error::Transport(_)
        )
    }

    /// The error for a non-success reply, from its status and (when it had one) the `Code`
    /// and `Message` of its XML error body.
    pub(crate) fn from_reply(status: u16, code: &str, message: &str) -> S3Error {
        match (status, code) {
            (_, "NoSuchKey" | "NoSuchUpload") => S3Error::NotFound,
            (_, "SlowDown" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded") => {
                S3Error::Throttled
            }
            (_, "AccessDenied" | "SignatureDoesNotMatch" | "InvalidAccessKeyId") => {
                S3Error::AccessDenied
            }
            (404, "") => S3Error::NotFound,
            (403, "") => S3Error::AccessDenied,
            (429 | 503, _) => S3Error::Throttled,
            (500..=599, _) => S3Error::Server(status),
            _ => S3Error::Rejected {
                status,
                code: code.to_owned(),
                message: message.to_owned(),
            },
        }
    }

    /// Classifies a ureq failure: a timeout of any phase is `Timeout`, anything else about
    /// the connection is `Transport`.
    pub(crate) fn from_ureq(error: ureq::Error) -> S3Error {
        match error {
            ureq::Error::Timeout(_) => S3Error::Timeout,
            ureq::Error::Io(io) => S3Error::from_io(&io),
            other => S3Error::Transport(other.to_string()),
        }
    }

    /// Classifies an I/O failure under a request.
    pub(crate) fn from_io(error: &io::Error) -> S3Error {
        match error.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => S3Error::Timeout,
            _ => S3Error::Transport(error.to_string()),
        }
    }
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            S3Error::NotFound => f.write_str("no such object"),
            S3Error::AccessDenied => f.write_str("access denied"),
            S3Error::Throttled => f.write_str("throttled by the server"),
            S3Error::Server(status) => write!(f, "server error {status}"),
            S3Error::Timeout => f.write_str("timed out"),
            S3Error::Transport(text) => write!(f, "connection failed: {text}"),
            S3Error::Rejected {
                status,
                code,
                message,
            } => write!(f, "request refused with {status} {code}: {message}"),
            S3Error::Protocol(text) => write!(f, "unreadable reply: {text}"),
            S3Error::Unsupported(text) => write!(f, "unsupported: {text}"),
        }
    }
}

impl std::error::Error for S3Error {}

impl From<S3Error> for io::Error {
    /// Keeps the `S3Error` inside (`io::Error::get_ref` + `downcast_ref`) so a caller behind
    /// `io::Write` can still decide on it.
    fn from(error: S3Error) -> io::Error {
        let kind = match error {
            S3Error::NotFound => io::ErrorKind::NotFound,
            S3Error::AccessDenied => io::ErrorKind::PermissionDenied,
            S3Error::Timeout => io::ErrorKind::TimedOut,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_map_to_what_the_caller_decides_on() {
        let cases: &[(u16, &str, S3Error)] = &[
            (404, "", S3Error::NotFound),
            (404, "NoSuchKey", S3Error::NotFound),
            (404, "NoSuchUpload", S3Error::NotFound),
            (403, "", S3Error::AccessDenied),
            (403, "SignatureDoesNotMatch", S3Error::AccessDenied),
            (503, "SlowDown", S3Error::Throttled),
            (429, "", S3Error::Throttled),
            (500, "InternalError", S3Error::Server(500)),
            (502, "", S3Error::Server(502)),
        ];
        for (status, code, expected) in cases {
            assert_eq!(
                &S3Error::from_reply(*status, code, "m"),
                expected,
                "{status} {code}"
            );
        }
        assert_eq!(
            S3Error::from_reply(404, "NoSuchBucket", "gone"),
            S3Error::Rejected {
                status: 404,
                code: "NoSuchBucket".into(),
                message: "gone".into()
            }
        );
    }

    #[test]
    fn only_passing_conditions_are_retryable() {
        assert!(S3Error::Throttled.is_retryable());
        assert!(S3Error::Server(500).is_retryable());
        assert!(S3Error::Timeout.is_retryable());
        assert!(S3Error::Transport("reset".into()).is_retryable());
        assert!(!S3Error::NotFound.is_retryable());
        assert!(!S3Error::AccessDenied.is_retryable());
        assert!(!S3Error::Protocol("x".into()).is_retryable());
    }

    #[test]
    fn the_s3_error_survives_an_io_error() {
        let io: io::Error = S3Error::Timeout.into();
        assert_eq!(io.kind(), io::ErrorKind::TimedOut);
        let inner = io.get_ref().and_then(|e| e.downcast_ref::<S3Error>());
        assert_eq!(inner, Some(&S3Error::Timeout));
    }
}
