//! Watch: one thread per server that keeps a connection up and posts every line it reads to
//! the shared [`Board`], so the display never waits on a slow, dead or hung server.

use std::cell::Cell;
use std::io::{self, BufRead, BufReader, ErrorKind, Read};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::render::{Link, Received};
use crate::sanitize::sanitize;
use crate::target::Target;

/// The longest line kept from a server; the rest of a longer line is read and dropped.
pub const MAX_LINE: usize = 1024;

/// How long one connection attempt to one address may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connected server may go without sending a complete line before it is dropped
/// as hung and shown `offline`. Our clock servers send one every second, so this is three
/// missed lines; a stopped (SIGSTOP) or wedged server keeps its socket open and would
/// otherwise show its last time as `(stale)` for ever.
pub const SILENCE_TIMEOUT: Duration = Duration::from_secs(3);

/// The first wait before reconnecting; it doubles on every failure up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The longest wait before reconnecting.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Every column's latest state, written by the watchers and read by the display.
pub struct Board {
    links: Mutex<Vec<Link>>,
    changed: Condvar,
}

impl Board {
    /// A board of `columns` columns, each still connecting.
    pub fn new(columns: usize) -> Board {
        Board {
            links: Mutex::new(vec![Link::Connecting; columns]),
            changed: Condvar::new(),
        }
    }

    /// Every column's state at this moment, for one redraw.
    pub fn snapshot(&self) -> Vec<Link> {
        self.lock().clone()
    }

    /// Waits until `done` holds for the board or `deadline` passes; returns the last snapshot.
    pub fn wait_until(&self, deadline: Instant, done: impl Fn(&[Link]) -> bool) -> Vec<Link> {
        let mut links = self.lock();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if done(&links) || left.is_zero() {
                return links.clone();
            }
            links = self
                .changed
                .wait_timeout(links, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Records a column's new state and wakes anyone waiting for a change.
    pub fn set(&self, column: usize, link: Link) {
        if let Some(slot) = self.lock().get_mut(column) {
            *slot = link;
        }
        self.changed.notify_all();
    }

    /// Records a line from a column's server, keeping when its connection began.
    fn post_line(&self, column: usize, text: String) {
        let at = Instant::now();
        if let Some(slot) = self.lock().get_mut(column) {
            let since = match slot {
                Link::Connected { since, .. } => *since,
                _ => at,
            };
            *slot = Link::Connected {
                since,
                last: Some(Received { text, at }),
            };
        }
        self.changed.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Link>> {
        // A watcher that panicked leaves plain data behind; the rest of the wall carries on.
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Starts one watcher thread per target, all connecting at once.
///
/// The threads run for the life of the process; the error names the target whose thread the
/// OS refused.
pub fn start_watchers(targets: &[Target], board: &Arc<Board>) -> io::Result<()> {
    for (column, target) in targets.iter().enumerate() {
        let board = Arc::clone(board);
        let watched = target.clone();
        thread::Builder::new()
            .name(format!("watch {}", target.name))
            .spawn(move || watch(&watched, column, &board))
            .map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!("cannot start a thread for {target}: {error}"),
                )
            })?;
    }
    Ok(())
}

/// Keeps `target` connected for ever: reads its lines into `column`, and after a failed
/// attempt, a hang-up or [`SILENCE_TIMEOUT`] without a line marks it offline and retries after
/// the next backoff delay.
pub fn watch(target: &Target, column: usize, board: &Board) {
    let mut backoff = Backoff::default();
    loop {
        if let Ok(stream) = connect(target) {
            board.set(
                column,
                Link::Connected {
                    since: Instant::now(),
                    last: None,
                },
            );
            // A read error or silence ends this connection just as EOF does: offline, then
            // reconnect.
            let _ = read_lines_until_silent(stream, SILENCE_TIMEOUT, |line| {
                backoff.reset();
                board.post_line(column, sanitize(&String::from_utf8_lossy(line)));
            });
        }
        board.set(column, Link::Offline);
        thread::sleep(backoff.next_delay());
    }
}

/// Reads bounded lines from `stream` into `on_line` until EOF, an error, or `silence` passes
/// without a complete line (counted from the start, then from each line), which is an error
/// of kind `TimedOut`. The stream is closed on return.
pub fn read_lines_until_silent(
    stream: TcpStream,
    silence: Duration,
    mut on_line: impl FnMut(&[u8]),
) -> io::Result<()> {
    let deadline = Cell::new(Instant::now() + silence);
    let mut reader = BufReader::new(LineDeadline {
        stream,
        deadline: &deadline,
        silence,
    });
    read_bounded_lines(&mut reader, MAX_LINE, |line| {
        deadline.set(Instant::now() + silence);
        on_line(line);
    })
}

/// A connection whose every read gives up at `deadline`, which the line reader moves on
/// after each complete line. Bytes without a newline do not move it, so a server trickling
/// garbage is dropped like a silent one.
struct LineDeadline<'a> {
    stream: TcpStream,
    deadline: &'a Cell<Instant>,
    silence: Duration,
}

impl Read for LineDeadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self
            .deadline
            .get()
            .saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.silent());
        }
        // SO_RCVTIMEO: the kernel ends the read at the deadline (EAGAIN).
        self.stream.set_read_timeout(Some(left))?;
        match self.stream.read(buf) {
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(self.silent())
            }
            other => other,
        }
    }
}

