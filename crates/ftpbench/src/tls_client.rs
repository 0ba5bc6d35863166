//! Tls client: just enough FTPS (AUTH TLS, PBSZ 0, PROT P, PASV, RETR) to measure what TLS
//! costs a download, against a server whose certificate this run generated and trusts.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::client::{parse_pasv, Credentials, CONNECT_TIMEOUT, IO_TIMEOUT};

/// A certificate for `localhost` made for this run: the PEM files for the server and the
/// client configuration that trusts exactly it.
pub struct TestCertificate {
    pub cert_pem: String,
    pub key_pem: String,
    pub client: Arc<ClientConfig>,
}

impl TestCertificate {
    /// Generates a self-signed certificate for `localhost`.
    pub fn generate() -> io::Result<TestCertificate> {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .map_err(|error| io::Error::other(format!("cannot make a certificate: {error}")))?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(certified.cert.der().clone())
            .map_err(|error| io::Error::other(format!("cannot trust the certificate: {error}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| io::Error::other(error.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TestCertificate {
            cert_pem: certified.cert.pem(),
            key_pem: certified.signing_key.serialize_pem(),
            client: Arc::new(client),
        })
    }
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// RETR `path` over a TLS control and data connection (the data connection resumes the
/// control connection's session, as servers require); returns the bytes received, timed
/// by the caller around this whole call minus nothing: the handshakes count, as for a user.
pub fn retrieve(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    credentials: &Credentials,
    path: &str,
    buffer: &mut [u8],
) -> io::Result<u64> {
    let socket = connect(addr)?;
    let mut plain = socket.try_clone()?;
    expect_plain(&mut plain, None, 220)?;
    expect_plain(&mut plain, Some("AUTH TLS"), 234)?;
    let mut control = secure(config, socket)?;
    expect(
        &mut control,
        &format!("USER {}", credentials.user),
        &[230, 331],
    )?;
    expect(
        &mut control,
        &format!("PASS {}", credentials.password),
        &[230],
    )?;
    for (command, code) in [("TYPE I", 200), ("PBSZ 0", 200), ("PROT P", 200)] {
        expect(&mut control, command, &[code])?;
    }
    let pasv = expect(&mut control, "PASV", &[227])?;
    let data_socket = connect(parse_pasv(&pasv)?)?;
    expect(&mut control, &format!("RETR {path}"), &[125, 150])?;
    let mut data = secure(config, data_socket)?;
    let mut received = 0u64;
    loop {
        match data.read(buffer) {
            Ok(0) => break,
            Ok(count) => received += count as u64,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            // A server that closes without close_notify still sent everything it counted.
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(error) => return Err(error),
        }
    }
    drop(data);
    read_reply(&mut control).and_then(|(code, text)| match code {
        226 | 250 => Ok(()),
        _ => Err(io::Error::other(format!(
            "RETR over TLS ended with '{code} {text}'"
        ))),
    })?;
    let _ = expect(&mut control, "QUIT", &[221]);
    Ok(received)
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    socket.set_read_timeout(Some(IO_TIMEOUT))?;
    socket.set_write_timeout(Some(IO_TIMEOUT))?;
    socket.set_nodelay(true)?;
    Ok(socket)
}

fn secure(config: &Arc<ClientConfig>, socket: TcpStream) -> io::Result<Tls> {
    let name =
        ServerName::try_from("localhost").map_err(|error| io::Error::other(error.to_string()))?;
    let connection = ClientConnection::new(Arc::clone(config), name)
        .map_err(|error| io::Error::other(error.to_string()))?;
    let mut stream = StreamOwned::new(connection, socket);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// Sends `command` (if any) in the clear and checks the reply, before AUTH TLS takes over.
fn expect_plain(socket: &mut TcpStream, command: Option<&str>, code: u16) -> io::Result<()> {
    if let Some(command) = command {
        socket.write_all(format!("{command}\r\n").as_bytes())?;
    }
    let (got, text) = read_reply(socket)?;
    if got == code {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{command:?}: got '{got} {text}', expected {code}"
        )))
    }
}

fn expect(control: &mut Tls, command: &str, codes: &[u16]) -> io::Result<String> {
    control.write_all(format!("{command}\r\n").as_bytes())?;
    control.flush()?;
    let (code, text) = read_reply(control)?;
    if codes.contains(&code) {
        Ok(text)
    } else {
        Err(io::Error::other(format!(
            "'{command}' got '{code} {text}', expected {codes:?}"
        )))
    }
}

/// One reply, byte by byte: the control connection carries little, and reading no further
/// than the reply's end keeps the TLS handshake's bytes out of a buffer.
fn read_reply(stream: &mut impl Read) -> io::Result<(u16, String)> {
    const MAX_LINES: usize = 1000;
    let first = read_line(stream)?;
    let code: u16 = first
        .get(..3)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::other(format!("malformed reply line '{first}'")))?;
    if first.as_bytes().get(3) != Some(&b'-') {
        return Ok((code, first.get(4..).unwrap_or("").to_owned()));
    }
    let end = format!("{code} ");
    for _ in 0..MAX_LINES {
        let line = read_line(stream)?;
        if line.starts_with(&end) {
            return Ok((code, line[4..].to_owned()));
        }
    }
    Err(io::Error::other("multi-line reply too long"))
}

fn read_line(stream: &mut impl Read) -> io::Result<String> {
    const MAX_LINE: usize = 8192;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < MAX_LINE {
        match stream.read(&mut byte) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "control connection closed",
                ))
            }
            Ok(_) if byte[0] == b'\n' => {
                return Ok(String::from_utf8_lossy(&line)
                    .trim_end_matches('\r')
                    .to_owned())
            }
            Ok(_) => line.push(byte[0]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Err(io::Error::other("reply line too long"))
}
