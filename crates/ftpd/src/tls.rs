//! Tls: FTPS (RFC 4217 explicit `AUTH TLS`, and implicit TLS) with rustls and its ring
//! provider, TLS 1.2 and 1.3 only.
//!
//! The control connection is read by the session thread and written by transfer threads
//! too, so its TLS state sits behind a mutex that is never held across a blocking read:
//! [`ControlReader`] reads raw bytes from the socket first and only then feeds them to the
//! shared connection.

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{HandshakeKind, ServerConfig, ServerConnection, StreamOwned};

/// A TLS connection shared between the session's reader and the reply writers.
pub type SharedTls = Arc<Mutex<ServerConnection>>;

/// The server's TLS settings, fixed at start-up.
#[derive(Debug)]
pub struct TlsSettings {
    config: Arc<ServerConfig>,
    /// The same, minus TLS 1.3 session tickets, for uploads: a ticket an uploading client
    /// never reads is unread data, which turns its close into a reset that can destroy the
    /// upload (seen with lftp's GnuTLS under load). Downloads do send tickets, which clients
    /// that use each ticket once (rustls) need for their next data connection.
    upload_config: Arc<ServerConfig>,
    /// Refuse logins and data transfers that are not protected.
    pub required: bool,
    /// Data connections must resume a TLS session of this server (against data-connection
    /// hijacking, as vsftpd and ProFTPD require).
    pub require_resumption: bool,
}

impl TlsSettings {
    /// Loads a PEM certificate chain and private key; errors name the file.
    pub fn load(
        cert: &Path,
        key: &Path,
        required: bool,
        require_resumption: bool,
    ) -> Result<TlsSettings, String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .map_err(|error| format!("cannot read certificate {}: {error}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!("no certificate in {}", cert.display()));
        }
        let private = PrivateKeyDer::from_pem_file(key)
            .map_err(|error| format!("cannot read private key {}: {error}", key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|error| format!("TLS set-up failed: {error}"))?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|error| {
                format!(
                    "{} and {} do not make a usable key pair: {error}",
                    cert.display(),
                    key.display()
                )
            })?;
        // Stateless tickets can be presented again: clients (ftplib, GnuTLS in lftp) resume
        // every data connection from the control connection's one session, and TLS 1.3's
        // cached sessions would be single-use.
        config.ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|error| format!("TLS session tickets unavailable: {error}"))?;
        // A few spare tickets on the control connection cover a run of uploads from a
        // client that spends one per data connection.
        config.send_tls13_tickets = 4;
        let mut upload_config = config.clone();
        upload_config.send_tls13_tickets = 0;
        Ok(TlsSettings {
            config: Arc::new(config),
            upload_config: Arc::new(upload_config),
            required,
            require_resumption,
        })
    }

    /// Runs a control connection's server handshake on a blocking socket (the socket's
    /// timeouts apply).
    pub fn handshake(&self, socket: &TcpStream) -> io::Result<ServerConnection> {
        handshake(&self.config, socket)
    }

    /// Secures a data connection (`incoming` for uploads), insisting on session resumption
    /// when configured.
    pub fn secure_data(
        &self,
        socket: TcpStream,
        incoming: bool,
    ) -> io::Result<StreamOwned<ServerConnection, TcpStream>> {
        let config = if incoming {
            &self.upload_config
        } else {
            &self.config
        };
        let connection = handshake(config, &socket)?;
        if self.require_resumption && connection.handshake_kind() != Some(HandshakeKind::Resumed) {
            return Err(io::Error::new(
                ErrorKind::PermissionDenied,
                "data connection did not resume the control connection's TLS session",
            ));
        }
        Ok(StreamOwned::new(connection, socket))
    }
}

fn handshake(config: &Arc<ServerConfig>, socket: &TcpStream) -> io::Result<ServerConnection> {
    let mut connection = ServerConnection::new(Arc::clone(config)).map_err(tls_error)?;
    let mut io = socket;
    while connection.is_handshaking() {
        connection.complete_io(&mut io)?;
    }
    Ok(connection)
}

fn tls_error(error: rustls::Error) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, error)
}

/// Locks a shared connection, surviving a poisoned lock (a panicked writer).
pub fn lock(shared: &SharedTls) -> MutexGuard<'_, ServerConnection> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sends `bytes` through the shared TLS connection to `socket`.
pub fn write_through(shared: &SharedTls, socket: &TcpStream, bytes: &[u8]) -> io::Result<()> {
    let mut connection = lock(shared);
    connection.writer().write_all(bytes)?;
    let mut io = socket;
    while connection.wants_write() {
        connection.write_tls(&mut io)?;
    }
    Ok(())
}

/// The reading side of a control connection, plain or TLS.
pub struct ControlReader {
    socket: TcpStream,
    tls: Option<SharedTls>,
}

impl ControlReader {
    /// Reads the socket in the clear until [`ControlReader::secure`].
    pub fn new(socket: TcpStream) -> ControlReader {
        ControlReader { socket, tls: None }
    }

    /// From now on, reads go through `tls`.
    pub fn secure(&mut self, tls: SharedTls) {
        self.tls = Some(tls);
    }

    /// The socket, for timeouts.
    pub fn socket(&self) -> &TcpStream {
        &self.socket
    }
}

impl Read for ControlReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return self.socket.read(buffer);
        };
        let mut raw = [0u8; 4096];
        loop {
            match lock(tls).reader().read(buffer) {
                Ok(count) => return Ok(count),
                Err(error) if error.kind() == ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: for a control connection, just EOF.
                Err(error) if error.kind() == ErrorKind::UnexpectedEof => return Ok(0),
                Err(error) => return Err(error),
            }
            // Block on the socket without holding the lock, so replies can still be sent.
            let count = self.socket.read(&mut raw)?;
            if count == 0 {
                return Ok(0);
            }
            let mut connection = lock(tls);
            let mut incoming = &raw[..count];
            while !incoming.is_empty() {
                connection.read_tls(&mut incoming)?;
                connection.process_new_packets().map_err(tls_error)?;
            }
            let mut io = &self.socket;
            while connection.wants_write() {
                connection.write_tls(&mut io)?;
            }
        }
    }
}
