//! PROXY protocol (v1 text and v2 binary): who a connection that came through a load balancer
//! is really from. A header is read only from a trusted balancer (`--proxy-from`), byte-exact
//! (nothing after it is consumed: a data connection's file bytes follow at once) and under a
//! deadline; a header from anyone else is never looked for, so it is never believed.

use std::fmt;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cidr::Cidr;
use crate::deadline::{read_until, timed_out, wait_for, Readiness};

/// `--proxy-mode`: what a trusted balancer's connection must start with.
#[derive(clap::ValueEnum, Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    /// A header, always: a trusted address that sends none is dropped.
    #[default]
    Required,
    /// A header if the balancer sends one (it has `OPTIONAL_WAIT` to start); otherwise the
    /// connection is taken as the balancer's own.
    Optional,
}

/// How long, in optional mode, a trusted peer has to start its header. Balancers send it with
/// the connection; an FTP client sends nothing before our greeting.
pub const OPTIONAL_WAIT: Duration = Duration::from_millis(500);

/// The longest header: v1's 107 bytes, or v2's 16 plus addresses and TLVs we allow.
const MAX_HEADER: usize = 16 + 512;
/// v2's 12-byte signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// How every v1 header starts.
const V1_START: &[u8; 6] = b"PROXY ";
/// The longest v1 line, CRLF included (the spec's worst case).
const V1_MAX: usize = 107;

/// Whose PROXY headers are believed, and whether they must send one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyPolicy {
    /// Balancers' addresses; empty means headers are never read.
    pub trusted: Vec<Cidr>,
    /// Whether a trusted peer must send a header.
    pub mode: ProxyMode,
}

impl ProxyPolicy {
    /// True when a connection from `ip` may (or must) start with a header.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(ip))
    }
}

/// Where a connection comes from, as everything that judges an address must see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The client: the header's source when a trusted balancer sent one, the peer otherwise.
    pub client: SocketAddr,
    /// The address the client connected to (the balancer's front), when a header said so.
    pub destination: Option<SocketAddr>,
    /// The balancer the connection came through, when a header was believed.
    pub balancer: Option<SocketAddr>,
}

impl Origin {
    /// A connection taken as it is: its peer is the client.
    pub fn direct(peer: SocketAddr) -> Origin {
        Origin {
            client: peer,
            destination: None,
            balancer: None,
        }
    }
}

/// Why a trusted balancer's connection was dropped.
#[derive(Debug)]
pub enum ProxyError {
    /// Required mode and the connection ended, or timed out, before a header began.
    Missing(io::Error),
    /// The bytes are not a PROXY header (or one we do not accept).
    Malformed(String),
    /// Reading the header failed or took too long.
    Io(io::Error),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Missing(error) => write!(f, "no PROXY header ({error})"),
            ProxyError::Malformed(why) => write!(f, "bad PROXY header: {why}"),
            ProxyError::Io(error) => write!(f, "reading the PROXY header: {error}"),
        }
    }
}

impl std::error::Error for ProxyError {}

/// Who `stream` (accepted from `peer`) is from: reads the header a trusted balancer sends,
/// giving up at `deadline`; any other peer is taken as it is, without a byte read.
pub fn origin(
    policy: &ProxyPolicy,
    stream: &TcpStream,
    peer: SocketAddr,
    deadline: Instant,
) -> Result<Origin, ProxyError> {
    if !policy.trusts(peer.ip()) {
        return Ok(Origin::direct(peer));
    }
    if policy.mode == ProxyMode::Optional {
        let wait = OPTIONAL_WAIT.min(deadline.saturating_duration_since(Instant::now()));
        if !starts_like_a_header(stream, wait).map_err(ProxyError::Io)? {
            return Ok(Origin::direct(peer));
        }
    }
    let header = read_header(stream, deadline)?;
    Ok(match parse(&header)? {
        Some((client, destination)) => Origin {
            client,
            destination: Some(destination),
            balancer: Some(peer),
        },
        // LOCAL (v2) or UNKNOWN (v1): the balancer speaking for itself, e.g. a health check.
        None => Origin::direct(peer),
    })
}

