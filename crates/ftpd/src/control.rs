//! Control: the control connection, one socket read by its session and written by the
//! session, by transfer threads (final replies) and by a shutdown (goodbye). Every write has
//! a deadline, the stall timeout; every read has one, set by the session; and under TLS the
//! shared `rustls` connection is locked only for non-blocking work, never across a wait.

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::deadline::{self, send_before};
use crate::reply::Reply;
use crate::tls::{self, SharedTls};

/// Longest control line accepted; the rest of a longer one is discarded.
pub const MAX_LINE: usize = 4096;

/// The control connection: its one descriptor, shared by reading and writing.
#[derive(Debug)]
pub struct Control {
    socket: TcpStream,
    /// How long one reply may take to leave before the client counts as gone.
    write_timeout: Duration,
    /// Set once `AUTH TLS` (or implicit TLS) has secured the connection.
    tls: OnceLock<SharedTls>,
    /// Whose turn it is to write: records must reach the socket in the order they were made.
    /// Lock order: `turn`, then the TLS connection.
    turn: Mutex<()>,
}

impl Control {
    /// Wraps an accepted control connection.
    pub fn new(socket: TcpStream, write_timeout: Duration) -> Control {
        Control {
            socket,
            write_timeout,
            tls: OnceLock::new(),
            turn: Mutex::new(()),
        }
    }

    /// The socket, for addresses and for handshakes before the session starts.
    pub fn socket(&self) -> &TcpStream {
        &self.socket
    }

    fn take_turn(&self) -> MutexGuard<'_, ()> {
        self.turn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends a reply within the write timeout; a client that does not take it in time is
    /// disconnected, which also ends the session's read.
    pub fn send(&self, reply: &Reply) -> io::Result<()> {
        self.write(&reply.to_bytes())
    }

    /// Writes bytes within the write timeout (see [`Control::send`]).
    pub fn write(&self, bytes: &[u8]) -> io::Result<()> {
        let turn = self.take_turn();
        let result = self.write_in_turn(&turn, bytes, Instant::now() + self.write_timeout);
        if result.is_err() {
            let _ = self.socket.shutdown(Shutdown::Both);
        }
        result
    }

    fn write_in_turn(
        &self,
        _turn: &MutexGuard<'_, ()>,
        bytes: &[u8],
        by: Instant,
    ) -> io::Result<()> {
        match self.tls.get() {
            None => send_before(&self.socket, bytes, by),
            Some(shared) => {
                let sealed = {
                    let mut connection = tls::lock(shared);
                    connection.writer().write_all(bytes)?;
                    tls::pending_output(&mut connection)?
                };
                send_before(&self.socket, &sealed, by)
            }
        }
    }

    /// Sends whatever the TLS connection has queued (handshake or alert records the reader
    /// produced), in turn with replies.
    fn flush_tls(&self) -> io::Result<()> {
        self.write(&[])
    }

    /// From now on, replies and reads go through `tls`.
    pub fn secure(&self, shared: SharedTls) {
        let _ = self.tls.set(shared);
    }

    /// True once the connection runs over TLS.
    pub fn is_secured(&self) -> bool {
        self.tls.get().is_some()
    }

    /// Sends a last reply and closes the connection, which also ends the session's read.
    pub fn close_with(&self, reply: &Reply) {
        let _ = self.send(reply);
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    /// Says goodbye without waiting on the client: the reply goes out only if nobody else is
    /// writing and the socket takes it at once; either way the connection is closed.
    pub fn close_now_with(&self, reply: &Reply) {
        if let Ok(turn) = self.turn.try_lock() {
            let _ = self.write_in_turn(&turn, &reply.to_bytes(), Instant::now());
        }
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    /// True when the client closes its end (a read would see EOF) within `grace`; a client
    /// that sends a command meanwhile, or stays quiet, has not.
    pub fn peer_closes_within(&self, grace: Duration) -> bool {
        let _ = deadline::wait_for(&self.socket, deadline::Readiness::Readable, grace);
        deadline::peer_has_closed(&self.socket)
    }
}

/// The reading side of a control connection, plain or TLS, with a deadline that no amount
/// of trickled bytes can move.
pub struct ControlReader {
    control: Arc<Control>,
    deadline: Instant,
}

impl ControlReader {
    /// Reads `control`'s socket; every read fails with `TimedOut` once `deadline` passes.
    pub fn new(control: Arc<Control>, deadline: Instant) -> ControlReader {
        ControlReader { control, deadline }
    }

    /// Moves the deadline (a new command was read, or the login finished).
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }

    fn read_raw(&self, buffer: &mut [u8]) -> io::Result<usize> {
        deadline::read_until(&self.control.socket, self.deadline)?;
        (&self.control.socket).read(buffer)
    }
}

impl Read for ControlReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let Some(shared) = self.control.tls.get().cloned() else {
            return self.read_raw(buffer);
        };
        let mut raw = [0u8; 4096];
        loop {
            match tls::lock(&shared).reader().read(buffer) {
                Ok(count) => return Ok(count),
                Err(error) if error.kind() == ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: for a control connection, just EOF.
                Err(error) if error.kind() == ErrorKind::UnexpectedEof => return Ok(0),
                Err(error) => return Err(error),
            }
            // Block on the socket without holding the lock, so replies can still be sent.
            let count = self.read_raw(&mut raw)?;
            if count == 0 {
                return Ok(0);
            }
            let wants_write = tls::feed(&shared, &raw[..count])?;
            if wants_write {
                self.control.flush_tls()?;
            }
        }
    }
}

