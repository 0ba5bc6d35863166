//! Server: what every session shares (the jail, the users, data-connection settings) and
//! the accept loop that gives each control connection its own thread.

use std::io::Write;
use std::net::{IpAddr, TcpListener};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use common::listen::{accept_forever, spawn_small, ConnectionLimit};

use crate::jail::Jail;
use crate::reply::{Code, Reply};
use crate::session::{self, THREAD_STACK_SIZE};
use crate::users::Users;

/// Settings shared by all sessions, fixed at start-up.
#[derive(Debug)]
pub struct ServerConfig {
    /// The served root.
    pub jail: Arc<Jail>,
    /// Who may log in.
    pub users: Users,
    /// Ports for passive data connections (any free port when `None`).
    pub passive_ports: Option<RangeInclusive<u16>>,
    /// Address to advertise in PASV replies (behind NAT); the control connection's own otherwise.
    pub passive_address: Option<IpAddr>,
    /// Allow PORT/EPRT to addresses other than the client's own (FXP).
    pub allow_fxp: bool,
    /// How long a control connection may sit idle.
    pub idle_timeout: Duration,
    /// How long to wait for a data connection to be made.
    pub data_timeout: Duration,
    /// How long a data connection may stall mid-transfer.
    pub stall_timeout: Duration,
}

/// Serves forever: one thread per control connection, at most `max_clients` at once.
pub fn serve(listener: &TcpListener, config: ServerConfig, max_clients: usize) -> ! {
    let config = Arc::new(config);
    let limit = ConnectionLimit::new(max_clients);
    accept_forever(listener, |mut stream, peer| {
        let Some(slot) = limit.try_acquire() else {
            log::warn!("refused {peer}: {max_clients} clients connected");
            let _ = stream.write_all(
                &Reply::new(Code::ServiceUnavailable, "too many connections").to_bytes(),
            );
            return;
        };
        log::info!("connect {peer} ({} live)", slot.live());
        let config = Arc::clone(&config);
        let session = move || {
            session::serve(stream, peer, config);
            let live = slot.live() - 1;
            drop(slot);
            log::info!("disconnect {peer} ({live} live)");
        };
        if let Err(error) = spawn_small(THREAD_STACK_SIZE, session) {
            log::error!("refused {peer}: cannot start a thread: {error}");
        }
    })
}
