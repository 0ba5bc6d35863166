//! ftpd: serves a directory over FTP. With no arguments: the current directory on
//! 127.0.0.1:2121, anonymous, read-only.

use std::fs::OpenOptions;
use std::io::BufRead;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Parser, Subcommand};
use common::listen::listen_announced;
use ftpd::jail::Jail;
use ftpd::server::{serve, Limits, ServerConfig, Sessions};
use ftpd::tls::TlsSettings;
use ftpd::users::{hash_password, Access, Users};

/// Concurrent FTP server: serves a directory to ftp, lftp, curl, FileZilla and friends
#[derive(Parser, Debug)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Tool>,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 picks a free one
    #[arg(long, default_value_t = 2121)]
    port: u16,
    /// Directory to serve
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Let anonymous users (and users-file lines without rw/ro) upload, mkdir, delete and rename
    #[arg(long)]
    write: bool,
    /// Users file: one name:argon2-hash[:rw|ro][:home] a line (see `ftpd passwd`)
    #[arg(long)]
    users: Option<PathBuf>,
    /// Allow anonymous login (the default unless --users is given)
    #[arg(long, overrides_with = "no_anonymous")]
    anonymous: bool,
    /// Refuse anonymous login
    #[arg(long)]
    no_anonymous: bool,
    /// Ports for passive data connections, e.g. 50000-50100 (default: any free port)
    #[arg(long, value_parser = parse_port_range)]
    passive_ports: Option<RangeInclusive<u16>>,
    /// Address to advertise in PASV replies, for a server behind NAT
    #[arg(long)]
    passive_address: Option<IpAddr>,
    /// Allow PORT/EPRT to addresses other than the client's own (server-to-server copies)
    #[arg(long)]
    allow_fxp: bool,
    /// Most clients connected at once
    #[arg(long, default_value_t = 512)]
    max_clients: usize,
    /// Most clients connected at once from one address
    #[arg(long, default_value_t = 32)]
    max_per_ip: usize,
    /// Seconds a client has to log in
    #[arg(long, default_value_t = 60)]
    login_timeout: u64,
    /// Seconds a logged-in client may go without a command (NOOP does not count)
    #[arg(long, default_value_t = 300)]
    idle_timeout: u64,
    /// Seconds to wait for a data connection to be made
    #[arg(long, default_value_t = 30)]
    data_timeout: u64,
    /// Seconds a data connection may stall mid-transfer
    #[arg(long, default_value_t = 300)]
    stall_timeout: u64,
    /// Seconds running transfers may take to finish after SIGTERM or SIGINT
    #[arg(long, default_value_t = 10)]
    shutdown_grace: u64,
    /// Append a wu-ftpd format transfer log to this file
    #[arg(long)]
    xferlog: Option<PathBuf>,
    /// PEM certificate chain: enables FTPS (AUTH TLS)
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Refuse logins and data transfers that are not protected by TLS
    #[arg(long, requires = "tls_cert")]
    tls_required: bool,
    /// Also listen for implicit FTPS (TLS from the first byte, port 990 style) on this port
    #[arg(long, requires = "tls_cert")]
    implicit_tls_port: Option<u16>,
    /// Do not require data connections to resume the control connection's TLS session
    /// (for clients that cannot)
    #[arg(long, requires = "tls_cert")]
    tls_no_session_reuse: bool,
}

#[derive(Subcommand, Debug)]
enum Tool {
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

fn main() -> ExitCode {
    let args: Args = common::args::parse();
    common::logging::init();
    match &args.command {
        Some(Tool::Passwd { name }) => passwd(name),
        None => run(&args),
    }
}

fn passwd(name: &str) -> ExitCode {
    if name.is_empty() || name.contains(':') || name.chars().any(char::is_whitespace) {
        common::args::usage_error::<Args>(format!(
            "user name '{name}' must be non-empty, without ':' or spaces"
        ));
    }
    let mut password = String::new();
    if let Err(error) = std::io::stdin().lock().read_line(&mut password) {
        eprintln!("ftpd: cannot read password from stdin: {error}");
        return ExitCode::FAILURE;
    }
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!("ftpd: empty password on stdin");
        return ExitCode::FAILURE;
    }
    match hash_password(password) {
        Ok(hash) => {
            println!("{name}:{hash}:rw");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("ftpd: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> ExitCode {
    ignore_file_size_signal();
    let write_access = if args.write {
        Access::ReadWrite
    } else {
        Access::ReadOnly
    };
    let anonymous_on = !args.no_anonymous && (args.anonymous || args.users.is_none());
    let anonymous = anonymous_on.then_some(write_access);
    let users = match &args.users {
        Some(path) => match Users::load(path, anonymous, write_access) {
            Ok(users) => users,
            Err(error) => {
                eprintln!("ftpd: {error}");
                return ExitCode::FAILURE;
            }
        },
        None if anonymous.is_none() => {
            common::args::usage_error::<Args>("--no-anonymous needs --users: nobody could log in");
        }
        None => Users::anonymous_only(write_access),
    };
    let xferlog = match &args.xferlog {
        Some(path) => match OpenOptions::new().create(true).append(true).open(path) {
            Ok(file) => Some(Mutex::new(file)),
            Err(error) => {
                eprintln!("ftpd: cannot open xferlog {}: {error}", path.display());
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            match TlsSettings::load(cert, key, args.tls_required, !args.tls_no_session_reuse) {
                Ok(settings) => Some(settings),
                Err(error) => {
                    eprintln!("ftpd: {error}");
                    return ExitCode::FAILURE;
                }
            }
        }
        _ => None,
    };
    let jail = match Jail::open(&args.root) {
        Ok(jail) => jail,
        Err(error) => {
            eprintln!("ftpd: cannot serve {}: {error}", args.root.display());
            return ExitCode::FAILURE;
        }
    };
    let listener = match listen_announced(&args.host, args.port) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "ftpd: cannot listen on {}:{}: {error}",
                args.host, args.port
            );
            return ExitCode::FAILURE;
        }
    };
    let implicit = match args.implicit_tls_port {
        Some(port) => match listen_announced(&args.host, port) {
            Ok(listener) => Some(listener),
            Err(error) => {
                eprintln!(
                    "ftpd: cannot listen on {}:{port} for implicit TLS: {error}",
                    args.host
                );
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    log::info!(
        "serving {} ({}; anonymous {})",
        args.root.display(),
        if args.write { "writable" } else { "read-only" },
        if anonymous_on { "on" } else { "off" }
    );
    let seconds = |value: u64| Duration::from_secs(value.max(1));
    let config = ServerConfig {
        jail: Arc::new(jail),
        users,
        passive_ports: args.passive_ports.clone(),
        passive_address: args.passive_address,
        allow_fxp: args.allow_fxp,
        login_timeout: seconds(args.login_timeout),
        idle_timeout: seconds(args.idle_timeout),
        data_timeout: seconds(args.data_timeout),
        stall_timeout: seconds(args.stall_timeout),
        xferlog,
        sessions: Sessions::default(),
        tls,
    };
    let limits = Limits {
        max_clients: args.max_clients,
        max_per_ip: args.max_per_ip,
    };
    serve(
        &listener,
        implicit,
        config,
        limits,
        Duration::from_secs(args.shutdown_grace),
    );
    log::info!("stopped");
    ExitCode::SUCCESS
}

/// A file-size limit (`ulimit -f`) must fail the upload with 552, not kill the server:
/// the kernel's default for SIGXFSZ is to end the process.
fn ignore_file_size_signal() {
    // SAFETY: setting a standard signal to SIG_IGN at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}