/// One control line, or what went wrong reading it.
#[derive(Debug, PartialEq, Eq)]
pub enum LineRead {
    /// A complete line, with its line end.
    Line(Vec<u8>),
    /// A line over [`MAX_LINE`], consumed and thrown away.
    TooLong,
    /// The client closed the connection.
    Eof,
}

/// A control line being read: kept across reads, so a timeout in the middle of a line (a
/// slow client, or the session's periodic wake-up during a transfer) loses nothing.
#[derive(Default)]
pub struct PartialLine {
    bytes: Vec<u8>,
    too_long: bool,
}

/// Reads a line of at most [`MAX_LINE`] bytes; a longer line is consumed and discarded, so
/// it costs no more memory than the cap.
pub fn read_line<R: Read>(
    reader: &mut BufReader<R>,
    partial: &mut PartialLine,
) -> io::Result<LineRead> {
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        let (used, done) = match available.iter().position(|&byte| byte == b'\n') {
            Some(end) => (end + 1, true),
            None => (available.len(), false),
        };
        if used == 0 {
            // EOF: whatever came before it is the last line.
            let last = std::mem::take(partial);
            return Ok(if last.too_long {
                LineRead::TooLong
            } else if last.bytes.is_empty() {
                LineRead::Eof
            } else {
                LineRead::Line(last.bytes)
            });
        }
        if !partial.too_long {
            partial.bytes.extend_from_slice(&available[..used]);
            if partial.bytes.len() > MAX_LINE {
                partial.too_long = true;
                partial.bytes = Vec::new();
            }
        }
        reader.consume(used);
        if done {
            let line = std::mem::take(partial);
            return Ok(if line.too_long {
                LineRead::TooLong
            } else {
                LineRead::Line(line.bytes)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its chunks one read at a time, then a timeout, then the rest.
    struct Chunks(Vec<io::Result<Vec<u8>>>);

    impl Read for Chunks {
        fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let mut chunk = self.0.remove(0)?;
            let count = chunk.len().min(buffer.len());
            buffer[..count].copy_from_slice(&chunk[..count]);
            if count < chunk.len() {
                self.0.insert(0, Ok(chunk.split_off(count)));
            }
            Ok(count)
        }
    }

    fn chunk(bytes: &[u8]) -> io::Result<Vec<u8>> {
        Ok(bytes.to_vec())
    }

    #[test]
    fn a_timeout_mid_line_loses_nothing() {
        let timeout = Err(io::Error::from(ErrorKind::WouldBlock));
        let source = Chunks(vec![chunk(b"NO"), timeout, chunk(b"OP\r\nQUIT\r\n")]);
        let mut reader = BufReader::new(source);
        let mut partial = PartialLine::default();
        assert!(read_line(&mut reader, &mut partial).is_err());
        let first = read_line(&mut reader, &mut partial).unwrap();
        assert_eq!(first, LineRead::Line(b"NOOP\r\n".to_vec()));
        let second = read_line(&mut reader, &mut partial).unwrap();
        assert_eq!(second, LineRead::Line(b"QUIT\r\n".to_vec()));
        assert_eq!(read_line(&mut reader, &mut partial).unwrap(), LineRead::Eof);
    }

    #[test]
    fn an_overlong_line_is_dropped_and_the_next_one_read() {
        let mut long = vec![b'A'; MAX_LINE * 3];
        long.extend_from_slice(b"\r\nNOOP\r\n");
        let mut reader = BufReader::with_capacity(512, Chunks(vec![chunk(&long)]));
        let mut partial = PartialLine::default();
        assert_eq!(
            read_line(&mut reader, &mut partial).unwrap(),
            LineRead::TooLong
        );
        assert_eq!(
            read_line(&mut reader, &mut partial).unwrap(),
            LineRead::Line(b"NOOP\r\n".to_vec())
        );
    }

    #[test]
    fn the_last_line_may_lack_its_line_end() {
        let mut reader = BufReader::new(Chunks(vec![chunk(b"QUIT")]));
        let mut partial = PartialLine::default();
        assert_eq!(
            read_line(&mut reader, &mut partial).unwrap(),
            LineRead::Line(b"QUIT".to_vec())
        );
    }
}