impl LineDeadline<'_> {
    fn silent(&self) -> io::Error {
        io::Error::new(
            ErrorKind::TimedOut,
            format!("no line for {:?}", self.silence),
        )
    }
}

/// Connects to the first of `target`'s addresses that answers within [`CONNECT_TIMEOUT`].
fn connect(target: &Target) -> io::Result<TcpStream> {
    let mut last_error = io::Error::new(
        ErrorKind::NotFound,
        format!("{} has no address", target.host),
    );
    for address in (target.host.as_str(), target.port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(error) => last_error = error,
        }
    }
    Err(last_error)
}

/// Calls `on_line` with each line `reader` yields (without its `\n`) until EOF.
///
/// A line longer than `max` bytes is passed on cut to its first `max` bytes as soon as they
/// have come, and the rest of it is read and dropped: reading carries on with the next line,
/// and memory stays bounded whatever the server sends. A last line without `\n` is dropped.
pub fn read_bounded_lines<R: BufRead>(
    reader: &mut R,
    max: usize,
    mut on_line: impl FnMut(&[u8]),
) -> io::Result<()> {
    let mut line = Vec::with_capacity(64);
    let mut skipping_rest = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok([]) => return Ok(()),
            Ok(chunk) => chunk,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        let newline = chunk.iter().position(|&byte| byte == b'\n');
        let body = &chunk[..newline.unwrap_or(chunk.len())];
        if !skipping_rest {
            let room = max - line.len();
            line.extend_from_slice(&body[..body.len().min(room)]);
            if newline.is_some() || line.len() == max {
                on_line(&line);
                line.clear();
                skipping_rest = newline.is_none();
            }
        }
        match newline {
            Some(at) => {
                skipping_rest = false;
                reader.consume(at + 1);
            }
            None => {
                let whole = chunk.len();
                reader.consume(whole);
            }
        }
    }
}

/// Reconnect delays: 1 s, 2 s, 4 s … at most 30 s, back to 1 s once a line comes through.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            next: FIRST_BACKOFF,
        }
    }
}

