//! Data: setting up the data connection a transfer or listing runs over, passive (we
//! listen, the client connects) or active (we connect to the client).

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use crate::deadline::{wait_for, Readiness};
use crate::proxy::{self, ProxyPolicy};

/// How the next data connection will be made.
#[derive(Debug, Default)]
pub enum DataPlan {
    /// No PASV/EPSV/PORT/EPRT yet (or the last one was used).
    #[default]
    None,
    /// We listen; the client connects before `expires`, or the port is given back.
    Passive {
        /// The passive port.
        listener: TcpListener,
        /// When an unused listener is closed, so idle sessions cannot hoard passive ports.
        expires: Instant,
    },
    /// We connect to the client's address.
    Active(SocketAddr),
}

impl DataPlan {
    /// When an unused passive listener must be closed, if one is open.
    pub fn expires(&self) -> Option<Instant> {
        match self {
            DataPlan::Passive { expires, .. } => Some(*expires),
            _ => None,
        }
    }

    /// Closes an unused passive listener whose time is up (freeing its port); true if one was.
    pub fn expire(&mut self, now: Instant) -> bool {
        if self.expires().is_some_and(|expires| expires <= now) {
            *self = DataPlan::None;
            return true;
        }
        false
    }
}

/// The IP clients see for our side of the control connection, with `::ffff:` stripped.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Opens a passive listener on `ip`, on a random port of `ports` when given.
pub fn listen_passive(ip: IpAddr, ports: Option<&RangeInclusive<u16>>) -> io::Result<TcpListener> {
    let Some(ports) = ports else {
        return TcpListener::bind(SocketAddr::new(ip, 0));
    };
    let span = u64::from(ports.end() - ports.start()) + 1;
    let start = random_u64() % span;
    let mut last_error = io::Error::new(io::ErrorKind::AddrInUse, "no free passive port");
    // Try every port once, starting at a random one, so ports are not handed out in order.
    for step in 0..span {
        let port = *ports.start() as u64 + (start + step) % span;
        match TcpListener::bind(SocketAddr::new(ip, port as u16)) {
            Ok(listener) => return Ok(listener),
            Err(error) => last_error = error,
        }
    }
    Err(last_error)
}

/// Accepts the client's data connection within `timeout`. Connections from any address but
/// the control connection's client are dropped and the wait goes on, so nobody else can take
/// over (or kill) the transfer. A connection through a trusted balancer is judged by the
/// client its PROXY header names.
pub fn accept_from(
    listener: &TcpListener,
    peer: IpAddr,
    proxy: &ProxyPolicy,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !wait_for(listener, Readiness::Readable, left)? {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no data connection arrived",
            ));
        }
        let (stream, from) = listener.accept()?;
        let client = match proxy::origin(proxy, &stream, from, deadline) {
            Ok(origin) => origin.client,
            Err(error) => {
                log::warn!("dropped data connection from {from}: {error}");
                continue;
            }
        };
        if canonical(client.ip()) == canonical(peer) {
            return Ok(stream);
        }
        log::warn!("dropped data connection from {client}: control connection is from {peer}");
    }
}

/// Connects to the client for an active-mode transfer.
pub fn connect_to(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    TcpStream::connect_timeout(&addr, timeout)
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS for every instance: enough to spread ports.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    hasher.finish()
}

/// An open data connection, in the clear or under TLS (PROT P).
pub enum DataStream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl DataStream {
    /// Closes the connection, whoever else holds a handle on it.
    pub fn close(&self) {
        let socket = match self {
            DataStream::Plain(socket) => socket,
            DataStream::Tls(stream) => &stream.sock,
        };
        let _ = socket.shutdown(std::net::Shutdown::Both);
    }

    /// Ends the stream cleanly: under TLS, a close_notify, so the client knows no data was cut.
    pub fn finish(&mut self) -> io::Result<()> {
        match self {
            DataStream::Plain(_) => Ok(()),
            DataStream::Tls(stream) => {
                stream.conn.send_close_notify();
                stream.flush()
            }
        }
    }
}

impl io::Read for DataStream {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            DataStream::Plain(stream) => stream.read(buffer),
            DataStream::Tls(stream) => match stream.read(buffer) {
                // Many clients close the data connection without close_notify; the upload's
                // end is then the TCP close, as in the clear.
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }
    }
}

impl io::Write for DataStream {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            DataStream::Plain(stream) => stream.write(bytes),
            DataStream::Tls(stream) => stream.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            DataStream::Plain(stream) => stream.flush(),
            DataStream::Tls(stream) => stream.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_are_shown_as_ipv4() {
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(canonical(mapped), "127.0.0.1".parse::<IpAddr>().unwrap());
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }

    #[test]
    fn passive_ports_come_from_the_range() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let listener = listen_passive(ip, Some(&(40000..=40100))).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!((40000..=40100).contains(&port));
    }

    #[test]
    fn accept_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let error = accept_from(
            &listener,
            "127.0.0.1".parse().unwrap(),
            &ProxyPolicy::default(),
            Duration::from_millis(50),
        )
        .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }
}
