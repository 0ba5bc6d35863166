//! Clock: one client's session with a clock server, the time written once a second.
//!
//! clock1 and clock2 serve exactly this session; they differ only in whether the accept loop
//! runs it in place or on a new thread. Each line goes out at the wall-clock second boundary
//! (not "one second after the last write", which drifts), and between ticks the session
//! watches the socket, so a client that leaves is noticed at once rather than at the next
//! failing write.

use std::collections::{HashMap, HashSet};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Utc};

use crate::listen::{ConnectionLimit, ConnectionSlot, ListenArgs};
use crate::zone::Zone;

/// How long a write may stall before the client is dropped as too slow.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Stack for a session thread, an eighth of the 2 MiB default.
///
/// A session touches only a page or two of it, and only touched pages cost memory. The size
/// still matters after a thread ends: glibc keeps up to 40 MiB of freed stacks for reuse,
/// each holding the pages its thread touched, so larger stacks mean fewer cached ones and
/// less memory kept after a crowd of clients has left (64 KiB stacks kept about 4 MiB).
pub const SESSION_STACK_SIZE: usize = 256 * 1024;

/// The flags both clock servers take.
#[derive(clap::Args, Debug, Clone)]
pub struct ClockArgs {
    #[command(flatten)]
    pub listen: ListenArgs,
    /// strftime pattern for each line (chrono syntax), e.g. '%H:%M:%S' or '%Y-%m-%d %H:%M:%S %Z'
    #[arg(long, default_value = "%H:%M:%S", value_parser = TimeFormat::parse)]
    pub format: TimeFormat,
    /// Time zone name from the tz database (overrides TZ), e.g. Asia/Tokyo; default: system time
    #[arg(long, env = "TZ", value_parser = Zone::parse)]
    pub tz: Option<Zone>,
}

