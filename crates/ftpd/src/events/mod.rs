//! Events: what a committed upload, a delete or a rename tells the operator's hooks. An
//! [`Event`] is a plain value (JSON on a hook's stdin or in an HTTP POST, and environment
//! variables); [`Events`] is the live bounded queue and its workers; [`hook`] runs one hook
//! under its timeout. Emitting never blocks a session: a full queue drops the event.

pub mod hook;
mod queue;

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

pub use hook::{Hook, HookChildren, Verdict};
pub use queue::Events;

/// Defaults for the event settings.
pub mod defaults {
    /// `--hook-timeout`, seconds.
    pub const HOOK_TIMEOUT: u64 = 30;
    /// `--event-queue`: events waiting for a worker.
    pub const EVENT_QUEUE: usize = 1024;
    /// `--event-workers`: hooks running at once.
    pub const EVENT_WORKERS: usize = 2;
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// STOR, APPE or STOU committed (after the rename over the target).
    Upload,
    /// DELE succeeded.
    Delete,
    /// RNFR + RNTO succeeded.
    Rename,
    /// An upload is about to start: the `pre-upload` hook's question.
    PreUpload,
}

impl EventKind {
    /// The kind as a fixed word, for `FTPD_EVENT` and metrics labels.
    pub fn word(self) -> &'static str {
        match self {
            EventKind::Upload => "upload",
            EventKind::Delete => "delete",
            EventKind::Rename => "rename",
            EventKind::PreUpload => "pre_upload",
        }
    }
}

/// One event, as hooks receive it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// What happened.
    pub event: EventKind,
    /// The login name.
    pub user: String,
    /// The client's address (the one a trusted balancer names).
    pub client: String,
    /// The virtual path, as the user sees it (for a rename, the new name).
    pub path: String,
    /// A rename's old name.
    pub from: Option<String>,
    /// An upload's size in bytes, as hashed.
    pub size: Option<u64>,
    /// An upload's SHA-256, lowercase hex.
    pub sha256: Option<String>,
    /// When it happened, RFC 3339 in UTC.
    pub time: String,
}

impl Event {
    /// An event of `kind` on `path`, now.
    pub fn new(kind: EventKind, user: &str, client: SocketAddr, path: String) -> Event {
        Event {
            event: kind,
            user: user.to_owned(),
            client: client.to_string(),
            path,
            from: None,
            size: None,
            sha256: None,
            time: now(),
        }
    }

    /// The event as one line of JSON (no newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// The environment a command hook gets (`FTPD_FROM`, `FTPD_SIZE` and `FTPD_SHA256` are
    /// empty when they do not apply).
    pub fn environment(&self) -> [(&'static str, String); 7] {
        [
            ("FTPD_EVENT", self.event.word().to_owned()),
            ("FTPD_USER", self.user.clone()),
            ("FTPD_PATH", self.path.clone()),
            ("FTPD_FROM", self.from.clone().unwrap_or_default()),
            (
                "FTPD_SIZE",
                self.size.map(|size| size.to_string()).unwrap_or_default(),
            ),
            ("FTPD_SHA256", self.sha256.clone().unwrap_or_default()),
            ("FTPD_CLIENT", self.client.clone()),
        ]
    }
}

/// Now, as events tell the time: RFC 3339 in UTC, to the millisecond.
fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The hooks and how they run: settings, fixed at start-up (part of `Config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSettings {
    /// Run after each committed upload.
    pub on_upload: Option<Hook>,
    /// Run after each delete.
    pub on_delete: Option<Hook>,
    /// Run after each rename.
    pub on_rename: Option<Hook>,
    /// Asked before each upload; may refuse it.
    pub pre_upload: Option<Hook>,
    /// Longest a hook may run (each HTTP try, for HTTP hooks).
    pub timeout: Duration,
    /// Events that may wait for a worker; more are dropped.
    pub queue: usize,
    /// Hooks that run at once.
    pub workers: usize,
}

impl Default for EventSettings {
    fn default() -> EventSettings {
        EventSettings {
            on_upload: None,
            on_delete: None,
            on_rename: None,
            pre_upload: None,
            timeout: Duration::from_secs(defaults::HOOK_TIMEOUT),
            queue: defaults::EVENT_QUEUE,
            workers: defaults::EVENT_WORKERS,
        }
    }
}

impl EventSettings {
    /// The hook for events of `kind`, if one is configured.
    pub fn hook_for(&self, kind: EventKind) -> Option<&Hook> {
        match kind {
            EventKind::Upload => self.on_upload.as_ref(),
            EventKind::Delete => self.on_delete.as_ref(),
            EventKind::Rename => self.on_rename.as_ref(),
            EventKind::PreUpload => self.pre_upload.as_ref(),
        }
    }

    /// True when any after-the-fact hook is configured (and so workers are needed).
    pub fn any_after(&self) -> bool {
        self.on_upload.is_some() || self.on_delete.is_some() || self.on_rename.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_environment_carry_every_field() {
        let mut event = Event::new(
            EventKind::Rename,
            "ann",
            "192.0.2.1:4000".parse().unwrap(),
            "/b \"x\".txt".into(),
        );
        event.from = Some("/a.txt".into());
        let json: serde_json::Value = serde_json::from_str(&event.to_json()).unwrap();
        assert_eq!(json["event"], "rename");
        assert_eq!(json["path"], "/b \"x\".txt");
        assert_eq!(json["from"], "/a.txt");
        assert_eq!(json["client"], "192.0.2.1:4000");
        assert!(json["size"].is_null() && json["sha256"].is_null());
        assert!(json["time"].as_str().unwrap().ends_with('Z'));
        let environment = event.environment();
        assert!(environment.contains(&("FTPD_EVENT", "rename".into())));
        assert!(environment.contains(&("FTPD_FROM", "/a.txt".into())));
        assert!(environment.contains(&("FTPD_SIZE", String::new())));
    }
}
