//! Data channel: how the next data connection will be made (PASV, EPSV, PORT, EPRT), with
//! the bounce and theft checks judged on the client's address, and opening it for a
//! transfer or listing.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Instant;

use super::{Replied, Session};
use crate::data::{self, DataPlan};
use crate::defender::Offence;
use crate::reply::{Code, Reply};

impl Session {
    pub(super) fn extended_passive_only(&mut self) -> Reply {
        self.epsv_all = true;
        Reply::new(Code::Ok, "EPSV ALL ok")
    }

    pub(super) fn extended_passive(&mut self, protocol: Option<u8>) -> Replied<Reply> {
        let local = self.local.ip();
        let wanted = if local.is_ipv4() || data::canonical(local).is_ipv4() {
            1
        } else {
            2
        };
        if protocol.is_some_and(|protocol| protocol != wanted) {
            return Err(Reply::new(
                Code::ProtocolNotSupported,
                format!("Network protocol not supported, use ({wanted})"),
            ));
        }
        self.passive(true)
    }

    /// PASV and EPSV: a listener that only the control peer may connect to, closed if
    /// nobody does within the data timeout.
    pub(super) fn passive(&mut self, extended: bool) -> Replied<Reply> {
        if self.epsv_all && !extended {
            return Err(Reply::new(
                Code::BadSequence,
                "EPSV ALL in effect: use EPSV",
            ));
        }
        // A new PASV replaces the last listener: its port is freed first.
        self.data_plan = DataPlan::None;
        let config = &self.context.config;
        let local_ip = data::canonical(self.local.ip());
        let cannot = |error: io::Error| {
            Reply::new(
                Code::CantOpenData,
                format!("cannot open passive port: {error}"),
            )
        };
        let listener =
            data::listen_passive(local_ip, config.passive_ports.as_ref()).map_err(cannot)?;
        let port = listener.local_addr().map_err(cannot)?.port();
        let advertised = config.passive.for_client(self.peer.ip(), self.seen_local);
        let reply = if extended {
            Reply::new(
                Code::ExtendedPassiveMode,
                format!("Entering Extended Passive Mode (|||{port}|)"),
            )
        } else {
            let IpAddr::V4(v4) = advertised else {
                return Err(Reply::new(Code::CantOpenData, "PASV needs IPv4: use EPSV"));
            };
            let [a, b, c, d] = v4.octets();
            Reply::new(
                Code::PassiveMode,
                format!(
                    "Entering Passive Mode ({a},{b},{c},{d},{},{})",
                    port >> 8,
                    port & 0xFF
                ),
            )
        };
        self.data_plan = DataPlan::Passive {
            listener,
            expires: Instant::now() + config.timeouts.data,
        };
        Ok(reply)
    }

    pub(super) fn active(&mut self, addr: SocketAddr) -> Replied<Reply> {
        if self.epsv_all {
            return Err(Reply::new(
                Code::BadSequence,
                "EPSV ALL in effect: use EPSV",
            ));
        }
        let own = data::canonical(self.peer.ip());
        if data::canonical(addr.ip()) != own && !self.context.config.allow_fxp {
            self.context.offend(self.peer.ip(), Offence::Bounce);
            return Err(Reply::new(
                Code::ParameterNotImplemented,
                format!(
                    "active mode only to your own address {}, not {}",
                    self.peer.ip(),
                    addr.ip()
                ),
            ));
        }
        if addr.port() < 1024 {
            return Err(Reply::new(
                Code::ParameterNotImplemented,
                format!(
                    "active mode to port {} refused: use 1024 or above",
                    addr.port()
                ),
            ));
        }
        self.data_plan = DataPlan::Active(addr);
        Ok(Reply::new(Code::Ok, "PORT command successful"))
    }

    /// ABOR with no transfer running: forgets any data connection set up for one.
    pub(super) fn abort_idle(&mut self) -> Reply {
        self.data_plan = DataPlan::None;
        Reply::new(Code::NoTransfer, "No transfer to abort")
    }

    /// The data connection for the next transfer (one use per PASV/PORT).
    pub(super) fn open_data(&mut self) -> Replied<TcpStream> {
        let config = &self.context.config;
        if config.tls_required() && !self.private_data() {
            return Err(Reply::new(
                Code::ProtocolNotSupported,
                "this server requires protected data connections: send PBSZ 0 and PROT P",
            ));
        }
        let stream = match std::mem::take(&mut self.data_plan) {
            DataPlan::None => {
                return Err(Reply::new(
                    Code::CantOpenData,
                    "use PASV, EPSV, PORT or EPRT first",
                ))
            }
            DataPlan::Passive { listener, .. } => data::accept_from(
                &listener,
                self.peer.ip(),
                &config.proxy,
                config.timeouts.data,
            ),
            DataPlan::Active(addr) => data::connect_to(addr, config.timeouts.data),
        };
        let stream = stream.map_err(|error| {
            Reply::new(
                Code::CantOpenData,
                format!("cannot open data connection: {error}"),
            )
        })?;
        let _ = stream.set_read_timeout(Some(config.timeouts.stall));
        let _ = stream.set_write_timeout(Some(config.timeouts.stall));
        Ok(stream)
    }
}