/// Optional mode: true when the first bytes to arrive within `wait` could begin a header.
fn starts_like_a_header(stream: &TcpStream, wait: Duration) -> io::Result<bool> {
    if wait.is_zero() || !wait_for(stream, Readiness::Readable, wait)? {
        return Ok(false);
    }
    let mut first = [0u8; 6];
    let seen = stream.peek(&mut first)?;
    let first = &first[..seen];
    Ok(!first.is_empty() && (V1_START.starts_with(first) || V2_SIGNATURE.starts_with(first)))
}

/// Reads exactly one header's bytes (v1 up to its LF, v2 by its length field) before
/// `deadline`, leaving whatever follows unread.
fn read_header(stream: &TcpStream, deadline: Instant) -> Result<Vec<u8>, ProxyError> {
    let mut header = vec![0u8; V1_START.len()];
    read_exact_before(stream, &mut header, deadline).map_err(|error| {
        if matches!(
            error.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
        ) {
            ProxyError::Missing(error)
        } else {
            ProxyError::Io(error)
        }
    })?;
    if header == V1_START {
        // Text: one byte at a time (at most 107), so nothing past the LF is taken.
        while header.last() != Some(&b'\n') {
            if header.len() >= V1_MAX {
                return Err(ProxyError::Malformed(
                    "v1 line longer than 107 bytes".into(),
                ));
            }
            let mut byte = [0u8; 1];
            read_exact_before(stream, &mut byte, deadline).map_err(ProxyError::Io)?;
            header.push(byte[0]);
        }
        return Ok(header);
    }
    if !V2_SIGNATURE.starts_with(&header) {
        return Err(ProxyError::Malformed("neither v1 nor v2".into()));
    }
    header.resize(16, 0);
    read_exact_before(stream, &mut header[V1_START.len()..], deadline).map_err(ProxyError::Io)?;
    if &header[..12] != V2_SIGNATURE {
        return Err(ProxyError::Malformed("bad v2 signature".into()));
    }
    let length = usize::from(u16::from_be_bytes([header[14], header[15]]));
    if 16 + length > MAX_HEADER {
        return Err(ProxyError::Malformed(format!(
            "v2 header of {length} bytes is too long"
        )));
    }
    header.resize(16 + length, 0);
    read_exact_before(stream, &mut header[16..], deadline).map_err(ProxyError::Io)?;
    Ok(header)
}

