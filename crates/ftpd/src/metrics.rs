//! Metrics: the counters an operator watches, served as Prometheus text (OpenMetrics) on
//! `--metrics ADDR`. Recording is a few atomic adds; the page is encoded only when scraped.

use std::io::{self, Read};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use common::listen::accept_until;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::deadline::{read_until, send_before};
use crate::defender::{Defender, Offence};

/// Label pairs, fixed strings only: no client-chosen text ever becomes a label.
type Labels = Vec<(&'static str, &'static str)>;

/// How long a scraper may take to send its request and to read the page.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest request head read from a scraper.
const MAX_REQUEST: usize = 8 * 1024;

/// Every counter, shared by all sessions of every generation.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    sessions_open: Gauge,
    logins: Family<Labels, Counter>,
    bytes: Family<Labels, Counter>,
    files: Family<Labels, Counter>,
    transfers: Family<Labels, Counter>,
    tls_failures: Counter,
    refused: Family<Labels, Counter>,
    offences: Family<Labels, Counter>,
    /// Seconds left on each ban in force, by address: refreshed from the defender per scrape.
    banned: Family<Vec<(&'static str, String)>, Gauge>,
    events: Family<Labels, Counter>,
    events_dropped: Counter,
}

/// Which way a transfer's bytes went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// To the client (RETR, listings).
    Sent,
    /// From the client (STOR, APPE, STOU).
    Received,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("ftpd");
        let metrics = Metrics {
            sessions_open: Gauge::default(),
            logins: Family::default(),
            bytes: Family::default(),
            files: Family::default(),
            transfers: Family::default(),
            tls_failures: Counter::default(),
            refused: Family::default(),
            offences: Family::default(),
            banned: Family::default(),
            events: Family::default(),
            events_dropped: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "sessions_open",
            "Control connections being served",
            metrics.sessions_open.clone(),
        );
        registry.register(
            "logins",
            "Logins by result (accepted, refused)",
            metrics.logins.clone(),
        );
        registry.register(
            "transfer_bytes",
            "Bytes moved over data connections, by direction",
            metrics.bytes.clone(),
        );
        registry.register(
            "files",
            "Files completely sent or received, by direction",
            metrics.files.clone(),
        );
        registry.register(
            "transfers",
            "Transfers (files and listings) by verb and outcome",
            metrics.transfers.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed, control and data",
            metrics.tls_failures.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused by a limit, by reason",
            metrics.refused.clone(),
        );
        registry.register(
            "defender_offences",
            "Offences the defender scored, by kind",
            metrics.offences.clone(),
        );
        registry.register(
            "defender_banned_seconds",
            "Seconds left on each ban in force, by address",
            metrics.banned.clone(),
        );
        registry.register(
            "events",
            "Event hooks run, by kind (upload, delete, rename, pre_upload) and result (ok, \
             refused, timeout, failed)",
            metrics.events.clone(),
        );
        registry.register(
            "events_dropped",
            "Events dropped because the event queue was full",
            metrics.events_dropped.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// A session started (`true`) or ended (`false`).
    pub fn session(&self, started: bool) {
        if started {
            self.sessions_open.inc();
        } else {
            self.sessions_open.dec();
        }
    }

    /// A PASS was answered.
    pub fn login(&self, accepted: bool) {
        let result = if accepted { "accepted" } else { "refused" };
        self.logins.get_or_create(&vec![("result", result)]).inc();
    }

    /// A transfer ended: its verb, outcome (`complete`, `aborted`, `broken`, `failed`), the
    /// bytes it moved and whether it moved a whole file.
    pub fn transfer(
        &self,
        verb: &'static str,
        outcome: &'static str,
        direction: Direction,
        bytes: u64,
        whole_file: bool,
    ) {
        let way = match direction {
            Direction::Sent => "sent",
            Direction::Received => "received",
        };
        self.transfers
            .get_or_create(&vec![("verb", verb), ("outcome", outcome)])
            .inc();
        self.bytes
            .get_or_create(&vec![("direction", way)])
            .inc_by(bytes);
        if whole_file {
            self.files.get_or_create(&vec![("direction", way)]).inc();
        }
    }

    /// A TLS handshake failed.
    pub fn tls_failure(&self) {
        self.tls_failures.inc();
    }

    /// A connection was refused by a limit (`server_full`, `per_address`) or dropped for
    /// its PROXY header (`proxy_header`).
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&vec![("reason", reason)]).inc();
    }

    /// An event hook ran: its kind and result, both fixed words.
    pub fn event(&self, kind: &'static str, result: &'static str) {
        self.events
            .get_or_create(&vec![("kind", kind), ("result", result)])
            .inc();
    }

    /// An event was dropped: the queue was full.
    pub fn event_dropped(&self) {
        self.events_dropped.inc();
    }

    /// The page, in the Prometheus text format (OpenMetrics flavour).
    pub fn page(&self) -> String {
        let mut page = String::new();
        if encode(&mut page, &self.registry).is_err() {
            page = "# metrics unavailable\n# EOF\n".into();
        }
        page
    }

    /// The defender scored an offence.
    pub fn offence(&self, offence: Offence) {
        self.offences
            .get_or_create(&vec![("offence", offence.label())])
            .inc();
    }

    /// Replaces the list of bans shown with `bans`.
    fn show_bans(&self, bans: &[(IpAddr, Duration)]) {
        self.banned.clear();
        for (ip, left) in bans {
            let left = i64::try_from(left.as_secs()).unwrap_or(i64::MAX);
            self.banned
                .get_or_create(&vec![("address", ip.to_string())])
                .set(left.max(1));
        }
    }

    /// Answers scrapers on `listener` until `stop` is set (whoever sets it wakes the
    /// listener). One request at a time, each under [`SCRAPE_TIMEOUT`]: a stalled scraper
    /// costs the page that long, never the FTP service. Each page lists `defender`'s bans.
    pub fn serve(&self, listener: &TcpListener, stop: &AtomicBool, defender: &Defender) {
        accept_until(listener, stop, |stream, peer| {
            self.show_bans(&defender.bans());
            if let Err(error) = self.answer(&stream) {
                log::debug!("metrics request from {peer}: {error}");
            }
        });
    }

    fn answer(&self, stream: &TcpStream) -> io::Result<()> {
        let deadline = Instant::now() + SCRAPE_TIMEOUT;
        let head = read_head(stream, deadline)?;
        let request_line = head.lines().next().unwrap_or_default();
        let mut words = request_line.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let (status, content_type, body) = match (method, path) {
            ("GET", "/metrics") => (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.page(),
            ),
            ("GET", _) => ("404 Not Found", "text/plain", "try /metrics\n".into()),
            _ => (
                "405 Method Not Allowed",
                "text/plain",
                "only GET /metrics\n".into(),
            ),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        send_before(stream, response.as_bytes(), deadline)
    }
}

/// Reads an HTTP request head (up to the blank line) of at most [`MAX_REQUEST`] bytes.
fn read_head(mut stream: &TcpStream, deadline: Instant) -> io::Result<String> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        if head.len() > MAX_REQUEST {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request too long",
            ));
        }
        read_until(stream, deadline)?;
        let count = stream.read(&mut buffer)?;
        if count == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..count]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}