/// A strftime pattern that chrono accepted, parsed once at start-up.
#[derive(Debug, Clone)]
pub struct TimeFormat(Vec<Item<'static>>);

impl TimeFormat {
    /// Parses a chrono strftime pattern; a pattern chrono rejects is an error naming it.
    pub fn parse(pattern: &str) -> Result<TimeFormat, String> {
        StrftimeItems::new(pattern)
            .parse_to_owned()
            .map(TimeFormat)
            .map_err(|_| format!("'{pattern}' is not a valid strftime pattern"))
    }
}

/// What a clock server says: a format in a zone, and the ticker that says it to every
/// client at once.
#[derive(Debug, Clone)]
pub struct Clock {
    lines: LineFormat,
    ticker: Arc<Ticker>,
}

/// How one line reads: the format, in the zone.
#[derive(Debug, Clone)]
struct LineFormat {
    zone: Zone,
    format: TimeFormat,
}

impl LineFormat {
    /// Appends the line for `instant`, newline included, to `line`.
    fn write_line(&self, instant: DateTime<Utc>, line: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        let _ = write!(line, "{}", self.zone.format(instant, &self.format.0));
        line.push(b'\n');
    }
}

impl Clock {
    /// The clock the flags describe (without `--tz` or `TZ`, the system's zone), with its
    /// ticker thread running.
    pub fn from_args(args: &ClockArgs) -> io::Result<Clock> {
        let lines = LineFormat {
            zone: args.tz.unwrap_or_else(Zone::system),
            format: args.format.clone(),
        };
        Ok(Clock {
            ticker: Ticker::start(lines.clone())?,
            lines,
        })
    }

    /// The zone this clock reports in.
    pub fn zone(&self) -> Zone {
        self.lines.zone
    }

    /// Appends the line for `instant`, newline included, to `line`.
    pub fn write_line(&self, instant: DateTime<Utc>, line: &mut Vec<u8>) {
        self.lines.write_line(instant, line);
    }
}

/// Why a session ended.
#[derive(Debug)]
pub enum SessionEnd {
    /// The client closed or reset its end.
    ClientLeft,
    /// A write stalled for [`WRITE_TIMEOUT`]: the client stopped reading.
    TooSlow,
    /// Anything else the socket reported.
    Failed(io::Error),
}

/// Takes a place under `limit` for `peer` and logs the connect, or logs the refusal and
/// returns `None` (the caller then drops the stream, closing it at once).
///
/// This runs on the accept thread, so a session thread never formats a log line until it
/// ends: its stack stays within a page or two, which is most of its memory.
pub fn admit(limit: &ConnectionLimit, peer: SocketAddr) -> Option<ConnectionSlot> {
    let Some(slot) = limit.try_acquire() else {
        log::warn!(
            "refused {peer}: {} clients connected, the most allowed",
            limit.live()
        );
        return None;
    };
    log::info!("connect {peer} ({} live)", slot.live());
    Some(slot)
}

/// Serves one client until it leaves, then logs the disconnect with the live count.
pub fn serve_session(stream: TcpStream, peer: SocketAddr, clock: &Clock, slot: ConnectionSlot) {
    let end = tick_until_gone(stream, clock);
    let live = slot.live() - 1;
    drop(slot);
    match end {
        SessionEnd::ClientLeft => log::info!("disconnect {peer} ({live} live)"),
        SessionEnd::TooSlow => {
            log::warn!("dropped {peer}: not reading for {WRITE_TIMEOUT:?} ({live} live)")
        }
        SessionEnd::Failed(error) => log::warn!("dropped {peer}: {error} ({live} live)"),
    }
}

/// Writes the time now, then hands the client to the clock's ticker, which writes every
/// following line at the second boundary; this thread only watches for the client leaving.
/// No session thread wakes on a tick: one ticker thread writes the same bytes to every
/// socket, which is what keeps 10,000 clients cheap.
pub fn tick_until_gone(stream: TcpStream, clock: &Clock) -> SessionEnd {
    if let Err(error) = stream.set_write_timeout(Some(WRITE_TIMEOUT)) {
        return SessionEnd::Failed(error);
    }
    // One small write a second: never worth delaying for Nagle.
    let _ = stream.set_nodelay(true);
    let now = Utc::now();
    let mut line = Vec::with_capacity(64);
    clock.write_line(now, &mut line);
    if let Err(error) = (&stream).write_all(&line) {
        return classify(error);
    }
    let stream = Arc::new(stream);
    let ticket = clock.ticker.subscribe(Arc::clone(&stream), now.timestamp());
    let end = watch_until_gone(&stream);
    // The ticker closes a client it gave up on; that is the session's end, not a hang-up.
    if clock.ticker.unsubscribe(ticket) {
        SessionEnd::TooSlow
    } else {
        end
    }
}

/// Blocks until the client hangs up (or the ticker shuts the socket). Anything the client
/// sends is read and ignored.
fn watch_until_gone(mut stream: &TcpStream) -> SessionEnd {
    let mut ignored = [0u8; 64];
    loop {
        match wait_readable(stream, WATCH_INTERVAL) {
            Ok(false) => {}
            Ok(true) => match stream.read(&mut ignored) {
                Ok(0) => return SessionEnd::ClientLeft,
                Ok(_) => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return classify(error),
            },
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return SessionEnd::Failed(error),
        }
    }
}

/// How long a session's watch sleeps between checks: only a hang-up wakes it sooner.
const WATCH_INTERVAL: Duration = Duration::from_secs(3600);

/// The one thread that writes each second's line to every client, at the boundary.
#[derive(Debug)]
pub struct Ticker {
    clients: Mutex<Subscribers>,
}

#[derive(Debug, Default)]
struct Subscribers {
    next_ticket: u64,
    live: HashMap<u64, Subscriber>,
    /// Tickets of clients the ticker dropped, until their sessions look.
    dropped: HashSet<u64>,
}

#[derive(Debug)]
struct Subscriber {
    stream: Arc<TcpStream>,
    /// Bytes the socket has not taken yet (a slow reader), sent before the next line.
    pending: Vec<u8>,
    /// Since when the socket has refused bytes.
    stalled_since: Option<Instant>,
    /// The last second whose line this client has (the session wrote the first).
    last_second: i64,
}

impl Ticker {
    /// Starts the ticker thread for `clock`'s lines.
    fn start(lines: LineFormat) -> io::Result<Arc<Ticker>> {
        let ticker = Arc::new(Ticker {
            clients: Mutex::new(Subscribers::default()),
        });
        let running = Arc::clone(&ticker);
        std::thread::Builder::new()
            .name("ticker".into())
            .stack_size(SESSION_STACK_SIZE)
            .spawn(move || running.run(&lines))?;
        Ok(ticker)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Subscribers> {
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn subscribe(&self, stream: Arc<TcpStream>, last_second: i64) -> u64 {
        let mut clients = self.lock();
        let ticket = clients.next_ticket;
        clients.next_ticket += 1;
        clients.live.insert(
            ticket,
            Subscriber {
                stream,
                pending: Vec::new(),
                stalled_since: None,
                last_second,
            },
        );
        ticket
    }

    /// Removes a session's client; true if the ticker had already dropped it as too slow.
    fn unsubscribe(&self, ticket: u64) -> bool {
        let mut clients = self.lock();
        clients.live.remove(&ticket);
        clients.dropped.remove(&ticket)
    }

    fn run(&self, lines: &LineFormat) {
        let mut line = Vec::with_capacity(64);
        loop {
            let now = Utc::now();
            let next = DateTime::from_timestamp(now.timestamp() + 1, 0).unwrap_or(now);
            if let Ok(wait) = (next - now).to_std() {
                std::thread::sleep(wait);
            }
            let now = Utc::now();
            let second = now.timestamp();
            line.clear();
            lines.write_line(now, &mut line);
            self.send_to_all(&line, second);
        }
    }

    /// Sends `line` to every client that lacks it, never waiting: a socket that takes only
    /// part keeps the rest for later, and one that has taken nothing for
    /// [`WRITE_TIMEOUT`] is shut down (its session sees that and ends).
    fn send_to_all(&self, line: &[u8], second: i64) {
        let mut clients = self.lock();
        let Subscribers { live, dropped, .. } = &mut *clients;
        let now = Instant::now();
        for (ticket, client) in live.iter_mut() {
            if client.last_second >= second || dropped.contains(ticket) {
                continue;
            }
            client.last_second = second;
            client.pending.extend_from_slice(line);
            match send_now(&client.stream, &client.pending) {
                Ok(sent) => {
                    client.pending.drain(..sent);
                    if client.pending.is_empty() {
                        client.stalled_since = None;
                        continue;
                    }
                }
                Err(_) => {
                    // The session sees the same error on its side and ends.
                    let _ = client.stream.shutdown(std::net::Shutdown::Both);
                    continue;
                }
            }
            let since = *client.stalled_since.get_or_insert(now);
            if now.duration_since(since) >= WRITE_TIMEOUT {
                dropped.insert(*ticket);
                let _ = client.stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// One non-blocking send; how many bytes the socket took (0 when its buffer is full).
fn send_now(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: a send of bytes we borrow for the call on a descriptor the stream owns;
    // MSG_DONTWAIT keeps it from blocking and MSG_NOSIGNAL from raising SIGPIPE.
    let sent = unsafe {
        libc::send(
            stream.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if sent >= 0 {
        return Ok(sent as usize);
    }
    let error = io::Error::last_os_error();
    match error.kind() {
        ErrorKind::WouldBlock | ErrorKind::Interrupted => Ok(0),
        _ => Err(error),
    }
}

fn classify(error: io::Error) -> SessionEnd {
    match error.kind() {
        ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => {
            SessionEnd::ClientLeft
        }
        ErrorKind::WouldBlock | ErrorKind::TimedOut => SessionEnd::TooSlow,
        _ => SessionEnd::Failed(error),
    }
}

/// Waits up to `timeout` (nanosecond precision, unlike `poll`'s milliseconds) for the socket
/// to become readable or hung up; `Ok(false)` on timeout.
fn wait_readable(stream: &TcpStream, timeout: Duration) -> io::Result<bool> {
    let mut watched = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        tv_nsec: timeout.subsec_nanos().into(),
    };
    // SAFETY: `watched` is one valid pollfd and `timeout` a valid timespec, both alive for the
    // call; a null signal mask leaves the thread's mask unchanged.
    let ready = unsafe { libc::ppoll(&mut watched, 1, &timeout, std::ptr::null()) };
    match ready {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(false),
        _ => Ok(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_line_is_go_style_clock_time() {
        let clock = LineFormat {
            zone: Zone::parse("UTC").unwrap(),
            format: TimeFormat::parse("%H:%M:%S").unwrap(),
        };
        let instant = DateTime::from_timestamp(3_600 * 15 + 4 * 60 + 5, 999_000_000).unwrap();
        let mut line = Vec::new();
        clock.write_line(instant, &mut line);
        assert_eq!(line, b"15:04:05\n");
    }

    #[test]
    fn rejected_patterns_are_errors_naming_the_pattern() {
        let error = TimeFormat::parse("%H:%Q").unwrap_err();
        assert!(error.contains("'%H:%Q'"), "{error}");
        assert!(TimeFormat::parse("%Y-%m-%d %H:%M:%S %Z").is_ok());
    }

    #[test]
    fn a_client_that_hangs_up_is_noticed_before_the_next_tick() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_side, _) = listener.accept().unwrap();
        drop(client);
        let started = std::time::Instant::now();
        assert!(matches!(
            watch_until_gone(&server_side),
            SessionEnd::ClientLeft
        ));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
