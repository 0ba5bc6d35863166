//! Server: the accept loops (plain and implicit TLS), the per-address limit, reloads and the
//! graceful stop: SIGHUP swaps in a new generation of settings for new sessions; SIGINT or
//! SIGTERM stops accepting, tells idle sessions `421`, lets transfers finish for the grace
//! period, and returns.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::listen::{accept_until, spawn_small, wake_accept, ConnectionLimit, ConnectionSlot};
use sd_notify::NotifyState;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::Limits;
use crate::deadline::send_before;
use crate::defender::{Offence, Verdict};
use crate::proxy::{self, Origin};
use crate::reply::{Code, Reply};
use crate::session::{self, Context, THREAD_STACK_SIZE};

/// The bound sockets a server accepts on.
#[derive(Debug)]
pub struct Listeners {
    /// Plain FTP (explicit TLS with AUTH TLS).
    pub control: TcpListener,
    /// Implicit FTPS: TLS from the first byte.
    pub implicit_tls: Option<TcpListener>,
    /// The metrics page (HTTP), when asked for.
    pub metrics: Option<TcpListener>,
}

/// What new connections are admitted with. A reload replaces it whole; sessions in progress
/// keep the context they started with, so a transfer in flight is never disturbed.
pub struct Generation {
    /// Settings and shared state for new sessions.
    pub context: Arc<Context>,
    /// Connection limits for new connections.
    pub limits: Limits,
}

/// Builds the next generation on SIGHUP (re-reading the config file and what it names), or
/// says in one line why it cannot.
pub type Reload = Box<dyn Fn() -> Result<Generation, String> + Send + Sync>;

/// Serves until SIGINT or SIGTERM, then stops gracefully within `grace`; SIGHUP reloads.
/// Tells systemd (when it started us with `NOTIFY_SOCKET`) where it stands.
pub fn serve(listeners: Listeners, first: Generation, reload: Reload, grace: Duration) {
    let registry = Arc::clone(&first.context.registry);
    let metrics = Arc::clone(&first.context.metrics);
    let defender = Arc::clone(&first.context.defender);
    let stop = AtomicBool::new(false);
    let gate = Gate::new(first);
    let signals = Signals::new([SIGHUP, SIGINT, SIGTERM]);
    let mut signals = match signals {
        Ok(signals) => Some(signals),
        Err(error) => {
            log::warn!("no graceful shutdown or reload on signals: {error}");
            None
        }
    };
    let _ = sd_notify::notify(&[NotifyState::Ready]);
    std::thread::scope(|scope| {
        if let Some(signals) = signals.as_mut() {
            let spawned = std::thread::Builder::new().spawn_scoped(scope, || {
                for signal in signals.forever() {
                    if signal == SIGHUP {
                        gate.reload(&reload);
                        continue;
                    }
                    let _ = sd_notify::notify(&[NotifyState::Stopping]);
                    stop.store(true, Ordering::Release);
                    wake_accept(&listeners.control);
                    listeners.implicit_tls.iter().for_each(wake_accept);
                    listeners.metrics.iter().for_each(wake_accept);
                    break;
                }
            });
            if let Err(error) = spawned {
                log::warn!("no graceful shutdown or reload on signals: {error}");
            }
        }
        if let Some(page) = &listeners.metrics {
            let spawned = std::thread::Builder::new()
                .spawn_scoped(scope, || metrics.serve(page, &stop, &defender));
            if let Err(error) = spawned {
                log::error!("metrics not served: {error}");
            }
        }
        if let Some(implicit) = &listeners.implicit_tls {
            let spawned = std::thread::Builder::new().spawn_scoped(scope, || {
                accept_until(implicit, &stop, |stream, peer| {
                    gate.admit(stream, peer, true)
                });
            });
            if let Err(error) = spawned {
                log::error!("implicit TLS listener not started: {error}");
            }
        }
        accept_until(&listeners.control, &stop, |stream, peer| {
            gate.admit(stream, peer, false)
        });
    });
    log::info!("shutting down: no new connections; waiting up to {grace:?} for transfers");
    registry.shut_down(grace);
}

/// What a connection passes before it gets a session thread: the current generation's
/// context and limits (the counts of live connections carry over from one to the next).
struct Gate {
    current: Mutex<Admission>,
}

#[derive(Clone)]
struct Admission {
    context: Arc<Context>,
    total: ConnectionLimit,
    per_ip: PerAddressLimit,
}