impl Backoff {
    /// The wait before the next attempt; each call doubles the one after, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (delay * 2).min(MAX_BACKOFF);
        delay
    }

    /// Starts again from the first delay: the server is back.
    pub fn reset(&mut self) {
        self.next = FIRST_BACKOFF;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(input: &[u8], max: usize, buffer: usize) -> Vec<String> {
        let mut reader = BufReader::with_capacity(buffer, input);
        let mut lines = Vec::new();
        read_bounded_lines(&mut reader, max, |line| {
            lines.push(String::from_utf8_lossy(line).into_owned())
        })
        .unwrap();
        lines
    }

    #[test]
    fn lines_come_without_their_newline() {
        for buffer in [1, 3, 64] {
            assert_eq!(
                lines_of(b"10:00:00\n10:00:01\n\nlast", 16, buffer),
                ["10:00:00", "10:00:01", ""],
                "buffer {buffer}"
            );
        }
    }

    #[test]
    fn an_over_long_line_is_cut_and_reading_carries_on() {
        let mut input = vec![b'x'; 100_000];
        input.extend_from_slice(b"\n10:00:01\nyyyyyyyy\nzzzzzzzzz\n");
        for buffer in [1, 5, 8, 8192] {
            assert_eq!(
                lines_of(&input, 8, buffer),
                ["xxxxxxxx", "10:00:01", "yyyyyyyy", "zzzzzzzz"],
                "buffer {buffer}"
            );
        }
    }

    #[test]
    fn read_errors_end_the_reading() {
        struct Reset;
        impl io::Read for Reset {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(ErrorKind::ConnectionReset.into())
            }
        }
        let error = read_bounded_lines(&mut BufReader::new(Reset), 8, |_| {}).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ConnectionReset);
    }

    /// A local server that sends `lines`, then keeps the connection open and says nothing
    /// until the returned sender is dropped.
    fn silent_after(lines: &'static [u8]) -> (TcpStream, std::sync::mpsc::Sender<()>) {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        server.write_all(lines).unwrap();
        let (hold, release) = std::sync::mpsc::channel::<()>();
        thread::spawn(move || {
            let _ = release.recv_timeout(Duration::from_secs(30));
            drop(server);
        });
        (client, hold)
    }

    #[test]
    fn a_silent_server_times_out_after_its_last_line_issue_15() {
        let (stream, _hold) = silent_after(b"10:00:00\n10:00:01\npartial");
        let started = Instant::now();
        let mut lines = Vec::new();
        let error = read_lines_until_silent(stream, Duration::from_millis(300), |line| {
            lines.push(String::from_utf8_lossy(line).into_owned())
        })
        .unwrap_err();
        let took = started.elapsed();
        assert_eq!(error.kind(), ErrorKind::TimedOut, "{error}");
        assert_eq!(lines, ["10:00:00", "10:00:01"]);
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(3),
            "took {took:?}"
        );
    }

    #[test]
    fn each_line_moves_the_silence_deadline_on_issue_15() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        // Six lines 100 ms apart outlast a 300 ms silence limit only if each line resets it.
        let sender = thread::spawn(move || {
            for n in 0..6 {
                server.write_all(format!("{n}\n").as_bytes()).unwrap();
                thread::sleep(Duration::from_millis(100));
            }
            server
        });
        let mut lines = 0;
        let error = read_lines_until_silent(client, Duration::from_millis(300), |_| lines += 1)
            .unwrap_err();
        let _server = sender.join().unwrap();
        assert_eq!(error.kind(), ErrorKind::TimedOut, "{error}");
        assert_eq!(lines, 6);
    }

    #[test]
    fn backoff_doubles_to_thirty_seconds_and_resets() {
        let mut backoff = Backoff::default();
        let delays: Vec<u64> = (0..8).map(|_| backoff.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn a_waiter_wakes_when_the_board_changes() {
        let board = Arc::new(Board::new(2));
        let writer = Arc::clone(&board);
        let handle = thread::spawn(move || {
            writer.post_line(0, "a".to_owned());
            writer.post_line(1, "b".to_owned());
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let links = board.wait_until(deadline, |links| links.iter().all(Link::has_line));
        handle.join().unwrap();
        assert!(links.iter().all(Link::has_line), "{links:?}");
        assert!(Instant::now() < deadline);
    }

    #[test]
    fn a_waiter_gives_up_at_the_deadline() {
        let board = Board::new(1);
        let links = board.wait_until(Instant::now() + Duration::from_millis(50), |links| {
            links.iter().all(Link::has_line)
        });
        assert_eq!(links, [Link::Connecting]);
    }
}
