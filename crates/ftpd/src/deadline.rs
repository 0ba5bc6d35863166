//! Deadline: blocking socket calls that give up at a fixed instant. A deadline is an
//! `Instant`, not a per-call timeout, so a peer that trickles a byte at a time cannot stretch
//! it: every call waits only for what is left.

use std::io;
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::net::SendFlags;

/// What to wait for on a descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Data (or EOF, or an incoming connection on a listener) can be read.
    Readable,
    /// The send buffer has room.
    Writable,
}

/// Waits until `fd` is ready or `timeout` passes; `Ok(false)` on timeout. A hang-up or
/// error on the descriptor counts as ready, so the next call reports it.
pub fn wait_for(fd: impl AsFd, readiness: Readiness, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    let events = match readiness {
        Readiness::Readable => PollFlags::IN,
        Readiness::Writable => PollFlags::OUT,
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let limit = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        });
        let mut watched = [PollFd::new(&fd, events)];
        match poll(&mut watched, Some(&limit)) {
            Ok(0) => {}
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => {}
            Err(error) => return Err(error.into()),
        }
    }
}

/// Sends all of `bytes` on a blocking socket, giving up with `TimedOut` at `deadline`.
/// The socket itself stays blocking for its other users: each send is a non-blocking one.
pub fn send_before(socket: &TcpStream, bytes: &[u8], deadline: Instant) -> io::Result<()> {
    let mut rest = bytes;
    while !rest.is_empty() {
        match rustix::net::send(socket, rest, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
            Ok(sent) => rest = &rest[sent..],
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if !wait_for(socket, Readiness::Writable, left)? {
                    return Err(timed_out("the peer stopped reading"));
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// Sets the read timeout of `socket` to what is left before `deadline`; `TimedOut` once it
/// has passed (a zero timeout would mean "no timeout" to the kernel).
pub fn read_until(socket: &TcpStream, deadline: Instant) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(timed_out("deadline passed"));
    }
    socket.set_read_timeout(Some(left))
}

/// True when the peer has closed its end of `stream` (a read would return EOF now), without
/// consuming anything. Used after an upload's data EOF: a client killed mid-STOR closes the
/// control connection too, and its half-sent file must not replace the old one.
pub fn peer_has_closed(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
    matches!(rustix::net::recv(stream, &mut byte[..], flags), Ok((_, 0)))
}

/// The error a missed deadline turns into.
pub fn timed_out(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, why.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_peer_that_never_reads_times_the_send_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let started = Instant::now();
        let chunk = vec![0u8; 1 << 20];
        let result = (0..256)
            .try_for_each(|_| send_before(&server, &chunk, started + Duration::from_millis(300)));
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(client);
    }

    #[test]
    fn waiting_for_input_times_out_and_then_sees_it() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let ready = wait_for(&server, Readiness::Readable, Duration::from_millis(50));
        assert!(!ready.unwrap());
        assert!(!peer_has_closed(&server));
        std::io::Write::write_all(&mut client, b"x").unwrap();
        let ready = wait_for(&server, Readiness::Readable, Duration::from_secs(5));
        assert!(ready.unwrap());
        drop(client);
        assert!(!peer_has_closed(&server), "unread data comes before EOF");
    }
}
