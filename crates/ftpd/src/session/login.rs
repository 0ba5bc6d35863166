//! Login: USER/PASS through the defender, the gate on password checks and the users store,
//! then the per-user places (sessions, quota usage) a login takes; and what a logged-in
//! session may do (its identity, its storage, its permissions).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Flow, Login, Replied, Session, MAX_FAILED_LOGINS};
use crate::defender::Offence;
use crate::path::VirtualPath;
use crate::reply::{Code, Reply};
use crate::storage::Storage;
use crate::users::{Identity, Permission};

impl Session {
    pub(super) fn log_in(&mut self, password: &str) -> Replied<Flow> {
        let user = match std::mem::replace(&mut self.login, Login::AwaitingUser) {
            Login::AwaitingPass { user } => user,
            logged_in @ Login::LoggedIn { .. } => {
                self.login = logged_in;
                return Err(Reply::new(Code::BadSequence, "already logged in"));
            }
            Login::AwaitingUser => return Err(Reply::new(Code::BadSequence, "send USER first")),
        };
        let context = Arc::clone(&self.context);
        let users = &context.config.users;
        let defence = &context.config.defender;
        // The defender first: a banned address (or one whose checks in flight would reach
        // the threshold) gets no password check at all, whichever session it uses.
        let Some(attempt) = context.defender.begin_attempt(defence, self.peer.ip()) else {
            let _ = self.send(Reply::new(
                Code::ServiceUnavailable,
                "too many failed logins from your address, closing",
            ));
            return Ok(Flow::Quit);
        };
        // Each hash check costs ~19 MiB while it runs: at most a few at once, the rest wait
        // within their own login deadline.
        let pass = if users.needs_verification(&user) {
            match context.verification.enter(self.deadline()) {
                Some(pass) => Some(pass),
                None => {
                    let _ = self.send(self.timeout_reply());
                    return Ok(Flow::Quit);
                }
            }
        } else {
            None
        };
        let identity = users.authenticate(&user, password, self.peer.ip());
        drop(pass);
        context.metrics.login(identity.is_some());
        if identity.is_none() {
            context.metrics.offence(Offence::FailedLogin);
        }
        let banned = context
            .defender
            .finish_attempt(defence, attempt, identity.is_some());
        let storage = identity.as_ref().map(|identity| {
            let home = VirtualPath::root().resolve(identity.home().as_bytes());
            if home.is_root() {
                Ok(Arc::clone(&context.config.storage))
            } else {
                context.config.storage.subdirectory(&home).map(Arc::new)
            }
        });
        match (identity, storage) {
            (Some(identity), Some(Ok(storage))) => {
                let policy = &identity.policy;
                let Some(slot) = context
                    .accounts
                    .open_session(&identity.name, policy.max_sessions)
                else {
                    log::warn!(
                        "{}: {} already has {} sessions, refused",
                        self.peer,
                        identity.name,
                        policy.max_sessions.unwrap_or_default()
                    );
                    let _ = self.send(Reply::new(
                        Code::ServiceUnavailable,
                        format!("too many sessions for {}, closing", identity.name),
                    ));
                    return Ok(Flow::Quit);
                };
                if policy.has_quota() {
                    let counted = context
                        .accounts
                        .quotas
                        .usage(&identity.name, || storage.usage());
                    if let Err(error) = counted {
                        log::warn!(
                            "{}: cannot count what {} stores ({error}); their quota starts \
                             from nothing",
                            self.peer,
                            identity.name
                        );
                    }
                }
                let peer = self.peer.to_string();
                log::info!(
                    event = "login", session = self.id, peer = peer.as_str(),
                    user = identity.name.as_str();
                    "{}: {} logged in", self.peer, identity.name
                );
                let text = if identity.policy.permissions.is_read_only() {
                    "Login successful (read-only)"
                } else {
                    "Login successful"
                };
                self.login = Login::LoggedIn {
                    identity,
                    storage,
                    _slot: slot,
                };
                self.cwd = VirtualPath::root();
                self.last_command = Instant::now();
                Ok(self.reply(Reply::new(Code::LoggedIn, text)))
            }
            (Some(identity), Some(Err(error))) => {
                log::error!("{}: home of {} unusable: {error}", self.peer, identity.name);
                Err(Reply::new(Code::NotLoggedIn, "home directory unavailable"))
            }
            _ => {
                self.failed_logins += 1;
                let peer = self.peer.to_string();
                log::warn!(
                    event = "login_failed", session = self.id, peer = peer.as_str(),
                    user = user.as_str(), attempt = self.failed_logins;
                    "{}: failed login for {user:?} (attempt {})",
                    self.peer,
                    self.failed_logins
                );
                if self.failed_logins >= MAX_FAILED_LOGINS || banned {
                    let _ = self.send(Reply::new(
                        Code::ServiceUnavailable,
                        "too many failed logins, closing",
                    ));
                    return Ok(Flow::Quit);
                }
                // The same reply whether the name exists or not, at once (the hash check
                // took the same time either way); then guessing slows down, a second more
                // each time, before this session reads its next command. Only it waits.
                if self
                    .send(Reply::new(Code::NotLoggedIn, "Login incorrect"))
                    .is_err()
                {
                    return Ok(Flow::Quit);
                }
                std::thread::sleep(Duration::from_secs(u64::from(self.failed_logins)));
                Ok(Flow::Continue)
            }
        }
    }

    pub(super) fn identity(&self) -> Option<&Identity> {
        match &self.login {
            Login::LoggedIn { identity, .. } => Some(identity),
            _ => None,
        }
    }

    pub(super) fn storage(&self) -> Arc<Storage> {
        match &self.login {
            Login::LoggedIn { storage, .. } => Arc::clone(storage),
            // dispatch() refuses file commands before login.
            _ => Arc::clone(&self.context.config.storage),
        }
    }

    /// True when the login may change anything (for MLST/MLSD `perm` facts).
    pub(super) fn can_write(&self) -> bool {
        self.identity()
            .is_some_and(|identity| !identity.policy.permissions.is_read_only())
    }

    /// `Ok` when the login may do `permission`; otherwise `550` saying what is refused, and
    /// a log line. Nothing has been touched yet when this refuses.
    pub(super) fn check(&self, permission: Permission) -> Replied<()> {
        let Some(identity) = self.identity() else {
            return Err(Reply::new(
                Code::NotLoggedIn,
                "Please login with USER and PASS",
            ));
        };
        if identity.may(permission) {
            return Ok(());
        }
        let peer = self.peer.to_string();
        log::warn!(
            event = "refused", session = self.id, peer = peer.as_str(),
            user = identity.name.as_str(), permission = permission.word();
            "{}: {} may not {}", self.peer, identity.name, permission.word()
        );
        let text = if identity.policy.permissions.is_read_only() {
            "permission denied: this login is read-only".to_owned()
        } else {
            format!(
                "permission denied: this login may not {}",
                permission.word()
            )
        };
        Err(Reply::new(Code::FileUnavailable, text))
    }

    pub(super) fn readable(&self, argument: &[u8]) -> (Arc<Storage>, VirtualPath) {
        (self.storage(), self.cwd.resolve(argument))
    }

    /// The storage and path for an action that `permission` allows.
    pub(super) fn permitted(
        &self,
        permission: Permission,
        argument: &[u8],
    ) -> Replied<(Arc<Storage>, VirtualPath)> {
        self.check(permission)?;
        Ok(self.readable(argument))
    }
}
