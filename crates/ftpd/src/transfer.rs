//! Transfer: moving bytes between a file and a data connection, byte-exact (TYPE I) or as
//! text with CRLF line ends on the wire (TYPE A).

use std::io::{self, Read, Write};

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
mod tests {
    use super::*;

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

    #[test]
    fn exact_copy_is_exact() {
        let data: Vec<u8> = (0..=255u8).cycle().take(600_000).collect();
        let mut out = Vec::new();
        assert_eq!(copy_exact(&mut &data[..], &mut out).unwrap(), 600_000);
        assert_eq!(out, data);
    }
}