impl Gate {
    fn new(first: Generation) -> Gate {
        Gate {
            current: Mutex::new(Admission {
                context: first.context,
                total: ConnectionLimit::new(first.limits.max_clients),
                per_ip: PerAddressLimit::new(first.limits.max_per_ip),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Admission> {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// SIGHUP: the next generation, or the old one kept with one log line saying why.
    fn reload(&self, reload: &Reload) {
        let reloading = NotifyState::monotonic_usec_now()
            .map(|now| vec![NotifyState::Reloading, now])
            .unwrap_or_else(|_| vec![NotifyState::Reloading]);
        let _ = sd_notify::notify(&reloading);
        match reload() {
            Ok(next) => {
                let mut current = self.lock();
                current.total = current.total.with_max(next.limits.max_clients);
                current.per_ip = current.per_ip.with_max(next.limits.max_per_ip);
                current.context = next.context;
                drop(current);
                log::info!("reloaded: new sessions use the new settings");
            }
            Err(problem) => log::error!("reload refused, old settings stay in force: {problem}"),
        }
        let _ = sd_notify::notify(&[NotifyState::Ready]);
    }

    /// Admits a new connection: a session thread if the limits allow, `421` otherwise. The
    /// accept loop never waits on a client: a trusted balancer's PROXY header is read on the
    /// session's own thread, and the per-address limit then judges the client it names.
    fn admit(&self, stream: TcpStream, peer: SocketAddr, implicit_tls: bool) {
        let admission = self.lock().clone();
        let Some(slot) = admission.total.try_acquire() else {
            return admission.refuse(&stream, peer, Refusal::ServerFull);
        };
        let config = &admission.context.config;
        if !config.proxy.trusts(peer.ip()) {
            if let Err(refusal) = admission.screen(peer.ip()) {
                return admission.refuse(&stream, peer, refusal);
            }
            let Some(address_slot) = admission.per_ip.try_acquire(peer.ip()) else {
                return admission.refuse(&stream, peer, Refusal::PerAddress);
            };
            let origin = Origin::direct(peer);
            let session = move || admission.run(stream, origin, (slot, address_slot), implicit_tls);
            if let Err(error) = spawn_small(THREAD_STACK_SIZE, session) {
                log::error!("refused {peer}: cannot start a thread: {error}");
            }
            return;
        }
        let session = move || {
            let config = &admission.context.config;
            let deadline = Instant::now() + config.timeouts.login;
            let origin = match proxy::origin(&config.proxy, &stream, peer, deadline) {
                Ok(origin) => origin,
                Err(error) => {
                    admission.context.metrics.refused("proxy_header");
                    log::warn!("dropped {peer}: {error}");
                    return;
                }
            };
            if let Err(refusal) = admission.screen(origin.client.ip()) {
                return admission.refuse(&stream, origin.client, refusal);
            }
            let Some(address_slot) = admission.per_ip.try_acquire(origin.client.ip()) else {
                return admission.refuse(&stream, origin.client, Refusal::PerAddress);
            };
            admission.run(stream, origin, (slot, address_slot), implicit_tls);
        };
        if let Err(error) = spawn_small(THREAD_STACK_SIZE, session) {
            log::error!("refused {peer}: cannot start a thread: {error}");
        }
    }
}

/// Why a connection gets `421` before its session starts.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    ServerFull,
    PerAddress,
    /// `--allow-from` / `--deny-from`.
    NotAllowed,
    /// The defender banned the address, for this much longer.
    Banned(Duration),
    /// Over `--connection-rate`.
    RateLimited,
}

impl Admission {
    /// The address checks in front of everything else: the allow and deny lists, then the
    /// defender's bans and connection rate.
    fn screen(&self, ip: IpAddr) -> Result<(), Refusal> {
        let config = &self.context.config;
        if !config.address_rules.permits(ip) {
            return Err(Refusal::NotAllowed);
        }
        match self.context.defender.admit(&config.defender, ip) {
            Verdict::Allowed => Ok(()),
            Verdict::Banned(left) => Err(Refusal::Banned(left)),
            Verdict::RateLimited => {
                self.context.metrics.offence(Offence::RateExceeded);
                Err(Refusal::RateLimited)
            }
        }
    }

    /// `421` with the reason, only what the socket takes at once: never a wait on a client.
    fn refuse(&self, stream: &TcpStream, client: SocketAddr, refusal: Refusal) {
        let (text, label) = match refusal {
            Refusal::ServerFull => ("too many connections (server full)".into(), "server_full"),
            Refusal::PerAddress => (
                "too many connections (too many from your address)".into(),
                "per_address",
            ),
            Refusal::NotAllowed => ("not allowed from your address".into(), "not_allowed"),
            Refusal::Banned(left) => (
                format!("your address is banned for {}s", left.as_secs().max(1)),
                "banned",
            ),
            Refusal::RateLimited => (
                "too many connections per second from your address".into(),
                "rate_limited",
            ),
        };
        self.context.metrics.refused(label);
        // A banned address knocking is the defender working: not worth a line each time.
        if matches!(refusal, Refusal::Banned(_)) {
            log::debug!("refused {client}: {text}");
        } else {
            log::warn!("refused {client}: {text}");
        }
        let reply = Reply::new(Code::ServiceUnavailable, text);
        let _ = send_before(stream, &reply.to_bytes(), Instant::now());
    }

    /// Runs one session on this thread, holding its places in the limits until it ends.
    fn run(
        self,
        stream: TcpStream,
        origin: Origin,
        slots: (ConnectionSlot, AddressSlot),
        implicit_tls: bool,
    ) {
        let peer = origin.client;
        let live = slots.0.live();
        let shown_peer = peer.to_string();
        // A trusted balancer speaking for itself (a LOCAL header: its health check every
        // few seconds) is logged only at debug level.
        let level = if origin.balancer.is_none() && self.context.config.proxy.trusts(peer.ip()) {
            log::Level::Debug
        } else {
            log::Level::Info
        };
        match origin.balancer {
            Some(balancer) => log::log!(
                level, event = "session_start", peer = shown_peer.as_str(), live = live;
                "session start {peer} via {balancer} ({live} live)"
            ),
            None => log::log!(
                level, event = "session_start", peer = shown_peer.as_str(), live = live;
                "session start {peer} ({live} live)"
            ),
        }
        let metrics = Arc::clone(&self.context.metrics);
        metrics.session(true);
        session::serve(stream, origin, self.context, implicit_tls);
        metrics.session(false);
        let live = slots.0.live() - 1;
        drop(slots);
        log::log!(
            level, event = "session_end", peer = shown_peer.as_str(), live = live;
            "session end {peer} ({live} live)"
        );
    }
}

/// Live connection counts per client address.
#[derive(Debug, Clone)]
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

    /// The same counts under a new maximum.
    fn with_max(&self, max: usize) -> PerAddressLimit {
        PerAddressLimit {
            counts: Arc::clone(&self.counts),
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
