//! Accounts: live state per user, shared by every session and generation: how many sessions
//! each user has open, what each stores (for quotas), and the rate limiters that cap each
//! user's transfers across all of their sessions together. Locks here guard counters only
//! and are never held across I/O or a sleep.

mod meter;
mod quota;
mod throttle;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use meter::{Meter, Metered};
pub use quota::{Limits as QuotaLimits, QuotaBook, QuotaCharge, Usage};
pub use throttle::{RateLimiter, Throttles, Way};

/// Per-user live state.
#[derive(Debug, Default)]
pub struct Accounts {
    sessions: Mutex<HashMap<String, usize>>,
    /// Stored bytes and files per user, for quotas.
    pub quotas: Arc<QuotaBook>,
    /// Transfer rate limiters per user and direction.
    pub throttles: Throttles,
}

/// One logged-in session's place in its user's count; dropping it gives the place back.
#[derive(Debug)]
pub struct SessionSlot {
    accounts: Arc<Accounts>,
    user: String,
}

impl Accounts {
    /// A place for one more session of `user`, unless it already has `max` (no limit: `None`).
    pub fn open_session(self: &Arc<Self>, user: &str, max: Option<usize>) -> Option<SessionSlot> {
        let mut sessions = self
            .sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = sessions.entry(user.to_owned()).or_insert(0);
        if max.is_some_and(|max| *count >= max) {
            return None;
        }
        *count += 1;
        Some(SessionSlot {
            accounts: Arc::clone(self),
            user: user.to_owned(),
        })
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut sessions = self
            .accounts
            .sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = sessions.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                sessions.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_per_user_are_counted_and_given_back() {
        let accounts = Arc::new(Accounts::default());
        let first = accounts.open_session("alice", Some(2)).unwrap();
        let _second = accounts.open_session("alice", Some(2)).unwrap();
        assert!(accounts.open_session("alice", Some(2)).is_none());
        assert!(accounts.open_session("bob", Some(2)).is_some());
        assert!(accounts.open_session("alice", None).is_some());
        drop(first);
        assert!(accounts.open_session("alice", Some(2)).is_some());
    }
}
