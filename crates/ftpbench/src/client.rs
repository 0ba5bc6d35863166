//! Client: a minimal blocking FTP client (std::net), just the commands the workloads need,
//! every read bounded by a timeout and every reply checked against the code it must carry.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

/// How long any control or data read may wait before the workload fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a connect may take on loopback before it counts as a failure.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest reply line accepted; a server sending more is broken.
const MAX_REPLY_LINE: usize = 8192;

/// Most lines in one multi-line reply.
const MAX_REPLY_LINES: usize = 1000;

/// One server reply: the code and the text of its last line.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

/// Who logs in: `anonymous` with any password unless told otherwise.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl Default for Credentials {
    fn default() -> Credentials {
        Credentials {
            user: "anonymous".to_owned(),
            password: "ftpbench@".to_owned(),
        }
    }
}

/// One control connection.
pub struct Client {
    control: BufReader<TcpStream>,
    line: Vec<u8>,
}

/// An error for a reply that is not the one the protocol calls for.
fn unexpected(command: &str, reply: &Reply, wanted: &[u16]) -> io::Error {
    io::Error::other(format!(
        "'{command}' got '{} {}', expected {wanted:?}",
        reply.code, reply.text
    ))
}

impl Client {
    /// Connects and reads the 220 greeting.
    pub fn connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        // Commands are single small writes answered by the server: Nagle would only delay.
        stream.set_nodelay(true)?;
        let mut client = Client {
            control: BufReader::with_capacity(4096, stream),
            line: Vec::with_capacity(256),
        };
        let greeting = client.read_reply()?;
        if greeting.code != 220 {
            return Err(unexpected("(greeting)", &greeting, &[220]));
        }
        Ok(client)
    }

    /// Connects, logs in and switches to TYPE I: the state every workload starts from.
    pub fn connect_logged_in(addr: SocketAddr, credentials: &Credentials) -> io::Result<Client> {
        let mut client = Client::connect(addr)?;
        client.login(credentials)?;
        client.expect("TYPE I", &[200])?;
        Ok(client)
    }

    /// USER and PASS (PASS skipped when USER alone logs in).
    pub fn login(&mut self, credentials: &Credentials) -> io::Result<()> {
        let user = self.expect(&format!("USER {}", credentials.user), &[230, 331])?;
        if user.code == 331 {
            self.expect(&format!("PASS {}", credentials.password), &[230])?;
        }
        Ok(())
    }

    /// Sends one command line and reads its reply, whatever the code.
    pub fn command(&mut self, line: &str) -> io::Result<Reply> {
        self.send(line)?;
        self.read_reply()
    }

    /// Sends one command line and fails unless the reply carries one of `codes`.
    pub fn expect(&mut self, line: &str, codes: &[u16]) -> io::Result<Reply> {
        let reply = self.command(line)?;
        if codes.contains(&reply.code) {
            Ok(reply)
        } else {
            Err(unexpected(line, &reply, codes))
        }
    }

    fn send(&mut self, line: &str) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.control.get_mut().write_all(&bytes)
    }

    /// Reads one reply, following the multi-line rule (`123-` … `123 `).
    fn read_reply(&mut self) -> io::Result<Reply> {
        let first = self.read_line()?;
        let code = parse_code(&first)?;
        if first.as_bytes().get(3) != Some(&b'-') {
            return Ok(Reply {
                code,
                text: first.get(4..).unwrap_or("").to_owned(),
            });
        }
        let end = format!("{code} ");
        for _ in 0..MAX_REPLY_LINES {
            let line = self.read_line()?;
            if line.starts_with(&end) {
                return Ok(Reply {
                    code,
                    text: line[4..].to_owned(),
                });
            }
        }
        Err(io::Error::other(format!(
            "multi-line reply {code} longer than {MAX_REPLY_LINES} lines"
        )))
    }

    fn read_line(&mut self) -> io::Result<String> {
        self.line.clear();
        let read = (&mut self.control)
            .take(MAX_REPLY_LINE as u64)
            .read_until(b'\n', &mut self.line)?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the control connection",
            ));
        }
        if self.line.last() != Some(&b'\n') {
            return Err(io::Error::other(format!(
                "reply line longer than {MAX_REPLY_LINE} bytes or cut short"
            )));
        }
        let text = String::from_utf8_lossy(&self.line);
        Ok(text.trim_end_matches(['\r', '\n']).to_owned())
    }

    /// PASV, then connects to the address it names.
    pub fn open_passive(&mut self) -> io::Result<TcpStream> {
        let reply = self.expect("PASV", &[227])?;
        let addr = parse_pasv(&reply.text)?;
        let data = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        data.set_read_timeout(Some(IO_TIMEOUT))?;
        data.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(data)
    }

    /// RETR `path`, handing every received chunk to `sink`; returns the byte count after the
    /// server's 226. `buffer` is the read buffer, its size the read size.
    pub fn retrieve(
        &mut self,
        path: &str,
        buffer: &mut [u8],
        sink: &mut dyn FnMut(&[u8]),
    ) -> io::Result<u64> {
        let mut data = self.open_passive()?;
        self.expect(&format!("RETR {path}"), &[125, 150])?;
        let received = read_to_end(&mut data, buffer, sink)?;
        drop(data);
        self.expect_final("RETR")?;
        Ok(received)
    }

    /// RETR `path` straight into `into` (sized by the caller) without a copy: the bytes land
    /// where they will be hashed. Fails if the file is longer than `into`.
    pub fn retrieve_into(&mut self, path: &str, into: &mut [u8]) -> io::Result<u64> {
        let mut data = self.open_passive()?;
        self.expect(&format!("RETR {path}"), &[125, 150])?;
        let mut filled = 0usize;
        loop {
            if filled == into.len() {
                let mut probe = [0u8; 1];
                if read_retrying(&mut data, &mut probe)? != 0 {
                    return Err(io::Error::other(format!(
                        "{path} is longer than the expected {} bytes",
                        into.len()
                    )));
                }
                break;
            }
            match read_retrying(&mut data, &mut into[filled..])? {
                0 => break,
                count => filled += count,
            }
        }
        drop(data);
        self.expect_final("RETR")?;
        Ok(filled as u64)
    }

    /// STOR `path` with `total` bytes made of `chunk` repeated; returns the bytes sent once
    /// the server said 226.
    pub fn store(&mut self, path: &str, chunk: &[u8], total: u64) -> io::Result<u64> {
        if chunk.is_empty() {
            return Err(io::Error::other("store needs a non-empty chunk"));
        }
        let mut data = self.open_passive()?;
        self.expect(&format!("STOR {path}"), &[125, 150])?;
        let mut sent = 0u64;
        while sent < total {
            let part = (total - sent).min(chunk.len() as u64) as usize;
            data.write_all(&chunk[..part])?;
            sent += part as u64;
        }
        data.shutdown(Shutdown::Write)?;
        drop(data);
        self.expect_final("STOR")?;
        Ok(sent)
    }

    /// LIST or NLST of `path`: returns (bytes, lines) of the listing after the 226.
    pub fn listing(&mut self, verb: &str, path: &str, buffer: &mut [u8]) -> io::Result<(u64, u64)> {
        let mut data = self.open_passive()?;
        self.expect(&format!("{verb} {path}"), &[125, 150])?;
        let mut lines = 0u64;
        let received = read_to_end(&mut data, buffer, &mut |chunk| {
            lines += chunk.iter().filter(|&&byte| byte == b'\n').count() as u64;
        })?;
        drop(data);
        self.expect_final(verb)?;
        Ok((received, lines))
    }

    /// SIZE `path` in bytes.
    pub fn size(&mut self, path: &str) -> io::Result<u64> {
        let reply = self.expect(&format!("SIZE {path}"), &[213])?;
        reply
            .text
            .trim()
            .parse()
            .map_err(|_| io::Error::other(format!("SIZE {path}: bad size '{}'", reply.text)))
    }

    fn expect_final(&mut self, what: &str) -> io::Result<()> {
        let reply = self.read_reply()?;
        if reply.code == 226 || reply.code == 250 {
            Ok(())
        } else {
            Err(unexpected(what, &reply, &[226]))
        }
    }

    /// QUIT and wait for 221.
    pub fn quit(mut self) -> io::Result<()> {
        self.expect("QUIT", &[221]).map(drop)
    }
}

