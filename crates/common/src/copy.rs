//! Copy: the book's `mustCopy`, minus the crash when the reader of our output goes away.

use std::io::{self, ErrorKind, Read, Write};

/// Copies `src` to `dst` until EOF and flushes; a closed `dst` (broken pipe, as in
/// `netcat1 | head -3`) is a normal end, not an error.
///
/// Returns the bytes copied. Rust ignores SIGPIPE, so a closed pipe shows up here as an
/// `ErrorKind::BrokenPipe` write error, which is what this turns into success.
///
/// Each read is written and flushed at once. This is deliberately not `io::copy`: from a
/// socket to a pipe, std's `io::copy` switches to `splice`, which here held each clock line
/// until the next one arrived, a second late.
pub fn copy_until_closed<R, W>(src: &mut R, dst: &mut W) -> io::Result<u64>
where
    R: Read + ?Sized,
    W: Write + ?Sized,
{
    match copy_flushing(src, dst) {
        Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(0),
        other => other,
    }
}

fn copy_flushing<R, W>(src: &mut R, dst: &mut W) -> io::Result<u64>
where
    R: Read + ?Sized,
    W: Write + ?Sized,
{
    let mut buffer = [0u8; 16 * 1024];
    let mut copied = 0;
    loop {
        let count = match src.read(&mut buffer) {
            Ok(0) => return Ok(copied),
            Ok(count) => count,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        dst.write_all(&buffer[..count])?;
        dst.flush()?;
        copied += count as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn copies_everything_until_eof() {
        let mut out = Vec::new();
        let copied = copy_until_closed(&mut &b"10:00:00\n10:00:01\n"[..], &mut out).unwrap();
        assert_eq!(copied, 18);
        assert_eq!(out, b"10:00:00\n10:00:01\n");
    }

    #[test]
    fn a_closed_destination_is_a_normal_end() {
        assert!(copy_until_closed(&mut &b"10:00:00\n"[..], &mut ClosedPipe).is_ok());
    }

    #[test]
    fn other_errors_are_reported() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(ErrorKind::ConnectionReset.into())
            }
        }
        let error = copy_until_closed(&mut Failing, &mut Vec::new()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ConnectionReset);
    }
}
