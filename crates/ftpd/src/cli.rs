//! Cli: ftpd's flags, and how they become a validated [`Startup`]. Every start-up problem is
//! one [`StartupError`], which `main` turns into one line and an exit code.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{Config, Limits, Timeouts};
use crate::jail::Jail;
use crate::tls::TlsSettings;
use crate::users::{Access, Users, UsersError};

/// Concurrent FTP server: serves a directory to ftp, lftp, curl, FileZilla and friends
#[derive(Parser, Debug)]
#[command(version, args_conflicts_with_subcommands = true)]
pub struct Args {
    /// A tool instead of the server.
    #[command(subcommand)]
    pub command: Option<Tool>,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on; 0 picks a free one
    #[arg(long, default_value_t = 2121)]
    pub port: u16,
    /// Directory to serve
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
    /// Let anonymous users (and users-file lines without rw/ro) upload, mkdir, delete and rename
    #[arg(long)]
    pub write: bool,
    /// Users file: one name:argon2-hash[:rw|ro][:home] a line (see `ftpd passwd`)
    #[arg(long)]
    pub users: Option<PathBuf>,
    /// Allow anonymous login (the default unless --users is given)
    #[arg(long, overrides_with = "no_anonymous")]
    pub anonymous: bool,
    /// Refuse anonymous login
    #[arg(long)]
    pub no_anonymous: bool,
    /// Ports for passive data connections, e.g. 50000-50100 (default: any free port)
    #[arg(long, value_parser = parse_port_range)]
    pub passive_ports: Option<RangeInclusive<u16>>,
    /// Address to advertise in PASV replies, for a server behind NAT
    #[arg(long)]
    pub passive_address: Option<IpAddr>,
    /// Allow PORT/EPRT to addresses other than the client's own (server-to-server copies)
    #[arg(long)]
    pub allow_fxp: bool,
    /// Most clients connected at once
    #[arg(long, default_value_t = 512)]
    pub max_clients: usize,
    /// Most clients connected at once from one address
    #[arg(long, default_value_t = 32)]
    pub max_per_ip: usize,
    /// Seconds a client has to log in, counted from the connection (TLS handshake included)
    #[arg(long, default_value_t = 60)]
    pub login_timeout: u64,
    /// Seconds a logged-in client may go without a complete command (NOOP does not count)
    #[arg(long, default_value_t = 300)]
    pub idle_timeout: u64,
    /// Seconds to wait for a data connection; an unused passive port is closed after this
    #[arg(long, default_value_t = 30)]
    pub data_timeout: u64,
    /// Seconds a connection may stall (nothing sent or received) before it is dropped
    #[arg(long, default_value_t = 300)]
    pub stall_timeout: u64,
    /// Seconds running transfers may take to finish after SIGTERM or SIGINT
    #[arg(long, default_value_t = 10)]
    pub shutdown_grace: u64,
    /// Append a wu-ftpd format transfer log to this file
    #[arg(long)]
    pub xferlog: Option<PathBuf>,
    /// PEM certificate chain: enables FTPS (AUTH TLS)
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Refuse logins and data transfers that are not protected by TLS
    #[arg(long, requires = "tls_cert")]
    pub tls_required: bool,
    /// Also listen for implicit FTPS (TLS from the first byte, port 990 style) on this port
    #[arg(long, requires = "tls_cert")]
    pub implicit_tls_port: Option<u16>,
    /// Do not require data connections to resume the control connection's TLS session
    /// (for clients that cannot)
    #[arg(long, requires = "tls_cert")]
    pub tls_no_session_reuse: bool,
}

/// The tools beside the server.
#[derive(Subcommand, Debug)]
pub enum Tool {
    /// Read a password from stdin and print the users-file line for NAME
    Passwd {
        /// The login name
        name: String,
    },
}

