//! Xferlog: the record each transfer leaves, as a log line and, for file transfers, a line
//! of the wu-ftpd `xferlog` format that log analysers read.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use crate::data;

/// The open transfer log.
#[derive(Debug)]
pub struct Xferlog {
    file: Mutex<File>,
}

impl Xferlog {
    /// Opens `path` for appending, creating it if needed.
    pub fn open(path: &Path) -> io::Result<Xferlog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Xferlog {
            file: Mutex::new(file),
        })
    }

    fn append(&self, line: &str) {
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(error) = file.write_all(line.as_bytes()) {
            log::warn!("cannot write xferlog: {error}");
        }
    }
}

/// How a transfer ended, as the logs tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every byte moved and the final reply was 226.
    Complete,
    /// ABOR stopped it.
    Aborted,
    /// The network failed (the client left, stalled, or reset).
    Broken(String),
    /// The server refused or failed to finish it (disk full, policy); the reply's text.
    Failed(String),
}

impl Outcome {
    /// The outcome as a metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::Aborted => "aborted",
            Outcome::Broken(_) => "broken",
            Outcome::Failed(_) => "failed",
        }
    }
}

/// Who moved what, for the log line and the xferlog entry each transfer gets.
#[derive(Debug, Clone)]
pub struct TransferRecord {
    /// The session it belongs to.
    pub session: u64,
    /// The FTP verb (RETR, STOR, LIST, …).
    pub verb: &'static str,
    /// The virtual path, as the client sees it.
    pub path: String,
    /// True for uploads.
    pub incoming: bool,
    /// True for TYPE A.
    pub ascii: bool,
    /// The login name, or `-`.
    pub user: String,
    /// True for anonymous logins.
    pub anonymous: bool,
}

impl TransferRecord {
    /// Logs the transfer, and appends its xferlog line when it moved a file.
    pub fn log(
        &self,
        xferlog: Option<&Xferlog>,
        peer: SocketAddr,
        outcome: &Outcome,
        bytes: u64,
        took: Duration,
    ) {
        let told = match outcome {
            Outcome::Complete => "complete".to_owned(),
            Outcome::Aborted => "aborted".to_owned(),
            Outcome::Broken(why) => format!("broken: {why}"),
            Outcome::Failed(why) => format!("failed: {why}"),
        };
        let shown_peer = peer.to_string();
        log::info!(
            event = "transfer", session = self.session, peer = shown_peer.as_str(),
            user = self.user.as_str(), verb = self.verb, path = self.path.as_str(),
            bytes = bytes, duration_ms = took.as_millis() as u64, outcome = outcome.label();
            "transfer {peer} {} {} {} {bytes} bytes {:.3} s {told}",
            self.user,
            self.verb,
            self.path,
            took.as_secs_f64()
        );
        let is_file_transfer = matches!(self.verb, "RETR" | "STOR" | "APPE" | "STOU");
        if let (Some(xferlog), true) = (xferlog, is_file_transfer) {
            let complete = *outcome == Outcome::Complete;
            xferlog.append(&self.xferlog_line(peer, complete, bytes, took));
        }
    }

    /// One line of the wu-ftpd xferlog format: time, seconds, host, bytes, file, type,
    /// action, direction, access mode, user, service, auth method, auth id, status.
    fn xferlog_line(&self, peer: SocketAddr, complete: bool, bytes: u64, took: Duration) -> String {
        let path: String = self
            .path
            .chars()
            .map(|c| if c.is_control() { '_' } else { c })
            .collect();
        format!(
            "{} {} {} {bytes} {path} {} _ {} {} {} ftp 0 * {}\n",
            chrono::Local::now().format("%a %b %e %H:%M:%S %Y"),
            took.as_secs().max(1),
            data::canonical(peer.ip()),
            if self.ascii { 'a' } else { 'b' },
            if self.incoming { 'i' } else { 'o' },
            if self.anonymous { 'a' } else { 'r' },
            self.user,
            if complete { 'c' } else { 'i' },
        )
    }
}