/// `read_exact` that gives up at `deadline` however the bytes trickle in.
fn read_exact_before(
    mut stream: &TcpStream,
    mut buffer: &mut [u8],
    deadline: Instant,
) -> io::Result<()> {
    while !buffer.is_empty() {
        read_until(stream, deadline)?;
        match stream.read(buffer) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed",
                ))
            }
            Ok(count) => buffer = &mut buffer[count..],
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                return Err(timed_out("header not complete in time"))
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// A whole header's (source, destination), or `None` for a header that speaks for the
/// balancer itself (v2 LOCAL, v1 UNKNOWN, or an address family that is not TCP over IP).
pub fn parse(header: &[u8]) -> Result<Option<(SocketAddr, SocketAddr)>, ProxyError> {
    let malformed = |error: &dyn fmt::Display| ProxyError::Malformed(error.to_string());
    if header.starts_with(V1_START) {
        let text = ppp::v1::Header::try_from(header).map_err(|error| malformed(&error))?;
        return Ok(match text.addresses {
            ppp::v1::Addresses::Tcp4(ip) => Some((
                SocketAddr::from((ip.source_address, ip.source_port)),
                SocketAddr::from((ip.destination_address, ip.destination_port)),
            )),
            ppp::v1::Addresses::Tcp6(ip) => Some((
                SocketAddr::from((ip.source_address, ip.source_port)),
                SocketAddr::from((ip.destination_address, ip.destination_port)),
            )),
            ppp::v1::Addresses::Unknown => None,
        });
    }
    let binary = ppp::v2::Header::try_from(header).map_err(|error| malformed(&error))?;
    if binary.command == ppp::v2::Command::Local {
        return Ok(None);
    }
    Ok(match binary.addresses {
        ppp::v2::Addresses::IPv4(ip) => Some((
            SocketAddr::from((ip.source_address, ip.source_port)),
            SocketAddr::from((ip.destination_address, ip.destination_port)),
        )),
        ppp::v2::Addresses::IPv6(ip) => Some((
            SocketAddr::from((ip.source_address, ip.source_port)),
            SocketAddr::from((ip.destination_address, ip.destination_port)),
        )),
        ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    fn v2(source: &str, destination: &str) -> Vec<u8> {
        let addresses = (
            source.parse::<SocketAddr>().unwrap(),
            destination.parse::<SocketAddr>().unwrap(),
        );
        ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            addresses,
        )
        .build()
        .unwrap()
    }

    #[test]
    fn both_versions_give_source_and_destination() {
        let text = b"PROXY TCP4 10.0.0.9 192.0.2.1 40000 21\r\n";
        let (source, destination) = parse(text).unwrap().unwrap();
        assert_eq!(source, "10.0.0.9:40000".parse().unwrap());
        assert_eq!(destination, "192.0.2.1:21".parse().unwrap());
        let binary = v2("[2001:db8::9]:40000", "[2001:db8::1]:21");
        let (source, _) = parse(&binary).unwrap().unwrap();
        assert_eq!(source, "[2001:db8::9]:40000".parse().unwrap());
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap(), None);
        assert!(matches!(
            parse(b"PROXY TCP4 nonsense\r\n"),
            Err(ProxyError::Malformed(_))
        ));
    }

    #[test]
    fn only_trusted_networks_are_believed() {
        let policy = ProxyPolicy {
            trusted: vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            mode: ProxyMode::Required,
        };
        assert!(policy.trusts("10.1.2.3".parse().unwrap()));
        assert!(policy.trusts("::ffff:10.1.2.3".parse().unwrap()));
        assert!(policy.trusts("::1".parse().unwrap()));
        assert!(!policy.trusts("192.0.2.1".parse().unwrap()));
        assert!(!ProxyPolicy::default().trusts("10.1.2.3".parse().unwrap()));
    }

    /// The header is read byte-exact: what the client sends next is still there to read.
    #[test]
    fn nothing_after_the_header_is_consumed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        for header in [
            b"PROXY TCP4 10.0.0.9 127.0.0.1 40000 21\r\n".to_vec(),
            v2("10.0.0.9:40000", "127.0.0.1:21"),
        ] {
            let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let mut sent = header.clone();
            sent.extend_from_slice(b"file bytes");
            client.write_all(&sent).unwrap();
            let (mut server, peer) = listener.accept().unwrap();
            let policy = ProxyPolicy {
                trusted: vec!["127.0.0.0/8".parse().unwrap()],
                mode: ProxyMode::Required,
            };
            let deadline = Instant::now() + Duration::from_secs(5);
            let origin = origin(&policy, &server, peer, deadline).unwrap();
            assert_eq!(origin.client, "10.0.0.9:40000".parse().unwrap());
            assert_eq!(origin.balancer, Some(peer));
            let mut rest = [0u8; 10];
            server.read_exact(&mut rest).unwrap();
            assert_eq!(&rest, b"file bytes");
        }
    }

    #[test]
    fn a_silent_trusted_peer_is_missing_in_required_mode_and_direct_in_optional() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let trusted = vec!["127.0.0.0/8".parse().unwrap()];
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        let required = ProxyPolicy {
            trusted: trusted.clone(),
            mode: ProxyMode::Required,
        };
        let soon = Instant::now() + Duration::from_millis(200);
        assert!(matches!(
            origin(&required, &server, peer, soon),
            Err(ProxyError::Missing(_))
        ));
        let optional = ProxyPolicy {
            trusted,
            mode: ProxyMode::Optional,
        };
        let later = Instant::now() + Duration::from_secs(5);
        assert_eq!(
            origin(&optional, &server, peer, later).unwrap(),
            Origin::direct(peer)
        );
    }
}
