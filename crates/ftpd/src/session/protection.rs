//! Protection: FTPS on the control connection (AUTH TLS, RFC 4217) and what PBSZ and PROT
//! say about data connections.

use std::io::BufRead;
use std::io::BufReader;
use std::sync::{Arc, Mutex};

use super::{Flow, Protection, Replied, Session};
use crate::control::ControlReader;
use crate::reply::{Code, Reply};
use crate::tls::SharedTls;

impl Session {
    pub(super) fn protection_buffer(&mut self) -> Replied<Reply> {
        match self.protection {
            Protection::Clear => Err(Reply::new(Code::BadSequence, "PBSZ needs AUTH TLS first")),
            Protection::Secured => {
                self.protection = Protection::Negotiated {
                    private_data: false,
                };
                Ok(Reply::new(Code::Ok, "PBSZ=0"))
            }
            Protection::Negotiated { .. } => Ok(Reply::new(Code::Ok, "PBSZ=0")),
        }
    }

    pub(super) fn protection_level(&mut self, private: bool) -> Replied<Reply> {
        if !matches!(self.protection, Protection::Negotiated { .. }) {
            return Err(Reply::new(
                Code::BadSequence,
                "PROT needs AUTH TLS and PBSZ first",
            ));
        }
        if !private && self.context.config.tls_required() {
            return Err(Reply::new(
                Code::PolicyDenied,
                "this server requires PROT P",
            ));
        }
        self.protection = Protection::Negotiated {
            private_data: private,
        };
        Ok(Reply::new(
            Code::Ok,
            if private {
                "Protection level set to P"
            } else {
                "Protection level set to C"
            },
        ))
    }

    /// True when data connections run over TLS (PROT P).
    pub(super) fn private_data(&self) -> bool {
        matches!(
            self.protection,
            Protection::Negotiated { private_data: true }
        )
    }

    /// AUTH TLS: answer 234 in the clear, throw away anything the client sent after the
    /// AUTH line (it must not run as if it had been encrypted), then handshake within the
    /// login deadline (or, once logged in, the idle one).
    pub(super) fn upgrade_to_tls(&mut self, reader: &mut BufReader<ControlReader>) -> Flow {
        self.rename_from = None;
        let Some(settings) = self.context.config.tls.as_ref() else {
            return self.reply(Reply::new(
                Code::NotImplemented,
                "TLS is not configured on this server",
            ));
        };
        if self.control.is_secured() {
            return self.reply(Reply::new(Code::BadSequence, "TLS is already on"));
        }
        if self
            .send(Reply::new(Code::AuthOk, "AUTH TLS ok, start the handshake"))
            .is_err()
        {
            return Flow::Quit;
        }
        let discarded = reader.buffer().len();
        reader.consume(discarded);
        if discarded > 0 {
            log::warn!(
                "{}: discarded {discarded} plaintext bytes sent after AUTH TLS",
                self.peer
            );
        }
        match settings.handshake(self.control.socket(), self.deadline()) {
            Ok(connection) => {
                let shared: SharedTls = Arc::new(Mutex::new(connection));
                self.control.secure(shared);
                self.protection = Protection::Secured;
                Flow::Continue
            }
            Err(error) => {
                log::info!("{}: TLS handshake failed: {error}", self.peer);
                self.context.metrics.tls_failure();
                Flow::Quit
            }
        }
    }
}
