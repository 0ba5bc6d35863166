//! Tls: FTPS (RFC 4217 explicit `AUTH TLS`, and implicit TLS) with rustls and its ring
//! provider, TLS 1.2 and 1.3 only.
//!
//! The control connection is read by the session thread and written by transfer threads
//! too, so its TLS state sits behind a mutex that is never held across a blocking call:
//! `control` reads raw bytes first and only then [`feed`]s them in, and takes sealed records
//! out with [`pending_output`] before sending them.

use std::io::{self, ErrorKind};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::deadline::{read_until, send_before};

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

    /// Runs a control connection's server handshake, giving up at `deadline` (the login
    /// deadline: a handshake trickled a byte at a time gets no longer than a login).
    pub fn handshake(&self, socket: &TcpStream, deadline: Instant) -> io::Result<ServerConnection> {
        handshake(&self.config, socket, deadline)
    }

    /// Secures a data connection (`incoming` for uploads) within `deadline`, insisting on
    /// session resumption when configured.
    pub fn secure_data(
        &self,
        socket: TcpStream,
        incoming: bool,
        deadline: Instant,
    ) -> Result<StreamOwned<ServerConnection, TcpStream>, DataTlsError> {
        let config = if incoming {
            &self.upload_config
        } else {
            &self.config
        };
        let connection = handshake(config, &socket, deadline).map_err(DataTlsError::Handshake)?;
        if self.require_resumption && connection.handshake_kind() != Some(HandshakeKind::Resumed) {
            return Err(DataTlsError::NotResumed);
        }
        Ok(StreamOwned::new(connection, socket))
    }
}

/// Why a data connection could not be secured; the session answers each differently.
#[derive(Debug)]
pub enum DataTlsError {
    /// The client did not resume the control connection's session (a possible hijack, or a
    /// client that cannot resume): refused by policy.
    NotResumed,
    /// The handshake itself failed or timed out.
    Handshake(io::Error),
}

impl std::fmt::Display for DataTlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataTlsError::NotResumed => {
                f.write_str("data connection did not resume the control connection's TLS session")
            }
            DataTlsError::Handshake(error) => write!(f, "TLS handshake failed: {error}"),
        }
    }
}

/// A server handshake on a blocking socket, every read and write bounded by `deadline`.
fn handshake(
    config: &Arc<ServerConfig>,
    socket: &TcpStream,
    deadline: Instant,
) -> io::Result<ServerConnection> {
    let mut connection = ServerConnection::new(Arc::clone(config)).map_err(tls_error)?;
    loop {
        let output = pending_output(&mut connection)?;
        send_before(socket, &output, deadline)?;
        if !connection.is_handshaking() {
            return Ok(connection);
        }
        read_until(socket, deadline)?;
        let mut reader = socket;
        if connection.read_tls(&mut reader)? == 0 {
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                "client closed during the TLS handshake",
            ));
        }
        if let Err(error) = connection.process_new_packets() {
            // Tell the client why (the alert is queued), then give up.
            let alert = pending_output(&mut connection).unwrap_or_default();
            let _ = send_before(socket, &alert, deadline);
            return Err(tls_error(error));
        }
    }
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

/// The TLS records `connection` has queued for the peer, taken out without any I/O.
pub fn pending_output(connection: &mut ServerConnection) -> io::Result<Vec<u8>> {
    let mut output = Vec::new();
    while connection.wants_write() {
        connection.write_tls(&mut output)?;
    }
    Ok(output)
}

/// Feeds bytes read from the socket into the shared connection; true when it now has
/// records to send (which the caller sends in its turn).
pub fn feed(shared: &SharedTls, mut incoming: &[u8]) -> io::Result<bool> {
    let mut connection = lock(shared);
    while !incoming.is_empty() {
        connection.read_tls(&mut incoming)?;
        connection.process_new_packets().map_err(tls_error)?;
    }
    Ok(connection.wants_write())
}
