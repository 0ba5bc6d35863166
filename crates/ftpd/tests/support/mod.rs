//! Shared by ftpd's integration tests: a real ftpd on an ephemeral port over a temp dir,
//! and a raw control-connection client for exact reply checks.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};
use testkit::Server;

pub const FTPD: &str = env!("CARGO_BIN_EXE_ftpd");
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A running ftpd serving its own temp dir.
pub struct Ftpd {
    pub server: Server,
    pub root: tempfile::TempDir,
}

impl Ftpd {
    /// `ftpd --root <tmp> --port 0` plus `args`.
    pub fn start(args: &[&str]) -> Ftpd {
        let root = tempfile::tempdir().expect("temp dir");
        Ftpd::start_in(root, args)
    }

    /// The same, over a prepared directory.
    pub fn start_in(root: tempfile::TempDir, args: &[&str]) -> Ftpd {
        let mut command = Command::new(FTPD);
        command
            .args(["--host", "127.0.0.1", "--port", "0", "--root"])
            .arg(root.path())
            .args(args);
        Ftpd {
            server: Server::spawn(command),
            root,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    pub fn url(&self, path: &str) -> String {
        format!("ftp://127.0.0.1:{}/{path}", self.addr().port())
    }

    /// The metrics page the server announced (started with `--metrics 127.0.0.1:0`).
    pub fn metrics_url(&self) -> String {
        assert!(self
            .server
            .wait_for_log("metrics on http://", Duration::from_secs(10)));
        self.server
            .log_lines()
            .iter()
            .find_map(|line| line.strip_prefix("metrics on ").map(str::to_owned))
            .expect("a metrics on line")
    }

    /// A raw client, logged in anonymously.
    pub fn anonymous(&self) -> Raw {
        let mut raw = Raw::connect(self.addr());
        raw.expect("USER anonymous", 331);
        raw.expect("PASS guest@", 230);
        raw
    }
}

/// Writes `bytes` to `root/name`, creating parent directories.
pub fn put(root: &Path, name: &str, bytes: &[u8]) {
    let path = root.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, bytes).unwrap();
}

/// The names in `dir`, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Pseudo-random bytes, different for each seed.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

/// A TCP connection to `to` from the loopback address `source` (127.0.0.0/8 is all ours).
pub fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let source: SocketAddr = format!("{source}:0").parse().unwrap();
    socket
        .bind(&source.into())
        .expect("bind the source address");
    socket.connect(&to.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream
}

/// A control connection driven by hand, for exact codes and edge cases.
pub struct Raw {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
}

/// One reply: code and every line as received.
#[derive(Debug, Clone)]
pub struct Answer {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Answer {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        Raw::over(TcpStream::connect(addr).expect("connect to ftpd"))
    }

    /// A raw client on a connection already made (from a chosen source, after a PROXY
    /// header…): reads the `220`.
    pub fn over(stream: TcpStream) -> Raw {
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let mut raw = Raw {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        let greeting = raw.answer();
        assert_eq!(greeting.code, 220, "{greeting:?}");
        raw
    }

    /// The first reply on a fresh connection, whatever its code (a `421` at the door).
    pub fn answer_of(stream: TcpStream) -> Answer {
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let mut raw = Raw {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        raw.answer()
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send");
    }

    pub fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes());
    }

    /// Reads one complete reply (multi-line aware, RFC 959 §4.2).
    pub fn answer(&mut self) -> Answer {
        let mut lines = Vec::new();
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("reply line");
        assert!(line.len() >= 4, "short or missing reply: {line:?}");
        let code: u16 = line[..3]
            .parse()
            .unwrap_or_else(|_| panic!("bad reply {line:?}"));
        let multi = line.as_bytes()[3] == b'-';
        lines.push(line.trim_end().to_owned());
        if multi {
            let end = format!("{code} ");
            loop {
                line.clear();
                let read = self.reader.read_line(&mut line).expect("reply line");
                assert!(read > 0, "EOF inside multi-line reply {lines:?}");
                lines.push(line.trim_end_matches(['\r', '\n']).to_owned());
                if line.starts_with(&end) {
                    break;
                }
            }
        }
        Answer { code, lines }
    }

    /// Sends `line` and asserts the reply code.
    pub fn expect(&mut self, line: &str, code: u16) -> Answer {
        self.send(line);
        let answer = self.answer();
        assert_eq!(answer.code, code, "{line} -> {answer:?}");
        answer
    }

    /// EPSV and connect: the data connection for the next transfer.
    pub fn passive(&mut self) -> TcpStream {
        let answer = self.expect("EPSV", 229);
        let text = &answer.lines[0];
        let port: u16 = text
            .rsplit("|||")
            .next()
            .and_then(|rest| rest.split('|').next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("bad EPSV reply {text}"));
        let data = TcpStream::connect(("127.0.0.1", port)).expect("data connection");
        data.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        data
    }

    /// RETR (or any data-sending command) in full: returns the bytes and the final reply.
    pub fn fetch(&mut self, command: &str) -> (Vec<u8>, Answer) {
        let mut data = self.passive();
        let opening = self.expect(command, 150);
        assert!(!opening.text().is_empty());
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes).expect("read data");
        (bytes, self.answer())
    }

    /// STOR-style upload in full: returns the final reply.
    pub fn upload(&mut self, command: &str, bytes: &[u8]) -> Answer {
        let mut data = self.passive();
        self.expect(command, 150);
        data.write_all(bytes).expect("write data");
        drop(data);
        self.answer()
    }
}
