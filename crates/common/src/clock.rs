//! Clock: one client's session with a clock server, the time written once a second.
//!
//! clock1 and clock2 serve exactly this session; they differ only in whether the accept loop
//! runs it in place or on a new thread. Each line goes out at the wall-clock second boundary
//! (not "one second after the last write", which drifts), and between ticks the session
//! watches the socket, so a client that leaves is noticed at once rather than at the next
//! failing write.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

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

/// What a clock server says: a format in a zone.
#[derive(Debug, Clone)]
pub struct Clock {
    zone: Zone,
    format: TimeFormat,
}

impl Clock {
    /// The clock the flags describe; without `--tz` or `TZ`, the system's zone.
    pub fn from_args(args: &ClockArgs) -> Clock {
        Clock {
            zone: args.tz.unwrap_or_else(Zone::system),
            format: args.format.clone(),
        }
    }

    /// The zone this clock reports in.
    pub fn zone(&self) -> Zone {
        self.zone
    }

    /// Appends the line for `instant`, newline included, to `line`.
    pub fn write_line(&self, instant: DateTime<Utc>, line: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        let _ = write!(line, "{}", self.zone.format(instant, &self.format.0));
        line.push(b'\n');
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
pub fn serve_session(mut stream: TcpStream, peer: SocketAddr, clock: &Clock, slot: ConnectionSlot) {
    let end = tick_until_gone(&mut stream, clock);
    drop(stream);
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

/// Writes the time now and at every following second boundary until the client goes.
pub fn tick_until_gone(stream: &mut TcpStream, clock: &Clock) -> SessionEnd {
    if let Err(error) = stream.set_write_timeout(Some(WRITE_TIMEOUT)) {
        return SessionEnd::Failed(error);
    }
    // One small write a second: never worth delaying for Nagle.
    let _ = stream.set_nodelay(true);
    let mut line = Vec::with_capacity(64);
    loop {
        let now = Utc::now();
        line.clear();
        clock.write_line(now, &mut line);
        if let Err(error) = stream.write_all(&line) {
            return classify(error);
        }
        let next_second = DateTime::from_timestamp(now.timestamp() + 1, 0).unwrap_or(now);
        if let Err(end) = watch_until(stream, next_second) {
            return end;
        }
    }
}

/// Waits for `deadline` while watching the socket, so a hang-up ends the session at once.
/// Anything the client sends is read and ignored.
fn watch_until(stream: &mut TcpStream, deadline: DateTime<Utc>) -> Result<(), SessionEnd> {
    let mut ignored = [0u8; 64];
    loop {
        let remaining = match (deadline - Utc::now()).to_std() {
            Ok(remaining) if !remaining.is_zero() => remaining,
            _ => return Ok(()),
        };
        match wait_readable(stream, remaining) {
            Ok(false) => {}
            Ok(true) => match stream.read(&mut ignored) {
                Ok(0) => return Err(SessionEnd::ClientLeft),
                Ok(_) => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(classify(error)),
            },
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(SessionEnd::Failed(error)),
        }
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
        let clock = Clock {
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
        let (mut server_side, _) = listener.accept().unwrap();
        drop(client);
        let started = std::time::Instant::now();
        let far = Utc::now() + chrono::Duration::seconds(10);
        assert!(matches!(
            watch_until(&mut server_side, far),
            Err(SessionEnd::ClientLeft)
        ));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
