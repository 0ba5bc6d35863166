//! Server: the accept loops (plain and implicit TLS), the per-address limit, and the
//! graceful stop: on SIGINT or SIGTERM it stops accepting, tells idle sessions `421`, lets
//! transfers finish for the grace period, and returns.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::listen::{accept_until, spawn_small, wake_accept, ConnectionLimit};

use crate::config::Limits;
use crate::deadline::send_before;
use crate::reply::{Code, Reply};
use crate::session::{self, Context, THREAD_STACK_SIZE};

/// The bound sockets a server accepts on.
#[derive(Debug)]
pub struct Listeners {
    /// Plain FTP (explicit TLS with AUTH TLS).
    pub control: TcpListener,
    /// Implicit FTPS: TLS from the first byte.
    pub implicit_tls: Option<TcpListener>,
}

/// Serves until SIGINT or SIGTERM, then stops gracefully within `grace`.
pub fn serve(listeners: Listeners, context: Context, limits: Limits, grace: Duration) {
    let context = Arc::new(context);
    let stop = Arc::new(AtomicBool::new(false));
    let wakers: std::io::Result<Vec<TcpListener>> = std::iter::once(&listeners.control)
        .chain(listeners.implicit_tls.as_ref())
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
    let gate = Gate {
        context: &context,
        total: ConnectionLimit::new(limits.max_clients),
        per_ip: PerAddressLimit::new(limits.max_per_ip),
    };
    std::thread::scope(|scope| {
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
    context.registry.shut_down(grace);
}

/// What a connection passes before it gets a session thread.
struct Gate<'a> {
    context: &'a Arc<Context>,
    total: ConnectionLimit,
    per_ip: PerAddressLimit,
}

impl Gate<'_> {
    fn admit(&self, stream: TcpStream, peer: SocketAddr, implicit_tls: bool) {
        let refuse = |why: &str| {
            log::warn!("refused {peer}: {why}");
            let reply = Reply::new(
                Code::ServiceUnavailable,
                format!("too many connections ({why})"),
            );
            // Only what the socket takes at once: the accept loop never waits on a client.
            let _ = send_before(&stream, &reply.to_bytes(), Instant::now());
        };
        let Some(slot) = self.total.try_acquire() else {
            return refuse("server full");
        };
        let Some(address_slot) = self.per_ip.try_acquire(peer.ip()) else {
            return refuse("too many from your address");
        };
        log::info!("session start {peer} ({} live)", slot.live());
        let context = Arc::clone(self.context);
        let session = move || {
            session::serve(stream, peer, context, implicit_tls);
            let live = slot.live() - 1;
            drop((slot, address_slot));
            log::info!("session end {peer} ({live} live)");
        };
        if let Err(error) = spawn_small(THREAD_STACK_SIZE, session) {
            log::error!("refused {peer}: cannot start a thread: {error}");
        }
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