fn parse_port_range(value: &str) -> Result<RangeInclusive<u16>, String> {
    let bad = || format!("'{value}' is not a port range like 50000-50100");
    let (low, high) = value.split_once('-').ok_or_else(bad)?;
    let (low, high): (u16, u16) = (
        low.trim().parse().map_err(|_| bad())?,
        high.trim().parse().map_err(|_| bad())?,
    );
    if low == 0 || low > high {
        return Err(bad());
    }
    Ok(low..=high)
}

/// Everything the server needs, validated, before any socket is bound.
#[derive(Debug)]
pub struct Startup {
    /// What sessions read.
    pub config: Config,
    /// Connection limits.
    pub limits: Limits,
    /// Where to listen.
    pub host: String,
    /// The plain port.
    pub port: u16,
    /// The implicit-TLS port, if any.
    pub implicit_tls_port: Option<u16>,
    /// The transfer log's path, if any.
    pub xferlog: Option<PathBuf>,
    /// How long transfers may take to finish at shutdown.
    pub shutdown_grace: Duration,
    /// Whether anonymous may log in and write, for the start-up log line.
    pub anonymous: Option<Access>,
    /// The served directory as given, for the start-up log line.
    pub root: PathBuf,
}

/// Why the server could not start.
#[derive(Debug)]
pub enum StartupError {
    /// The flags contradict each other (exit 2, with the usage).
    Usage(String),
    /// The users file is unreadable or wrong.
    Users(UsersError),
    /// The certificate or key is unusable.
    Tls(String),
    /// The root cannot be served.
    Root(PathBuf, std::io::Error),
    /// The transfer log cannot be opened.
    Xferlog(PathBuf, std::io::Error),
    /// A port cannot be bound.
    Listen(String, std::io::Error),
}

impl std::fmt::Display for StartupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartupError::Usage(problem) => f.write_str(problem),
            StartupError::Users(error) => write!(f, "{error}"),
            StartupError::Tls(problem) => f.write_str(problem),
            StartupError::Root(path, error) => {
                write!(f, "cannot serve {}: {error}", path.display())
            }
            StartupError::Xferlog(path, error) => {
                write!(f, "cannot open xferlog {}: {error}", path.display())
            }
            StartupError::Listen(what, error) => write!(f, "cannot listen on {what}: {error}"),
        }
    }
}

impl Args {
    /// Validates the flags and loads what they name (users, certificate, root).
    pub fn startup(&self) -> Result<Startup, StartupError> {
        let write_access = if self.write {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        };
        let anonymous_on = !self.no_anonymous && (self.anonymous || self.users.is_none());
        let anonymous = anonymous_on.then_some(write_access);
        let users = match &self.users {
            Some(path) => {
                Users::load(path, anonymous, write_access).map_err(StartupError::Users)?
            }
            None if anonymous.is_none() => {
                return Err(StartupError::Usage(
                    "--no-anonymous needs --users: nobody could log in".into(),
                ))
            }
            None => Users::anonymous_only(write_access),
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(
                TlsSettings::load(cert, key, self.tls_required, !self.tls_no_session_reuse)
                    .map_err(StartupError::Tls)?,
            ),
            _ => None,
        };
        let jail =
            Jail::open(&self.root).map_err(|error| StartupError::Root(self.root.clone(), error))?;
        let seconds = |value: u64| Duration::from_secs(value.max(1));
        let config = Config {
            jail: Arc::new(jail),
            users,
            passive_ports: self.passive_ports.clone(),
            passive_address: self.passive_address,
            allow_fxp: self.allow_fxp,
            timeouts: Timeouts {
                login: seconds(self.login_timeout),
                idle: seconds(self.idle_timeout),
                data: seconds(self.data_timeout),
                stall: seconds(self.stall_timeout),
            },
            tls,
        };
        Ok(Startup {
            config,
            limits: Limits {
                max_clients: self.max_clients,
                max_per_ip: self.max_per_ip,
            },
            host: self.host.clone(),
            port: self.port,
            implicit_tls_port: self.implicit_tls_port,
            xferlog: self.xferlog.clone(),
            shutdown_grace: Duration::from_secs(self.shutdown_grace),
            anonymous,
            root: self.root.clone(),
        })
    }
}
