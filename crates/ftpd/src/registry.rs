//! Registry: the live sessions, so a shutdown can reach them. It holds handles, never does
//! I/O under its lock, and never waits on a client.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::control::Control;
use crate::reply::{Code, Reply};

/// Every live session.
#[derive(Debug, Default)]
pub struct Registry {
    next_id: AtomicU64,
    live: Mutex<HashMap<u64, Registered>>,
    shutting_down: AtomicBool,
}

#[derive(Debug, Clone)]
struct Registered {
    control: Arc<Control>,
    transferring: Arc<AtomicBool>,
}

/// A session's entry in the [`Registry`]; dropping it removes the entry.
pub struct Registration<'a> {
    registry: &'a Registry,
    id: u64,
}

/// What idle sessions hear when the server stops.
pub fn shutting_down_reply() -> Reply {
    Reply::new(Code::ServiceUnavailable, "server shutting down")
}

impl Registry {
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
        Registration { registry: self, id }
    }

    /// True once a shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tells idle sessions to go (without waiting on any client: a goodbye that cannot leave
    /// at once is skipped, and the connection closed anyway), waits up to `grace` for the
    /// transfers, then closes whatever is left.
    pub fn shut_down(&self, grace: Duration) {
        self.shutting_down.store(true, Ordering::Release);
        let goodbye = shutting_down_reply();
        for registered in self.snapshot() {
            if !registered.transferring.load(Ordering::Acquire) {
                registered.control.close_now_with(&goodbye);
            }
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && !self.is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = self.snapshot();
        if !left.is_empty() {
            log::warn!(
                "{} sessions still busy after {grace:?}; closing them",
                left.len()
            );
            for registered in left {
                registered.control.close_now_with(&goodbye);
            }
        }
    }

    /// The handles, copied out so nothing is done under the lock.
    fn snapshot(&self) -> Vec<Registered> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Registered>> {
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Registration<'_> {
    /// The session's number, unique in this process: it ties a session's log lines together.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}