/// Reads `data` to EOF through `buffer`, handing each chunk to `sink`.
fn read_to_end(
    data: &mut TcpStream,
    buffer: &mut [u8],
    sink: &mut dyn FnMut(&[u8]),
) -> io::Result<u64> {
    let mut received = 0u64;
    loop {
        match read_retrying(data, buffer)? {
            0 => return Ok(received),
            count => {
                sink(&buffer[..count]);
                received += count as u64;
            }
        }
    }
}

fn read_retrying(data: &mut TcpStream, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        match data.read(buffer) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn parse_code(line: &str) -> io::Result<u16> {
    line.get(..3)
        .filter(|code| code.bytes().all(|byte| byte.is_ascii_digit()))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::other(format!("malformed reply line '{line}'")))
}

/// The address in a 227 reply: `Entering Passive Mode (h1,h2,h3,h4,p1,p2)`.
pub fn parse_pasv(text: &str) -> io::Result<SocketAddr> {
    let bad = || io::Error::other(format!("malformed PASV reply '{text}'"));
    let start = text.find('(').ok_or_else(bad)?;
    let end = text[start..].find(')').ok_or_else(bad)? + start;
    let numbers: Vec<u8> = text[start + 1..end]
        .split(',')
        .map(|part| part.trim().parse::<u8>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let [a, b, c, d, high, low] = numbers[..] else {
        return Err(bad());
    };
    let port = u16::from(high) << 8 | u16::from(low);
    Ok(SocketAddr::from(([a, b, c, d], port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasv_replies_are_parsed() {
        let addr = parse_pasv("Entering Passive Mode (127,0,0,1,195,80).").unwrap();
        assert_eq!(addr, "127.0.0.1:50000".parse().unwrap());
        assert!(parse_pasv("Entering Passive Mode (127,0,0,1,195)").is_err());
        assert!(parse_pasv("no address").is_err());
    }

    #[test]
    fn reply_codes_are_three_digits() {
        assert_eq!(parse_code("226 ok").unwrap(), 226);
        assert!(parse_code("2x6 ok").is_err());
        assert!(parse_code("22").is_err());
    }
}
