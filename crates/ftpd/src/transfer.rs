//! Transfer: moving bytes between a file and a data connection, byte-exact (TYPE I) or as
//! text with CRLF line ends on the wire (TYPE A).

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::fs::OFlags;
use rustix::io::Errno;
use rustix::pipe::{PipeFlags, SpliceFlags};

use crate::deadline::{timed_out, wait_for, Readiness};

/// Buffer for uploads and text conversion: large enough that a transfer is a few syscalls
/// per megabyte, allocated once per transfer.
pub const BUFFER_SIZE: usize = 256 * 1024;

/// Copies `src` to `dst`, turning each LF not already preceded by CR into CRLF (RETR in TYPE A).
pub fn copy_to_crlf<R: Read + ?Sized, W: Write + ?Sized>(
    src: &mut R,
    dst: &mut W,
) -> io::Result<u64> {
    let mut input = vec![0u8; BUFFER_SIZE];
    let mut output = Vec::with_capacity(BUFFER_SIZE * 2);
    let mut previous = 0u8;
    let mut sent = 0u64;
    loop {
        let count = match src.read(&mut input) {
            Ok(0) => return Ok(sent),
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        output.clear();
        for &byte in &input[..count] {
            if byte == b'\n' && previous != b'\r' {
                output.push(b'\r');
            }
            output.push(byte);
            previous = byte;
        }
        dst.write_all(&output)?;
        sent += output.len() as u64;
    }
}

/// Copies `src` to `dst`, turning CRLF into LF (STOR in TYPE A); a lone CR is kept.
pub fn copy_from_crlf<R: Read + ?Sized, W: Write + ?Sized>(
    src: &mut R,
    dst: &mut W,
) -> io::Result<u64> {
    let mut input = vec![0u8; BUFFER_SIZE];
    let mut output = Vec::with_capacity(BUFFER_SIZE + 1);
    let mut pending_cr = false;
    let mut written = 0u64;
    loop {
        let count = match src.read(&mut input) {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        output.clear();
        for &byte in &input[..count] {
            if pending_cr && byte != b'\n' {
                output.push(b'\r');
            }
            pending_cr = byte == b'\r';
            if !pending_cr {
                output.push(byte);
            }
        }
        dst.write_all(&output)?;
        written += output.len() as u64;
    }
    if pending_cr {
        dst.write_all(b"\r")?;
        written += 1;
    }
    Ok(written)
}

/// Copies `src` to `dst` byte for byte through one large buffer (uploads in TYPE I).
pub fn copy_exact<R: Read + ?Sized, W: Write + ?Sized>(
    src: &mut R,
    dst: &mut W,
) -> io::Result<u64> {
    let mut buffer = vec![0u8; BUFFER_SIZE];
    let mut copied = 0u64;
    loop {
        let count = match src.read(&mut buffer) {
            Ok(0) => return Ok(copied),
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        dst.write_all(&buffer[..count])?;
        copied += count as u64;
    }
}

/// Copies a stream that yields small reads (an object storage GET) to `dst` in writes of up
/// to [`BUFFER_SIZE`]: the buffer is filled before each write, so a send moves a large block.
pub fn copy_filled<R: Read + ?Sized, W: Write + ?Sized>(
    src: &mut R,
    dst: &mut W,
) -> io::Result<u64> {
    let mut buffer = vec![0u8; BUFFER_SIZE];
    let mut copied = 0u64;
    loop {
        let mut filled = 0;
        while filled < buffer.len() {
            match src.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(count) => filled += count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        if filled == 0 {
            return Ok(copied);
        }
        dst.write_all(&buffer[..filled])?;
        copied += filled as u64;
    }
}

/// Largest count handed to one `sendfile` call (the kernel caps a call near 2 GiB anyway).
const SENDFILE_CHUNK: usize = 1 << 30;

/// Sends `file` from its current offset to its end over `socket` with `sendfile(2)` (RETR in
/// TYPE I): the bytes go from the page cache to the socket without passing through user
/// space. `io::copy` does not do this for a `TcpStream` on Rust 1.95: strace shows it
/// reading and writing 8 KiB at a time. A file system that refuses `sendfile` (EINVAL,
/// ENOSYS before the first byte) gets the buffered copy instead.
///
/// The socket is driven non-blocking and the wait is our own poll: a blocking `sendfile`
/// under `SO_SNDTIMEO` waited 15 s past a 5 s setting on a client that stopped reading.
/// The transfer fails with `TimedOut` once no byte has moved for `stall`.
pub fn send_file(file: &mut File, socket: &TcpStream, stall: Duration) -> io::Result<u64> {
    socket.set_nonblocking(true)?;
    let result = send_file_nonblocking(file, socket, stall);
    socket.set_nonblocking(false)?;
    match result {
        Err(Fallback) => copy_exact(file, &mut &*socket),
        Ok(result) => result,
    }
}

/// `sendfile` or `splice` is refused on this file or socket before any byte moved.
struct Fallback;

fn send_file_nonblocking(
    file: &mut File,
    socket: &TcpStream,
    stall: Duration,
) -> Result<io::Result<u64>, Fallback> {
    let mut sent = 0u64;
    loop {
        // No offset: the kernel uses and advances the file's own, so a REST seek counts.
        match rustix::fs::sendfile(socket, &*file, None, SENDFILE_CHUNK) {
            Ok(0) => return Ok(Ok(sent)),
            Ok(count) => sent += count as u64,
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => match wait_for(socket, Readiness::Writable, stall) {
                Ok(true) => {}
                Ok(false) => return Ok(Err(timed_out("the client stopped reading"))),
                Err(error) => return Ok(Err(error)),
            },
            Err(Errno::INVAL | Errno::NOSYS) if sent == 0 => return Err(Fallback),
            Err(error) => return Ok(Err(error.into())),
        }
    }
}

/// Pipe capacity asked for by [`receive_file`]: the default 1 MiB `pipe-max-size`.
const PIPE_CAPACITY: usize = 1 << 20;

/// Receives `socket` until EOF into `file` at its current offset with `splice(2)` through a
/// pipe (STOR in TYPE I): the socket's pages move into the pipe without a copy, so the
/// server copies each byte once (into the page cache) instead of twice, which is what made
/// STOR CPU-bound on a 2-core machine. Files opened for append, and systems that refuse
/// `splice`, get [`copy_exact`]; bytes already in the pipe when the file refuses them are
/// written the ordinary way, so nothing is lost whichever way it ends.
///
/// The socket stays blocking: a splice from a TCP socket honours its `SO_RCVTIMEO` (unlike
/// `sendfile` and `SO_SNDTIMEO`), so `stall` is set there and a client that stops sending
/// fails the transfer with `TimedOut` after it. Driving the socket non-blocking instead
/// halved STOR throughput (a poll per small chunk).
pub fn receive_file(socket: &TcpStream, file: &mut File, stall: Duration) -> io::Result<u64> {
    let appending =
        rustix::fs::fcntl_getfl(&*file).map_or(true, |flags| flags.contains(OFlags::APPEND));
    if appending {
        return copy_exact(&mut &*socket, file);
    }
    let Ok((pipe_out, pipe_in)) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC) else {
        return copy_exact(&mut &*socket, file);
    };
    // A refusal leaves the default size, which is still correct.
    let _ = rustix::pipe::fcntl_setpipe_size(&pipe_in, PIPE_CAPACITY);
    socket.set_read_timeout(Some(stall))?;
    let mut received = 0u64;
    loop {
        let moved = match rustix::pipe::splice(
            socket,
            None,
            &pipe_in,
            None,
            PIPE_CAPACITY,
            SpliceFlags::MOVE,
        ) {
            Ok(0) => return Ok(received),
            Ok(moved) => moved,
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Err(timed_out("the client stopped sending")),
            Err(Errno::INVAL | Errno::NOSYS) if received == 0 => {
                return copy_exact(&mut &*socket, file);
            }
            Err(error) => return Err(error.into()),
        };
        match drain_pipe(&pipe_out, file, moved) {
            Ok(()) => received += moved as u64,
            Err(error) if error.kind() == io::ErrorKind::Unsupported => {
                // The file refused splice and the pipe was emptied by hand: copy the rest.
                let already = received + moved as u64;
                return copy_exact(&mut &*socket, file).map(|rest| already + rest);
            }
            Err(error) => return Err(error),
        }
    }
}

/// Moves `count` bytes from the pipe into `file`; if the file refuses splice, moves them by
/// hand and answers `Unsupported` so the caller copies the rest the ordinary way. The
/// bytes counted as received include these.
fn drain_pipe(pipe_out: &OwnedFd, file: &mut File, count: usize) -> io::Result<()> {
    let mut left = count;
    while left > 0 {
        match rustix::pipe::splice(pipe_out, None, &*file, None, left, SpliceFlags::MOVE) {
            Ok(written) => left -= written,
            Err(Errno::INTR) => {}
            Err(Errno::INVAL | Errno::NOSYS) => {
                let mut pending = vec![0u8; left];
                File::from(pipe_out.try_clone()?).read_exact(&mut pending)?;
                file.write_all(&pending)?;
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "file refuses splice",
                ));
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// The size a file will have on the wire in TYPE A: its length plus one per bare LF.
pub fn crlf_size<R: Read + ?Sized>(src: &mut R) -> io::Result<u64> {
    let mut sink = CountingSink(0);
    copy_to_crlf(src, &mut sink)?;
    Ok(sink.0)
}

struct CountingSink(u64);

impl Write for CountingSink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0 += bytes.len() as u64;
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    const STALL: Duration = Duration::from_secs(10);

    /// A reader that hands out one byte at a time, to cross every chunk boundary.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
            match self.0.split_first() {
                Some((&byte, rest)) if !buffer.is_empty() => {
                    buffer[0] = byte;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn lf_becomes_crlf_once() {
        let mut out = Vec::new();
        copy_to_crlf(&mut Trickle(b"a\nb\r\nc\n"), &mut out).unwrap();
        assert_eq!(out, b"a\r\nb\r\nc\r\n");
        assert_eq!(crlf_size(&mut &b"a\nb\r\nc\n"[..]).unwrap(), 9);
    }

    #[test]
    fn crlf_becomes_lf_and_lone_cr_stays() {
        let mut out = Vec::new();
        copy_from_crlf(&mut Trickle(b"a\r\nb\rc\r\n\r"), &mut out).unwrap();
        assert_eq!(out, b"a\nb\rc\n\r");
    }

    /// Sends `file` over a loopback connection with [`send_file`] and returns what arrived.
    fn sent_over_loopback(mut file: File) -> (u64, Vec<u8>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let sender = std::thread::spawn(move || send_file(&mut file, &server, STALL).unwrap());
        let mut received = Vec::new();
        client.read_to_end(&mut received).unwrap();
        (sender.join().unwrap(), received)
    }

    #[test]
    fn send_file_sends_the_whole_file_issue_7() {
        let data: Vec<u8> = (0..=250u8).cycle().take(3_000_000).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        use std::io::Seek;
        file.rewind().unwrap();
        let (sent, received) = sent_over_loopback(file);
        assert_eq!(sent, 3_000_000);
        assert_eq!(received, data);
    }

    #[test]
    fn send_file_starts_at_the_restart_offset_issue_7() {
        let data: Vec<u8> = (0..=250u8).cycle().take(100_000).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::Start(99_000)).unwrap();
        let (sent, received) = sent_over_loopback(file);
        assert_eq!(sent, 1000);
        assert_eq!(received, &data[99_000..]);
    }

    /// Receives `data` over a loopback connection into `file` with [`receive_file`].
    fn received_over_loopback(data: &[u8], file: &mut File) -> u64 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let owned = data.to_vec();
        let sender = std::thread::spawn(move || {
            client.write_all(&owned).unwrap();
            client.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let received = receive_file(&server, file, STALL).unwrap();
        sender.join().unwrap();
        received
    }

    #[test]
    fn receive_file_stores_every_byte_issue_7() {
        use std::io::Seek;
        let data: Vec<u8> = (0..=250u8).cycle().take(5_000_000).collect();
        let mut file = tempfile::tempfile().unwrap();
        assert_eq!(received_over_loopback(&data, &mut file), 5_000_000);
        file.rewind().unwrap();
        let mut stored = Vec::new();
        file.read_to_end(&mut stored).unwrap();
        assert_eq!(stored, data);
    }

    #[test]
    fn receive_file_resumes_at_the_offset_and_appends_issue_7() {
        use std::io::{Seek, SeekFrom};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let mut resumed = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        resumed.seek(SeekFrom::Start(4)).unwrap();
        assert_eq!(received_over_loopback(b"abc", &mut resumed), 3);
        assert_eq!(std::fs::read(&path).unwrap(), b"0123abc789");
        let mut appended = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        assert_eq!(received_over_loopback(b"XY", &mut appended), 2);
        assert_eq!(std::fs::read(&path).unwrap(), b"0123abc789XY");
    }

    #[test]
    fn exact_copy_is_exact() {
        let data: Vec<u8> = (0..=255u8).cycle().take(600_000).collect();
        let mut out = Vec::new();
        assert_eq!(copy_exact(&mut &data[..], &mut out).unwrap(), 600_000);
        assert_eq!(out, data);
    }
}
