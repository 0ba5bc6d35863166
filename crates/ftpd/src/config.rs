//! Config: the settings every session reads, built once at start-up and never changed.
//! Live state (the session registry, open log files) is kept beside it, not in it.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use crate::cidr::AddressRules;
use crate::defender::DefenderSettings;
use crate::events::EventSettings;
use crate::passive::PassiveAddressing;
use crate::proxy::ProxyPolicy;
use crate::storage::Storage;
use crate::tls::TlsSettings;
use crate::users::Users;

/// Settings shared by all sessions.
#[derive(Debug)]
pub struct Config {
    /// The served tree (a local directory or an object-storage prefix).
    pub storage: Arc<Storage>,
    /// Who may log in.
    pub users: Users,
    /// Ports for passive data connections (any free port when `None`).
    pub passive_ports: Option<RangeInclusive<u16>>,
    /// What PASV replies advertise, per client.
    pub passive: PassiveAddressing,
    /// Whose PROXY protocol headers are believed.
    pub proxy: ProxyPolicy,
    /// Who may connect at all (`--allow-from`, `--deny-from`).
    pub address_rules: AddressRules,
    /// The defender's thresholds, safelist and connection rate.
    pub defender: DefenderSettings,
    /// Allow PORT/EPRT to addresses other than the client's own (FXP).
    pub allow_fxp: bool,
    /// How long each stage may take.
    pub timeouts: Timeouts,
    /// FTPS, when a certificate is configured.
    pub tls: Option<TlsSettings>,
    /// The event hooks and how they run.
    pub events: EventSettings,
}

impl Config {
    /// True when logins and transfers must be protected by TLS.
    pub fn tls_required(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.required)
    }
}

/// Deadlines, each counted from a fixed instant so that trickled bytes cannot stretch them.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From the connection to a successful login, TLS handshakes included.
    pub login: Duration,
    /// From the last complete command (NOOP and STAT do not count) to the next.
    pub idle: Duration,
    /// For a data connection to be made, from PASV/PORT (an unused passive port is closed
    /// after this) or from the transfer command.
    pub data: Duration,
    /// Longest a connection may go without moving a byte while we wait to send or receive.
    pub stall: Duration,
}

/// Connection limits checked before a session starts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most control connections at once.
    pub max_clients: usize,
    /// Most control connections at once from one address.
    pub max_per_ip: usize,
}
