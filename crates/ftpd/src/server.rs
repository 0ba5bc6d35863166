//! Server: what every session shares (the jail, the users, limits and timeouts, the
//! transfer log) and the accept loop that gives each control connection its own thread,
//! until a signal asks for a graceful stop.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::listen::{accept_until, spawn_small, wake_accept, ConnectionLimit};

use crate::jail::Jail;
use crate::reply::{Code, Reply};
use crate::session::{self, Control, THREAD_STACK_SIZE};
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
    /// How long a client may take to log in.
    pub login_timeout: Duration,
    /// How long a logged-in control connection may go without a real command (NOOP does not count).
    pub idle_timeout: Duration,
    /// How long to wait for a data connection to be made.
    pub data_timeout: Duration,
    /// How long a data connection may stall mid-transfer.
    pub stall_timeout: Duration,
    /// The wu-ftpd style transfer log, when asked for.
    pub xferlog: Option<Mutex<File>>,
    /// Every live session, so a shutdown can reach them.
    pub sessions: Sessions,
    /// FTPS, when a certificate is configured.
    pub tls: Option<crate::tls::TlsSettings>,
}

/// Connection limits checked before a session starts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most control connections at once.
    pub max_clients: usize,
    /// Most control connections at once from one address.
    pub max_per_ip: usize,
}

/// Serves until SIGINT, SIGTERM or SIGHUP; then stops accepting, tells idle sessions
/// `421 server shutting down`, lets transfers finish for up to `grace`, and returns.
/// `implicit` is an optional second listener whose connections start with TLS.
pub fn serve(
    listener: &TcpListener,
    implicit: Option<TcpListener>,
    config: ServerConfig,
    limits: Limits,
    grace: Duration,
) {
    let config = Arc::new(config);
    let stop = Arc::new(AtomicBool::new(false));
    let wakers: std::io::Result<Vec<TcpListener>> = std::iter::once(listener)
        .chain(implicit.as_ref())
        .map(TcpListener::try_clone)
        .collect();
    match wakers {
        Ok(wakers) => {
            let signalled = Arc::clone(&stop);
            let installed = ctrlc::set_handler(move || {
                signalled.store(true, Ordering::Release);
                wakers.iter().for_each(wake_accept);
            });
            if let Err(error) = installed {
                log::warn!("no graceful shutdown on signals: {error}");
            }
        }
        Err(error) => log::warn!("no graceful shutdown on signals: {error}"),
    }
    let total = ConnectionLimit::new(limits.max_clients);
    let per_ip = PerAddressLimit::new(limits.max_per_ip);
    std::thread::scope(|scope| {
        if let Some(implicit) = &implicit {
            let spawned = std::thread::Builder::new().spawn_scoped(scope, || {
                accept_until(implicit, &stop, |stream, peer| {
                    admit(stream, peer, &config, &total, &per_ip, true);
                });
            });
            if let Err(error) = spawned {
                log::error!("implicit TLS listener not started: {error}");
            }
        }
        accept_until(listener, &stop, |stream, peer| {
            admit(stream, peer, &config, &total, &per_ip, false);
        });
    });
    log::info!("shutting down: no new connections; waiting up to {grace:?} for transfers");
    config.sessions.shut_down(grace);
}

fn admit(
    mut stream: TcpStream,
    peer: SocketAddr,
    config: &Arc<ServerConfig>,
    total: &ConnectionLimit,
    per_ip: &PerAddressLimit,
    implicit_tls: bool,
) {
    let refuse = |stream: &mut TcpStream, why: &str| {
        log::warn!("refused {peer}: {why}");
        let reply = Reply::new(
            Code::ServiceUnavailable,
            format!("too many connections ({why})"),
        );
        let _ = stream.write_all(&reply.to_bytes());
    };
    let Some(slot) = total.try_acquire() else {
        return refuse(&mut stream, "server full");
    };
    let Some(address_slot) = per_ip.try_acquire(peer.ip()) else {
        return refuse(&mut stream, "too many from your address");
    };
    log::info!("session start {peer} ({} live)", slot.live());
    let config = Arc::clone(config);
    let session = move || {
        session::serve(stream, peer, config, implicit_tls);
        let live = slot.live() - 1;
        drop((slot, address_slot));
        log::info!("session end {peer} ({live} live)");
    };
    if let Err(error) = spawn_small(THREAD_STACK_SIZE, session) {
        log::error!("refused {peer}: cannot start a thread: {error}");
    }
}

/// Live connection counts per client address.
#[derive(Debug)]
struct PerAddressLimit {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max: usize,
}

/// One connection's place in its address's count; dropping it gives the place back.
struct AddressSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl PerAddressLimit {
    fn new(max: usize) -> PerAddressLimit {
        PerAddressLimit {
            counts: Arc::default(),
            max,
        }
    }

    fn try_acquire(&self, ip: IpAddr) -> Option<AddressSlot> {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            counts: Arc::clone(&self.counts),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// The live sessions, for a graceful shutdown.
#[derive(Debug, Default)]
pub struct Sessions {
    next_id: AtomicU64,
    live: Mutex<HashMap<u64, Registered>>,
    shutting_down: AtomicBool,
}

#[derive(Debug)]
struct Registered {
    control: Arc<Control>,
    transferring: Arc<AtomicBool>,
}

/// A session's entry in [`Sessions`]; dropping it removes the entry.
pub struct Registration<'a> {
    sessions: &'a Sessions,
    id: u64,
}

impl Sessions {
    /// Adds a session; `transferring` tells a shutdown to let it finish its transfer.
    pub fn register(
        &self,
        control: Arc<Control>,
        transferring: Arc<AtomicBool>,
    ) -> Registration<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(
            id,
            Registered {
                control,
                transferring,
            },
        );
        Registration { sessions: self, id }
    }

    /// True once a shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Tells idle sessions to go, then waits up to `grace` for the rest.
    fn shut_down(&self, grace: Duration) {
        self.shutting_down.store(true, Ordering::Release);
        for registered in self.lock().values() {
            if !registered.transferring.load(Ordering::Acquire) {
                registered
                    .control
                    .close_with(&session::shutting_down_reply());
            }
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && !self.lock().is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = self.lock().len();
        if left > 0 {
            log::warn!("{left} sessions still busy after {grace:?}; exiting anyway");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Registered>> {
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.sessions.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_address_counts_free_on_drop() {
        let limit = PerAddressLimit::new(2);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let first = limit.try_acquire(ip).unwrap();
        let _second = limit.try_acquire(ip).unwrap();
        assert!(limit.try_acquire(ip).is_none());
        assert!(limit.try_acquire(other).is_some());
        drop(first);
        assert!(limit.try_acquire(ip).is_some());
    }
}
