//! Session: one control connection, from the 220 greeting to QUIT. One `match` on the
//! command; each transfer runs on its own thread so ABOR and STAT are heard while data moves.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, ErrorKind, Seek, SeekFrom, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};

use crate::command::{self, Command, EpsvMode, ParseError, TransferType};
use crate::data::{self, DataPlan, DataStream};
use crate::jail::Jail;
use crate::listing::{self, Entry, Kind};
use crate::path::VirtualPath;
use crate::reply::{quote_path, Code, MultiLineWriter, Reply};
use crate::server::ServerConfig;
use crate::tls::{self, ControlReader, SharedTls};
use crate::transfer;
use crate::users::{Access, Identity};

/// Longest control line accepted; the rest of a longer one is discarded.
pub const MAX_LINE: usize = 4096;

/// Failed PASS attempts before the connection is closed.
pub const MAX_FAILED_LOGINS: u32 = 3;

/// Stack for session and transfer threads.
pub const THREAD_STACK_SIZE: usize = 256 * 1024;

/// Verbs that mean someone is talking HTTP to us (a cross-protocol attack or a lost browser).
const HTTP_VERBS: [&str; 6] = ["GET", "POST", "HEAD", "PUT", "OPTIONS", "CONNECT"];

/// The features FEAT lists; every extension we implement.
const FEATURES: [&str; 10] = [
    " EPRT",
    " EPSV",
    " MDTM",
    " MFMT",
    " MLST type*;size*;modify*;perm*;unique*;",
    " PASV",
    " REST STREAM",
    " SIZE",
    " TVFS",
    " UTF8",
];

/// The control connection's writing half, shared with the transfer thread that sends the
/// final reply of its transfer, and with a shutdown that says goodbye.
#[derive(Debug)]
pub struct Control {
    writer: Mutex<ControlWriter>,
}

#[derive(Debug)]
struct ControlWriter {
    socket: TcpStream,
    /// Set once `AUTH TLS` (or implicit TLS) has secured the connection.
    tls: Option<SharedTls>,
}

impl ControlWriter {
    fn write(&self, bytes: &[u8]) -> io::Result<()> {
        match &self.tls {
            None => (&self.socket).write_all(bytes),
            Some(tls) => tls::write_through(tls, &self.socket, bytes),
        }
    }
}

/// The control connection as a `Write`, for replies streamed through a buffer.
struct ControlSink<'a>(&'a ControlWriter);

impl Write for ControlSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.write(bytes)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Control {
    fn new(socket: TcpStream) -> Control {
        Control {
            writer: Mutex::new(ControlWriter { socket, tls: None }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ControlWriter> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn send(&self, reply: &Reply) -> io::Result<()> {
        self.lock().write(&reply.to_bytes())
    }

    /// From now on, replies go through `tls`.
    fn secure(&self, tls: SharedTls) {
        self.lock().tls = Some(tls);
    }

    /// A second handle on the socket, to watch for the client hanging up.
    fn probe(&self) -> Option<TcpStream> {
        self.lock().socket.try_clone().ok()
    }

    /// Sends a last reply and closes the connection, which also ends the session's read.
    pub fn close_with(&self, reply: &Reply) {
        let writer = self.lock();
        let _ = writer.write(&reply.to_bytes());
        let _ = writer.socket.shutdown(std::net::Shutdown::Both);
    }
}

/// What idle sessions hear when the server stops.
pub fn shutting_down_reply() -> Reply {
    Reply::new(Code::ServiceUnavailable, "server shutting down")
}

/// Where the login stands.
enum Login {
    AwaitingUser,
    AwaitingPass { user: String },
    LoggedIn { identity: Identity, jail: Arc<Jail> },
}

/// A transfer running on its own thread.
#[derive(Debug)]
struct RunningTransfer {
    thread: JoinHandle<()>,
    aborted: Arc<AtomicBool>,
    data: TcpStream,
    what: String,
}

/// What the main loop does after a command.
enum Flow {
    Continue,
    Quit,
}

/// One client's session state.
pub struct Session {
    config: Arc<ServerConfig>,
    control: Arc<Control>,
    peer: SocketAddr,
    local: SocketAddr,
    login: Login,
    failed_logins: u32,
    cwd: VirtualPath,
    transfer_type: TransferType,
    data_plan: DataPlan,
    epsv_all: bool,
    restart_at: u64,
    rename_from: Option<VirtualPath>,
    running: Option<RunningTransfer>,
    /// Set while a transfer runs, for a graceful shutdown to wait on.
    transferring: Arc<AtomicBool>,
    connected_at: Instant,
    /// When the last command other than NOOP or STAT arrived.
    last_activity: Instant,
    /// The control connection runs over TLS.
    protected_control: bool,
    /// PBSZ has been sent (RFC 4217 wants it before PROT).
    protection_buffer_set: bool,
    /// PROT P: data connections run over TLS.
    private_data: bool,
}

/// A result whose error is already the reply to send.
type Replied<T> = Result<T, Reply>;

/// Serves one control connection until QUIT, EOF, a timeout or a fatal write error.
/// With `implicit_tls`, the connection is TLS from its first byte (port 990 style).
pub fn serve(stream: TcpStream, peer: SocketAddr, config: Arc<ServerConfig>, implicit_tls: bool) {
    let reader = match stream.try_clone() {
        Ok(reader) => reader,
        Err(error) => {
            log::warn!("{peer}: cannot start session: {error}");
            return;
        }
    };
    let local = stream.local_addr().unwrap_or(peer);
    // A 150 and its 226 go out back to back; Nagle would hold the 226 for the client's
    // delayed ACK (about 40 ms), which capped small-file transfers at ~25 files/s.
    let _ = stream.set_nodelay(true);
    let control = Arc::new(Control::new(stream));
    let mut reader = ControlReader::new(reader);
    let mut protected = false;
    if implicit_tls {
        let Some(settings) = config.tls.as_ref() else {
            return;
        };
        let _ = reader.socket().set_read_timeout(Some(config.login_timeout));
        match settings.handshake(reader.socket()) {
            Ok(connection) => {
                let shared: SharedTls = Arc::new(Mutex::new(connection));
                control.secure(Arc::clone(&shared));
                reader.secure(shared);
                protected = true;
            }
            Err(error) => {
                log::info!("{peer}: TLS handshake failed: {error}");
                return;
            }
        }
    }
    let transferring = Arc::new(AtomicBool::new(false));
    let registry = Arc::clone(&config);
    let _registration = registry
        .sessions
        .register(Arc::clone(&control), Arc::clone(&transferring));
    let mut session = Session {
        config,
        control,
        peer,
        local,
        login: Login::AwaitingUser,
        failed_logins: 0,
        cwd: VirtualPath::root(),
        transfer_type: TransferType::Image,
        data_plan: DataPlan::None,
        epsv_all: false,
        restart_at: 0,
        rename_from: None,
        running: None,
        transferring,
        connected_at: Instant::now(),
        last_activity: Instant::now(),
        protected_control: protected,
        protection_buffer_set: protected,
        private_data: false,
    };
    session.run(BufReader::with_capacity(MAX_LINE, reader));
}

/// One control line, or what went wrong reading it.
enum LineRead {
    Line(Vec<u8>),
    TooLong,
    Eof,
}

/// A control line being read: kept across reads, so a read timeout in the middle of a
/// line (a slow client, or the session's periodic wake-up during a transfer) loses nothing.
#[derive(Default)]
struct PartialLine {
    bytes: Vec<u8>,
    too_long: bool,
}

/// Reads a line of at most [`MAX_LINE`] bytes; a longer line is consumed and discarded, so
/// it costs no more memory than the cap.
fn read_line(
    reader: &mut BufReader<ControlReader>,
    partial: &mut PartialLine,
) -> io::Result<LineRead> {
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        let (used, done) = match available.iter().position(|&byte| byte == b'\n') {
            Some(end) => (end + 1, true),
            None => (available.len(), false),
        };
        if used == 0 {
            // EOF: whatever came before it is the last line.
            let last = std::mem::take(partial);
            return Ok(if last.too_long {
                LineRead::TooLong
            } else if last.bytes.is_empty() {
                LineRead::Eof
            } else {
                LineRead::Line(last.bytes)
            });
        }
        if !partial.too_long {
            partial.bytes.extend_from_slice(&available[..used]);
            if partial.bytes.len() > MAX_LINE {
                partial.too_long = true;
                partial.bytes = Vec::new();
            }
        }
        reader.consume(used);
        if done {
            let line = std::mem::take(partial);
            return Ok(if line.too_long {
                LineRead::TooLong
            } else {
                LineRead::Line(line.bytes)
            });
        }
    }
}

impl Session {
    fn run(&mut self, mut reader: BufReader<ControlReader>) {
        if self
            .send(Reply::new(Code::ServiceReady, "ftpd ready"))
            .is_err()
        {
            return;
        }
        let mut partial = PartialLine::default();
        loop {
            if self.config.sessions.is_shutting_down() && self.running.is_none() {
                let _ = self.send(shutting_down_reply());
                break;
            }
            let Some(wait) = self.time_left() else {
                let _ = self.send(self.timeout_reply());
                break;
            };
            let _ = reader.get_ref().socket().set_read_timeout(Some(wait));
            let line = match read_line(&mut reader, &mut partial) {
                Ok(LineRead::Line(line)) => line,
                Ok(LineRead::TooLong) => {
                    self.finish_transfer();
                    if self
                        .send(Reply::new(Code::SyntaxError, "command line too long"))
                        .is_err()
                    {
                        break;
                    }
                    continue;
                }
                Ok(LineRead::Eof) => break,
                // The deadline is checked at the top of the loop.
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    continue
                }
                Err(_) => break,
            };
            let flow = match command::parse(&line) {
                Ok(Command::Auth) => {
                    self.finish_transfer();
                    self.upgrade_to_tls(&mut reader)
                }
                Ok(command) => self.dispatch(command),
                Err(ParseError::Unknown(verb)) if HTTP_VERBS.contains(&verb.as_str()) => {
                    log::warn!("{}: HTTP request on the FTP port, closing", self.peer);
                    Flow::Quit
                }
                Err(error) => {
                    self.finish_transfer();
                    self.reply(error.reply())
                }
            };
            if matches!(flow, Flow::Quit) {
                break;
            }
        }
        self.finish_transfer();
    }

    /// How long the next read may wait: the login deadline before login, the idle deadline
    /// after; `None` once it has passed. A running transfer keeps the session alive.
    fn time_left(&mut self) -> Option<Duration> {
        const POLL: Duration = Duration::from_secs(1);
        if let Some(running) = &self.running {
            if !running.thread.is_finished() {
                return Some(POLL);
            }
            self.finish_transfer();
        }
        let deadline = match self.login {
            Login::LoggedIn { .. } => self.last_activity + self.config.idle_timeout,
            _ => self.connected_at + self.config.login_timeout,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    fn timeout_reply(&self) -> Reply {
        match self.login {
            Login::LoggedIn { .. } => Reply::new(
                Code::ServiceUnavailable,
                "idle timeout, closing control connection",
            ),
            _ => Reply::new(
                Code::ServiceUnavailable,
                "login timeout, closing control connection",
            ),
        }
    }

    /// Routes a command, with the rules for transfers in progress and login state.
    fn dispatch(&mut self, command: Command) -> Flow {
        // NOOP and STAT keep a connection open, not a session alive: idle clients are cut.
        if !matches!(command, Command::Noop | Command::Stat(None)) {
            self.last_activity = Instant::now();
        }
        if self.transfer_is_running() {
            match command {
                Command::Abor => return self.abort_transfer(),
                Command::Stat(None) => return self.reply(self.status()),
                _ => self.finish_transfer(),
            }
        }
        let tls_required = self.config.tls.as_ref().is_some_and(|tls| tls.required);
        if tls_required
            && !self.protected_control
            && matches!(command, Command::User(_) | Command::Pass(_))
        {
            return self.reply(Reply::new(
                Code::PolicyDenied,
                "this server requires TLS: send AUTH TLS before logging in",
            ));
        }
        if !command.allowed_before_login() && !matches!(self.login, Login::LoggedIn { .. }) {
            return self.reply(Reply::new(
                Code::NotLoggedIn,
                "Please login with USER and PASS",
            ));
        }
        match self.handle(command) {
            Ok(flow) => flow,
            Err(reply) => self.reply(reply),
        }
    }

    fn handle(&mut self, command: Command) -> Replied<Flow> {
        let reply = match command {
            Command::User(name) => {
                self.login = Login::AwaitingPass { user: name };
                Reply::new(Code::NeedPassword, "Password required")
            }
            Command::Pass(secret) => return self.log_in(&secret.0),
            Command::Acct => Reply::new(Code::Superfluous, "ACCT not needed"),
            Command::Quit => {
                let _ = self.send(Reply::new(Code::Closing, "Goodbye"));
                return Ok(Flow::Quit);
            }
            Command::Noop => Reply::new(Code::Ok, "NOOP ok"),
            Command::Syst => Reply::new(Code::SystemType, "UNIX Type: L8"),
            Command::Feat => {
                let tls_features = [" AUTH TLS", " PBSZ", " PROT"];
                let offered = FEATURES
                    .iter()
                    .chain(tls_features.iter().filter(|_| self.config.tls.is_some()))
                    .map(|feature| feature.as_bytes().to_vec())
                    .collect();
                Reply::multi(Code::SystemStatus, "Features:", offered, "End")
            }
            Command::Opts(option) => {
                let upper = option.to_ascii_uppercase();
                if upper == "UTF8 ON" || upper == "UTF8" {
                    Reply::new(Code::Ok, "Always in UTF8 mode")
                } else if upper.starts_with("MLST") {
                    Reply::new(Code::Ok, "MLST OPTS type;size;modify;perm;unique;")
                } else {
                    Reply::new(
                        Code::BadArguments,
                        format!("option '{option}' not understood"),
                    )
                }
            }
            Command::Help => Reply::multi(
                Code::Help,
                "The following commands are recognized:",
                vec![
                    b" ABOR ACCT ALLO APPE CDUP CWD  DELE EPRT EPSV FEAT HELP LIST MDTM MFMT"
                        .to_vec(),
                    b" MKD  MLSD MLST MODE NLST NOOP OPTS PASS PASV PORT PWD  QUIT REST RETR"
                        .to_vec(),
                    b" RMD  RNFR RNTO SIZE STAT STOR STOU STRU SYST TYPE USER XCUP XCWD XMKD"
                        .to_vec(),
                    b" XPWD XRMD".to_vec(),
                ],
                "Help OK",
            ),
            Command::Stat(None) => self.status(),
            Command::Stat(Some(path)) => return self.stat_path(&path),
            Command::Pwd => Reply::new(
                Code::PathCreated,
                format!(
                    "{} is the current directory",
                    quote_path(&self.cwd.to_bytes())
                ),
            ),
            Command::Cwd(path) => self.change_dir(self.cwd.resolve(&path))?,
            Command::Cdup => self.change_dir(self.cwd.parent())?,
            Command::Mkd(path) => {
                let (jail, target) = self.writable(&path)?;
                jail.create_dir(&target)
                    .map_err(|error| fs_error(&error, &target))?;
                Reply::new(
                    Code::PathCreated,
                    format!("{} created", quote_path(&target.to_bytes())),
                )
            }
            Command::Rmd(path) => {
                let (jail, target) = self.writable(&path)?;
                if target.is_root() {
                    return Err(Reply::new(
                        Code::FileUnavailable,
                        "cannot remove the root directory",
                    ));
                }
                jail.remove_dir(&target)
                    .map_err(|error| fs_error(&error, &target))?;
                Reply::new(
                    Code::FileActionOk,
                    format!("removed directory {}", target.display()),
                )
            }
            Command::Dele(path) => {
                let (jail, target) = self.writable(&path)?;
                let metadata = jail
                    .symlink_metadata(&target)
                    .map_err(|error| fs_error(&error, &target))?;
                if metadata.is_dir() {
                    return Err(Reply::new(
                        Code::FileUnavailable,
                        format!("{}: is a directory, use RMD", target.display()),
                    ));
                }
                jail.remove_file(&target)
                    .map_err(|error| fs_error(&error, &target))?;
                Reply::new(Code::FileActionOk, format!("deleted {}", target.display()))
            }
            Command::Rnfr(path) => {
                let (jail, source) = self.writable(&path)?;
                jail.symlink_metadata(&source)
                    .map_err(|error| fs_error(&error, &source))?;
                self.rename_from = Some(source);
                Reply::new(Code::PendingFurtherInfo, "ready for RNTO")
            }
            Command::Rnto(path) => {
                let Some(source) = self.rename_from.take() else {
                    return Err(Reply::new(Code::BadSequence, "RNFR first"));
                };
                let (jail, target) = self.writable(&path)?;
                jail.rename(&source, &target)
                    .map_err(|error| fs_error(&error, &target))?;
                Reply::new(
                    Code::FileActionOk,
                    format!("renamed to {}", target.display()),
                )
            }
            Command::Type(kind) => {
                self.transfer_type = kind;
                match kind {
                    TransferType::Ascii => Reply::new(Code::Ok, "Type set to A"),
                    TransferType::Image => Reply::new(Code::Ok, "Type set to I"),
                }
            }
            Command::Mode => Reply::new(Code::Ok, "Mode set to S"),
            Command::Stru => Reply::new(Code::Ok, "Structure set to F"),
            Command::Allo => Reply::new(Code::Superfluous, "ALLO not needed"),
            Command::Pasv => self.passive(false)?,
            Command::Epsv(EpsvMode::All) => {
                self.epsv_all = true;
                Reply::new(Code::Ok, "EPSV ALL ok")
            }
            Command::Epsv(EpsvMode::Open(protocol)) => {
                let wanted =
                    if self.local.ip().is_ipv4() || data::canonical(self.local.ip()).is_ipv4() {
                        1
                    } else {
                        2
                    };
                if protocol.is_some_and(|protocol| protocol != wanted) {
                    return Err(Reply::new(
                        Code::ProtocolNotSupported,
                        format!("Network protocol not supported, use ({wanted})"),
                    ));
                }
                self.passive(true)?
            }
            Command::Port(addr) | Command::Eprt(addr) => self.active(addr)?,
            Command::List(path) => return self.listing(path.as_deref(), ListingStyle::Long),
            Command::Nlst(path) => return self.listing(path.as_deref(), ListingStyle::Names),
            Command::Mlsd(path) => return self.listing(path.as_deref(), ListingStyle::Facts),
            Command::Mlst(path) => self.mlst(path.as_deref())?,
            Command::Size(path) => self.size(&path)?,
            Command::Mdtm(path) => {
                let (jail, target) = self.readable(&path);
                let metadata = jail
                    .metadata(&target)
                    .map_err(|error| fs_error(&error, &target))?;
                let entry = Entry::from_metadata(&metadata);
                Reply::new(
                    Code::FileStatus,
                    entry.modified.format("%Y%m%d%H%M%S").to_string(),
                )
            }
            Command::Mfmt(time, path) => {
                let (jail, target) = self.writable(&path)?;
                let when = Utc.from_utc_datetime(&time);
                jail.set_modified(&target, when.into())
                    .map_err(|error| fs_error(&error, &target))?;
                Reply::new(
                    Code::FileStatus,
                    format!(
                        "Modify={}; {}",
                        time.format("%Y%m%d%H%M%S"),
                        target.display()
                    ),
                )
            }
            Command::Retr(path) => return self.retrieve(&path),
            Command::Stor(path) => return self.store(&path, StoreMode::Replace),
            Command::Appe(path) => return self.store(&path, StoreMode::Append),
            Command::Stou => return self.store(b"", StoreMode::Unique),
            Command::Rest(offset) => {
                self.restart_at = offset;
                Reply::new(
                    Code::PendingFurtherInfo,
                    format!("Restarting at {offset}. Send STOR or RETR"),
                )
            }
            Command::Abor => {
                self.data_plan = DataPlan::None;
                Reply::new(Code::NoTransfer, "No transfer to abort")
            }
            // The main loop secures the connection itself; this is a repeated AUTH.
            Command::Auth => Reply::new(Code::BadSequence, "TLS is already on"),
            Command::Pbsz => {
                if !self.protected_control {
                    return Err(Reply::new(Code::BadSequence, "PBSZ needs AUTH TLS first"));
                }
                self.protection_buffer_set = true;
                Reply::new(Code::Ok, "PBSZ=0")
            }
            Command::Prot(private) => {
                if !self.protected_control || !self.protection_buffer_set {
                    return Err(Reply::new(
                        Code::BadSequence,
                        "PROT needs AUTH TLS and PBSZ first",
                    ));
                }
                let tls_required = self.config.tls.as_ref().is_some_and(|tls| tls.required);
                if !private && tls_required {
                    return Err(Reply::new(
                        Code::PolicyDenied,
                        "this server requires PROT P",
                    ));
                }
                self.private_data = private;
                Reply::new(
                    Code::Ok,
                    if private {
                        "Protection level set to P"
                    } else {
                        "Protection level set to C"
                    },
                )
            }
            Command::Ccc => Reply::new(
                Code::NotImplemented,
                "CCC not supported: the control connection stays encrypted",
            ),
        };
        Ok(self.reply(reply))
    }

    /// AUTH TLS: answer 234 in the clear, throw away anything the client sent after the
    /// AUTH line (it must not run as if it had been encrypted), then handshake.
    fn upgrade_to_tls(&mut self, reader: &mut BufReader<ControlReader>) -> Flow {
        let Some(settings) = self.config.tls.as_ref() else {
            return self.reply(Reply::new(
                Code::NotImplemented,
                "TLS is not configured on this server",
            ));
        };
        if self.protected_control {
            return self.reply(Reply::new(Code::BadSequence, "TLS is already on"));
        }
        if self
            .send(Reply::new(Code::AuthOk, "AUTH TLS ok, start the handshake"))
            .is_err()
        {
            return Flow::Quit;
        }
        let discarded = reader.buffer().len();
        reader.consume(discarded);
        if discarded > 0 {
            log::warn!(
                "{}: discarded {discarded} plaintext bytes sent after AUTH TLS",
                self.peer
            );
        }
        match settings.handshake(reader.get_ref().socket()) {
            Ok(connection) => {
                let shared: SharedTls = Arc::new(Mutex::new(connection));
                self.control.secure(Arc::clone(&shared));
                reader.get_mut().secure(shared);
                self.protected_control = true;
                Flow::Continue
            }
            Err(error) => {
                log::info!("{}: TLS handshake failed: {error}", self.peer);
                Flow::Quit
            }
        }
    }

    fn send(&self, reply: Reply) -> io::Result<()> {
        self.control.send(&reply)
    }

    /// Sends a reply; a control connection we cannot write to ends the session.
    fn reply(&self, reply: Reply) -> Flow {
        match self.send(reply) {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Quit,
        }
    }

    fn log_in(&mut self, password: &str) -> Replied<Flow> {
        let user = match std::mem::replace(&mut self.login, Login::AwaitingUser) {
            Login::AwaitingPass { user } => user,
            logged_in @ Login::LoggedIn { .. } => {
                self.login = logged_in;
                return Err(Reply::new(Code::BadSequence, "already logged in"));
            }
            Login::AwaitingUser => return Err(Reply::new(Code::BadSequence, "send USER first")),
        };
        let identity = self.config.users.authenticate(&user, password);
        let jail = identity.as_ref().map(|identity| {
            let home = VirtualPath::root().resolve(identity.home.as_bytes());
            if home.is_root() {
                Ok(Arc::clone(&self.config.jail))
            } else {
                self.config.jail.subdirectory(&home).map(Arc::new)
            }
        });
        match (identity, jail) {
            (Some(identity), Some(Ok(jail))) => {
                log::info!("{}: {} logged in", self.peer, identity.name);
                let text = match identity.access {
                    Access::ReadWrite => "Login successful",
                    Access::ReadOnly => "Login successful (read-only)",
                };
                self.login = Login::LoggedIn { identity, jail };
                self.cwd = VirtualPath::root();
                Ok(self.reply(Reply::new(Code::LoggedIn, text)))
            }
            (Some(identity), Some(Err(error))) => {
                log::error!("{}: home of {} unusable: {error}", self.peer, identity.name);
                Err(Reply::new(Code::NotLoggedIn, "home directory unavailable"))
            }
            _ => {
                self.failed_logins += 1;
                log::warn!(
                    "{}: failed login for {user:?} (attempt {})",
                    self.peer,
                    self.failed_logins
                );
                if self.failed_logins >= MAX_FAILED_LOGINS {
                    let _ = self.send(Reply::new(
                        Code::ServiceUnavailable,
                        "too many failed logins, closing",
                    ));
                    return Ok(Flow::Quit);
                }
                // Slow down guessing, a second more each time; only this session waits.
                std::thread::sleep(Duration::from_secs(u64::from(self.failed_logins)));
                Err(Reply::new(Code::NotLoggedIn, "Login incorrect"))
            }
        }
    }

    fn identity(&self) -> Option<&Identity> {
        match &self.login {
            Login::LoggedIn { identity, .. } => Some(identity),
            _ => None,
        }
    }

    fn jail(&self) -> Arc<Jail> {
        match &self.login {
            Login::LoggedIn { jail, .. } => Arc::clone(jail),
            // dispatch() refuses file commands before login.
            _ => Arc::clone(&self.config.jail),
        }
    }

    fn can_write(&self) -> bool {
        self.identity()
            .is_some_and(|identity| identity.access == Access::ReadWrite)
    }

    fn readable(&self, argument: &[u8]) -> (Arc<Jail>, VirtualPath) {
        (self.jail(), self.cwd.resolve(argument))
    }

    fn writable(&self, argument: &[u8]) -> Replied<(Arc<Jail>, VirtualPath)> {
        if !self.can_write() {
            return Err(Reply::new(
                Code::FileUnavailable,
                "permission denied: this login is read-only",
            ));
        }
        Ok(self.readable(argument))
    }

    fn change_dir(&mut self, target: VirtualPath) -> Replied<Reply> {
        let metadata = self
            .jail()
            .metadata(&target)
            .map_err(|error| fs_error(&error, &target))?;
        if !metadata.is_dir() {
            return Err(Reply::new(
                Code::FileUnavailable,
                format!("{}: not a directory", target.display()),
            ));
        }
        self.cwd = target;
        Ok(Reply::new(
            Code::FileActionOk,
            format!("directory changed to {}", self.cwd.display()),
        ))
    }

    fn status(&self) -> Reply {
        let mut lines = vec![format!(" connected from {}", self.peer).into_bytes()];
        match self.identity() {
            Some(identity) => lines.push(format!(" logged in as {}", identity.name).into_bytes()),
            None => lines.push(b" not logged in".to_vec()),
        }
        lines.push(
            match self.transfer_type {
                TransferType::Ascii => " TYPE: ASCII",
                TransferType::Image => " TYPE: BINARY",
            }
            .as_bytes()
            .to_vec(),
        );
        if let Some(running) = &self.running {
            lines.push(format!(" transfer in progress: {}", running.what).into_bytes());
        } else {
            lines.push(b" no transfer in progress".to_vec());
        }
        Reply::multi(
            Code::SystemStatus,
            "FTP server status:",
            lines,
            "End of status",
        )
    }

    /// STAT with a path: the listing over the control connection, streamed line by line
    /// so a huge directory costs no more memory than a buffer.
    fn stat_path(&self, argument: &[u8]) -> Replied<Flow> {
        let (jail, target) = self.readable(argument);
        jail.metadata(&target)
            .map_err(|error| fs_error(&error, &target))?;
        let writer = self.control.lock();
        let sink = BufWriter::with_capacity(64 * 1024, ControlSink(&writer));
        let first = format!("Status of {}:", target.display());
        let sent = MultiLineWriter::start(sink, Code::FileStatus, &first).and_then(|mut reply| {
            let listed = write_listing(&jail, &target, ListingStyle::Long, false, &mut |line| {
                reply.line(line)
            });
            reply.finish(match listed {
                Ok(()) => "End of status",
                Err(_) => "End of status (listing cut short)",
            })
        });
        Ok(if sent.is_ok() {
            Flow::Continue
        } else {
            Flow::Quit
        })
    }

    fn mlst(&self, argument: Option<&[u8]>) -> Replied<Reply> {
        let (jail, target) = self.readable(argument.unwrap_or(b"."));
        let metadata = jail
            .metadata(&target)
            .map_err(|error| fs_error(&error, &target))?;
        let mut line = b" ".to_vec();
        listing::write_facts(
            &mut line,
            target.display().as_ref(),
            &Entry::from_metadata(&metadata),
            self.can_write(),
        );
        Ok(Reply::multi(
            Code::FileActionOk,
            format!("Listing {}", target.display()),
            vec![line],
            "End",
        ))
    }

    fn size(&self, argument: &[u8]) -> Replied<Reply> {
        let (jail, target) = self.readable(argument);
        let mut file = jail
            .open_read(&target)
            .map_err(|error| fs_error(&error, &target))?;
        let length = file
            .metadata()
            .map_err(|error| fs_error(&error, &target))?
            .len();
        let size = match self.transfer_type {
            TransferType::Image => length,
            TransferType::Ascii => {
                transfer::crlf_size(&mut file).map_err(|error| fs_error(&error, &target))?
            }
        };
        Ok(Reply::new(Code::FileStatus, size.to_string()))
    }

    fn passive(&mut self, extended: bool) -> Replied<Reply> {
        if self.epsv_all && !extended {
            return Err(Reply::new(
                Code::BadSequence,
                "EPSV ALL in effect: use EPSV",
            ));
        }
        let local_ip = data::canonical(self.local.ip());
        let listener = data::listen_passive(local_ip, self.config.passive_ports.as_ref()).map_err(
            |error| {
                Reply::new(
                    Code::CantOpenData,
                    format!("cannot open passive port: {error}"),
                )
            },
        )?;
        let port = listener
            .local_addr()
            .map_err(|error| {
                Reply::new(
                    Code::CantOpenData,
                    format!("cannot open passive port: {error}"),
                )
            })?
            .port();
        self.data_plan = DataPlan::Passive(listener);
        if extended {
            return Ok(Reply::new(
                Code::ExtendedPassiveMode,
                format!("Entering Extended Passive Mode (|||{port}|)"),
            ));
        }
        let advertised = self.config.passive_address.unwrap_or(local_ip);
        let IpAddr::V4(v4) = advertised else {
            self.data_plan = DataPlan::None;
            return Err(Reply::new(Code::CantOpenData, "PASV needs IPv4: use EPSV"));
        };
        let [a, b, c, d] = v4.octets();
        Ok(Reply::new(
            Code::PassiveMode,
            format!(
                "Entering Passive Mode ({a},{b},{c},{d},{},{})",
                port >> 8,
                port & 0xFF
            ),
        ))
    }

    fn active(&mut self, addr: SocketAddr) -> Replied<Reply> {
        if self.epsv_all {
            return Err(Reply::new(
                Code::BadSequence,
                "EPSV ALL in effect: use EPSV",
            ));
        }
        if data::canonical(addr.ip()) != data::canonical(self.peer.ip()) && !self.config.allow_fxp {
            return Err(Reply::new(
                Code::ParameterNotImplemented,
                format!(
                    "active mode only to your own address {}, not {}",
                    self.peer.ip(),
                    addr.ip()
                ),
            ));
        }
        if addr.port() < 1024 {
            return Err(Reply::new(
                Code::ParameterNotImplemented,
                format!(
                    "active mode to port {} refused: use 1024 or above",
                    addr.port()
                ),
            ));
        }
        self.data_plan = DataPlan::Active(addr);
        Ok(Reply::new(Code::Ok, "PORT command successful"))
    }

    /// The data connection for the next transfer (one use per PASV/PORT).
    fn open_data(&mut self) -> Replied<TcpStream> {
        let tls_required = self.config.tls.as_ref().is_some_and(|tls| tls.required);
        if tls_required && !self.private_data {
            return Err(Reply::new(
                Code::ProtocolNotSupported,
                "this server requires protected data connections: send PBSZ 0 and PROT P",
            ));
        }
        let stream = match std::mem::take(&mut self.data_plan) {
            DataPlan::None => {
                return Err(Reply::new(
                    Code::CantOpenData,
                    "use PASV, EPSV, PORT or EPRT first",
                ))
            }
            DataPlan::Passive(listener) => {
                data::accept_from(&listener, self.peer.ip(), self.config.data_timeout)
            }
            DataPlan::Active(addr) => data::connect_to(addr, self.config.data_timeout),
        };
        let stream = stream.map_err(|error| {
            Reply::new(
                Code::CantOpenData,
                format!("cannot open data connection: {error}"),
            )
        })?;
        let _ = stream.set_read_timeout(Some(self.config.stall_timeout));
        let _ = stream.set_write_timeout(Some(self.config.stall_timeout));
        Ok(stream)
    }

    fn listing(&mut self, argument: Option<&[u8]>, style: ListingStyle) -> Replied<Flow> {
        let (jail, target) = self.readable(argument.unwrap_or(b""));
        let metadata = jail
            .metadata(&target)
            .map_err(|error| fs_error(&error, &target))?;
        if style == ListingStyle::Facts && !metadata.is_dir() {
            return Err(Reply::new(
                Code::FileUnavailable,
                format!("{}: not a directory", target.display()),
            ));
        }
        let writable = self.can_write();
        let data = self.open_data()?;
        self.send_or_fail(Reply::new(
            Code::OpeningData,
            "Here comes the directory listing",
        ))?;
        let verb = match style {
            ListingStyle::Long => "LIST",
            ListingStyle::Names => "NLST",
            ListingStyle::Facts => "MLSD",
        };
        let record = self.record(verb, &target, false);
        self.start_transfer(data, record, move |data, _aborted| {
            let mut out = BufWriter::with_capacity(64 * 1024, data);
            let mut write_line = |line: &[u8]| {
                out.write_all(line)?;
                out.write_all(b"\r\n")
            };
            let result = write_listing(&jail, &target, style, writable, &mut write_line)
                .and_then(|()| out.flush());
            TransferEnd::from_network(result.map(|()| 0), "Directory send OK")
        });
        Ok(Flow::Continue)
    }

    fn retrieve(&mut self, argument: &[u8]) -> Replied<Flow> {
        let offset = std::mem::take(&mut self.restart_at);
        let (jail, target) = self.readable(argument);
        let mut file = jail
            .open_read(&target)
            .map_err(|error| fs_error(&error, &target))?;
        let length = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))
                .map_err(|error| fs_error(&error, &target))?;
        }
        let data = self.open_data()?;
        let kind = self.transfer_type;
        let mode = if kind == TransferType::Ascii {
            "ASCII"
        } else {
            "BINARY"
        };
        self.send_or_fail(Reply::new(
            Code::OpeningData,
            format!(
                "Opening {mode} mode data connection for {} ({length} bytes)",
                target.display()
            ),
        ))?;
        let record = self.record("RETR", &target, false);
        self.start_transfer(data, record, move |data, _aborted| {
            let sent = match (kind, data) {
                // File to socket in the clear: sendfile, no copy through user space.
                (TransferType::Image, DataStream::Plain(socket)) => {
                    transfer::send_file(&mut file, socket)
                }
                (TransferType::Image, data) => io::copy(&mut file, data),
                (TransferType::Ascii, data) => transfer::copy_to_crlf(&mut file, data),
            };
            TransferEnd::from_network(sent, "Transfer complete")
        });
        Ok(Flow::Continue)
    }

    fn store(&mut self, argument: &[u8], mode: StoreMode) -> Replied<Flow> {
        let offset = std::mem::take(&mut self.restart_at);
        let jail = self.jail();
        if !self.can_write() {
            return Err(Reply::new(
                Code::FileUnavailable,
                "permission denied: this login is read-only",
            ));
        }
        let target = match mode {
            StoreMode::Unique => self.cwd.clone(),
            _ => self.cwd.resolve(argument),
        };
        if mode != StoreMode::Unique && target.is_root() {
            return Err(Reply::new(
                Code::NameNotAllowed,
                "cannot store over a directory",
            ));
        }
        let upload = Upload::open(&jail, &target, mode, offset)
            .map_err(|error| fs_error(&error, &target))?;
        let data = match self.open_data() {
            Ok(data) => data,
            Err(reply) => {
                upload.discard(&jail);
                return Err(reply);
            }
        };
        let shown = upload.final_path.display();
        let opening = match mode {
            StoreMode::Unique => format!(
                "FILE: {}",
                upload
                    .final_path
                    .file_name()
                    .map_or(shown.clone(), |name| name.to_string_lossy().into_owned())
            ),
            _ => format!("Ok to send data for {shown}"),
        };
        if let Err(reply) = self.send_or_fail(Reply::new(Code::OpeningData, opening)) {
            upload.discard(&jail);
            return Err(reply);
        }
        let kind = self.transfer_type;
        let control = self.control_probe();
        let verb = match mode {
            StoreMode::Replace => "STOR",
            StoreMode::Append => "APPE",
            StoreMode::Unique => "STOU",
        };
        let record = self.record(verb, &upload.final_path, true);
        self.start_transfer(data, record, move |data, aborted| {
            let mut upload = upload;
            let received = match (kind, data) {
                // Socket to file in the clear: splice, one copy instead of two.
                (TransferType::Image, DataStream::Plain(socket)) => {
                    transfer::receive_file(socket, &mut upload.file)
                }
                (TransferType::Image, data) => transfer::copy_exact(data, &mut upload.file),
                (TransferType::Ascii, data) => transfer::copy_from_crlf(data, &mut upload.file),
            };
            let received = received.and_then(|count| {
                // An EOF on the data connection also happens when the client dies or ABOR
                // shuts it down: only a live client's EOF ends a complete upload.
                if aborted.load(Ordering::Acquire) {
                    return Err(io::Error::new(ErrorKind::Interrupted, "aborted"));
                }
                if control.as_ref().is_some_and(data::peer_has_closed) {
                    return Err(io::Error::new(
                        ErrorKind::ConnectionAborted,
                        "client left during upload",
                    ));
                }
                Ok(count)
            });
            match received {
                Ok(count) => match upload.commit(&jail) {
                    Ok(()) => (
                        TransferEnd::Complete(format!("Transfer complete: {shown}")),
                        count,
                    ),
                    Err(error) => (TransferEnd::Local(fs_error(&error, &upload.final_path)), 0),
                },
                Err(error) => {
                    upload.discard(&jail);
                    (TransferEnd::from_upload_error(&error), 0)
                }
            }
        });
        Ok(Flow::Continue)
    }

    fn control_probe(&self) -> Option<TcpStream> {
        self.control.probe()
    }

    /// Sends a preliminary reply, turning a dead control connection into an error.
    fn send_or_fail(&self, reply: Reply) -> Replied<()> {
        self.send(reply).map_err(|error| {
            Reply::new(
                Code::ServiceUnavailable,
                format!("control connection failed: {error}"),
            )
        })
    }

    /// What the logs will say about a transfer of `path` by this session's user.
    fn record(&self, verb: &'static str, path: &VirtualPath, incoming: bool) -> TransferRecord {
        let (user, anonymous) = match self.identity() {
            Some(identity) => (identity.name.clone(), identity.name == "anonymous"),
            None => (String::from("-"), true),
        };
        TransferRecord {
            verb,
            path: path.display(),
            incoming,
            ascii: self.transfer_type == TransferType::Ascii,
            user,
            anonymous,
        }
    }

    /// Runs `work` on a transfer thread that sends the final reply itself, then logs it.
    fn start_transfer<F>(&mut self, data: TcpStream, record: TransferRecord, work: F)
    where
        F: FnOnce(&mut DataStream, &AtomicBool) -> (TransferEnd, u64) + Send + 'static,
    {
        let aborted = Arc::new(AtomicBool::new(false));
        // One handle lets ABOR shut the connection down; the other closes it when the work
        // is done, since the first keeps the socket open until the session lets go of it.
        let handles = data
            .try_clone()
            .and_then(|first| Ok((first, data.try_clone()?)));
        let (data_handle, closer) = match handles {
            Ok(handles) => handles,
            Err(error) => {
                let _ = self.send(Reply::new(
                    Code::CantOpenData,
                    format!("data connection unusable: {error}"),
                ));
                return;
            }
        };
        let control = Arc::clone(&self.control);
        let config = Arc::clone(&self.config);
        let thread_aborted = Arc::clone(&aborted);
        let transferring = Arc::clone(&self.transferring);
        let peer = self.peer;
        let what = format!("{} {}", record.verb, record.path);
        let tls = if self.private_data {
            self.config.tls.as_ref().map(|_| Arc::clone(&self.config))
        } else {
            None
        };
        transferring.store(true, Ordering::Release);
        let spawned = std::thread::Builder::new()
            .stack_size(THREAD_STACK_SIZE)
            .spawn(move || {
                let started = Instant::now();
                let secured = match tls.as_ref().and_then(|config| config.tls.as_ref()) {
                    None => Ok(DataStream::Plain(data)),
                    Some(settings) => settings
                        .secure_data(data, record.incoming)
                        .map(|stream| DataStream::Tls(Box::new(stream))),
                };
                let (end, bytes) = match secured {
                    Ok(mut data) => {
                        let (end, bytes) = work(&mut data, &thread_aborted);
                        let _ = data.finish();
                        (end, bytes)
                    }
                    Err(error) if error.kind() == ErrorKind::PermissionDenied => (
                        TransferEnd::Local(Reply::new(
                            Code::ProtocolNotSupported,
                            format!("TLS session reuse required: {error}"),
                        )),
                        0,
                    ),
                    Err(error) => (
                        TransferEnd::Broken(format!("TLS on the data connection failed: {error}")),
                        0,
                    ),
                };
                let _ = closer.shutdown(std::net::Shutdown::Both);
                let end = if thread_aborted.load(Ordering::Acquire)
                    && !matches!(end, TransferEnd::Complete(_))
                {
                    TransferEnd::Aborted
                } else {
                    end
                };
                let _ = control.send(&end.reply());
                record.log(&config, peer, &end, bytes, started.elapsed());
                transferring.store(false, Ordering::Release);
                if config.sessions.is_shutting_down() {
                    control.close_with(&shutting_down_reply());
                }
            });
        match spawned {
            Ok(thread) => {
                self.running = Some(RunningTransfer {
                    thread,
                    aborted,
                    data: data_handle,
                    what,
                })
            }
            Err(error) => {
                self.transferring.store(false, Ordering::Release);
                log::error!("{}: cannot start transfer thread: {error}", self.peer);
                let _ = data_handle.shutdown(std::net::Shutdown::Both);
                let _ = self.send(Reply::new(Code::LocalError, "server busy, try again"));
            }
        }
    }

    fn transfer_is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Waits for the running transfer (if any) to send its final reply.
    fn finish_transfer(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.thread.join();
            // The end of a transfer counts as activity, however long it took.
            self.last_activity = Instant::now();
        }
    }

    /// ABOR during a transfer: stop it (its thread replies 426), then 226.
    fn abort_transfer(&mut self) -> Flow {
        let Some(running) = self.running.take() else {
            return self.reply(Reply::new(Code::NoTransfer, "No transfer to abort"));
        };
        if running.thread.is_finished() {
            let _ = running.thread.join();
            return self.reply(Reply::new(Code::NoTransfer, "No transfer to abort"));
        }
        running.aborted.store(true, Ordering::Release);
        let _ = running.data.shutdown(std::net::Shutdown::Both);
        let _ = running.thread.join();
        self.reply(Reply::new(Code::TransferComplete, "ABOR successful"))
    }
}

/// How a listing is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListingStyle {
    /// LIST: `ls -l` lines.
    Long,
    /// NLST: names only.
    Names,
    /// MLSD: RFC 3659 facts.
    Facts,
}

/// Writes a directory's listing (or one line for a file) through `emit`, streaming entry by
/// entry. Names with CR or LF are left out; NLST stats nothing, the others one stat an entry
/// (two for a symlink).
fn write_listing(
    jail: &Jail,
    target: &VirtualPath,
    style: ListingStyle,
    writable: bool,
    emit: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let now = Utc::now();
    let metadata = jail.metadata(target)?;
    let mut line = Vec::with_capacity(256);
    let format = |line: &mut Vec<u8>, name: &std::ffi::OsStr, entry: &Entry| {
        line.clear();
        match style {
            ListingStyle::Long => listing::write_ls_line(line, name, entry, now),
            ListingStyle::Names => line.extend_from_slice(name.as_bytes()),
            ListingStyle::Facts => listing::write_facts(line, name, entry, writable),
        }
    };
    if !metadata.is_dir() {
        let name: OsString = target
            .file_name()
            .map(ToOwned::to_owned)
            .unwrap_or_default();
        format(&mut line, &name, &Entry::from_metadata(&metadata));
        return emit(&line);
    }
    for entry in jail.read_dir(target)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        if !listing::is_listable(&name) {
            continue;
        }
        if style == ListingStyle::Names {
            emit(name.as_bytes())?;
            continue;
        }
        let Ok(own) = entry.metadata() else { continue };
        let mut facts = Entry::from_metadata(&own);
        if facts.kind == Kind::Symlink {
            // Show what a link inside the jail points at; one leading outside stays a link.
            if let Ok(target_metadata) = jail.metadata(&target.child(&name)) {
                facts = Entry::from_metadata(&target_metadata);
            }
        }
        format(&mut line, &name, &facts);
        emit(&line)?;
    }
    Ok(())
}

/// How STOR, APPE and STOU write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StoreMode {
    Replace,
    Append,
    Unique,
}

/// An upload in progress: where bytes go now and where they end up.
struct Upload {
    file: File,
    /// The temporary file to rename over the target, for a plain STOR.
    temporary: Option<VirtualPath>,
    final_path: VirtualPath,
    /// Remove `final_path` itself if the upload fails (STOU's fresh file).
    remove_on_failure: bool,
}

impl Upload {
    fn open(jail: &Jail, target: &VirtualPath, mode: StoreMode, offset: u64) -> io::Result<Upload> {
        match mode {
            StoreMode::Replace if offset == 0 => {
                if jail
                    .metadata(target)
                    .is_ok_and(|metadata| metadata.is_dir())
                {
                    return Err(io::Error::new(ErrorKind::IsADirectory, "is a directory"));
                }
                let (temporary, file) = jail.create_upload(&target.parent())?;
                Ok(Upload {
                    file,
                    temporary: Some(temporary),
                    final_path: target.clone(),
                    remove_on_failure: false,
                })
            }
            StoreMode::Replace => {
                // Resuming: write into the existing file at the offset, as clients expect.
                let mut file = jail.open_write_in_place(target)?;
                file.set_len(offset)?;
                file.seek(SeekFrom::Start(offset))?;
                Ok(Upload {
                    file,
                    temporary: None,
                    final_path: target.clone(),
                    remove_on_failure: false,
                })
            }
            StoreMode::Append => Ok(Upload {
                file: jail.open_append(target)?,
                temporary: None,
                final_path: target.clone(),
                remove_on_failure: false,
            }),
            StoreMode::Unique => {
                let directory = target;
                for serial in 0..1000u32 {
                    let name = OsString::from(format!("ftpd.{}.{serial}", std::process::id()));
                    let path = directory.child(&name);
                    match jail.create_new(&path) {
                        Ok(file) => {
                            return Ok(Upload {
                                file,
                                temporary: None,
                                final_path: path,
                                remove_on_failure: true,
                            })
                        }
                        Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
                        Err(error) => return Err(error),
                    }
                }
                Err(io::Error::new(
                    ErrorKind::AlreadyExists,
                    "no free unique name",
                ))
            }
        }
    }

    /// Makes a complete upload visible: the temporary file replaces the target atomically.
    fn commit(&mut self, jail: &Jail) -> io::Result<()> {
        self.file.flush()?;
        if let Some(temporary) = &self.temporary {
            if let Err(error) = jail.rename(temporary, &self.final_path) {
                let _ = jail.remove_file(temporary);
                return Err(error);
            }
        }
        Ok(())
    }

    /// Drops a failed upload, leaving the old file as it was.
    fn discard(self, jail: &Jail) {
        if let Some(temporary) = &self.temporary {
            let _ = jail.remove_file(temporary);
        } else if self.remove_on_failure {
            let _ = jail.remove_file(&self.final_path);
        }
    }
}

/// Who moved what, for the log line and the xferlog entry each transfer gets.
#[derive(Debug)]
struct TransferRecord {
    verb: &'static str,
    path: String,
    incoming: bool,
    ascii: bool,
    user: String,
    anonymous: bool,
}

impl TransferRecord {
    fn log(
        &self,
        config: &ServerConfig,
        peer: SocketAddr,
        end: &TransferEnd,
        bytes: u64,
        took: Duration,
    ) {
        let outcome = match end {
            TransferEnd::Complete(_) => "complete".to_owned(),
            TransferEnd::Aborted => "aborted".to_owned(),
            TransferEnd::Broken(why) => format!("broken: {why}"),
            TransferEnd::Local(reply) => format!(
                "failed: {}",
                String::from_utf8_lossy(&reply.to_bytes()).trim_end()
            ),
        };
        log::info!(
            "transfer {peer} {} {} {} {bytes} bytes {:.3} s {outcome}",
            self.user,
            self.verb,
            self.path,
            took.as_secs_f64()
        );
        let is_file_transfer = matches!(self.verb, "RETR" | "STOR" | "APPE" | "STOU");
        if let (Some(xferlog), true) = (&config.xferlog, is_file_transfer) {
            let line =
                self.xferlog_line(peer, matches!(end, TransferEnd::Complete(_)), bytes, took);
            let mut file = xferlog
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Err(error) = file.write_all(line.as_bytes()) {
                log::warn!("cannot write xferlog: {error}");
            }
        }
    }

    /// One line of the wu-ftpd xferlog format: time, seconds, host, bytes, file, type,
    /// action, direction, access mode, user, service, auth method, auth id, status.
    fn xferlog_line(&self, peer: SocketAddr, complete: bool, bytes: u64, took: Duration) -> String {
        let path: String = self
            .path
            .chars()
            .map(|c| if c.is_control() { '_' } else { c })
            .collect();
        format!(
            "{} {} {} {bytes} {path} {} _ {} {} {} ftp 0 * {}\n",
            chrono::Local::now().format("%a %b %e %H:%M:%S %Y"),
            took.as_secs().max(1),
            data::canonical(peer.ip()),
            if self.ascii { 'a' } else { 'b' },
            if self.incoming { 'i' } else { 'o' },
            if self.anonymous { 'a' } else { 'r' },
            self.user,
            if complete { 'c' } else { 'i' },
        )
    }
}

/// How a transfer ended, and so its final reply.
#[derive(Debug)]
enum TransferEnd {
    Complete(String),
    Aborted,
    Broken(String),
    Local(Reply),
}

impl TransferEnd {
    fn from_network(result: io::Result<u64>, done: &str) -> (TransferEnd, u64) {
        match result {
            Ok(bytes) => (TransferEnd::Complete(done.to_owned()), bytes),
            Err(error) => (TransferEnd::Broken(error.to_string()), 0),
        }
    }

    fn from_upload_error(error: &io::Error) -> TransferEnd {
        match error.kind() {
            ErrorKind::StorageFull => TransferEnd::Local(Reply::new(
                Code::InsufficientStorage,
                "insufficient storage space; upload discarded",
            )),
            ErrorKind::FileTooLarge => TransferEnd::Local(Reply::new(
                Code::ExceededStorage,
                "file too large; upload discarded",
            )),
            _ => TransferEnd::Broken(error.to_string()),
        }
    }

    fn reply(&self) -> Reply {
        match self {
            TransferEnd::Complete(text) => Reply::new(Code::TransferComplete, text.clone()),
            TransferEnd::Aborted => {
                Reply::new(Code::TransferAborted, "Connection closed; transfer aborted")
            }
            TransferEnd::Broken(why) => Reply::new(
                Code::TransferAborted,
                format!("Connection closed; transfer aborted: {why}"),
            ),
            TransferEnd::Local(reply) => reply.clone(),
        }
    }
}

/// The reply for a file-system error on `path`.
fn fs_error(error: &io::Error, path: &VirtualPath) -> Reply {
    let shown = path.display();
    match error.kind() {
        ErrorKind::NotFound => Reply::new(
            Code::FileUnavailable,
            format!("{shown}: no such file or directory"),
        ),
        ErrorKind::PermissionDenied => {
            Reply::new(Code::FileUnavailable, format!("{shown}: permission denied"))
        }
        ErrorKind::AlreadyExists => {
            Reply::new(Code::FileUnavailable, format!("{shown}: already exists"))
        }
        ErrorKind::NotADirectory => {
            Reply::new(Code::FileUnavailable, format!("{shown}: not a directory"))
        }
        ErrorKind::IsADirectory => {
            Reply::new(Code::FileUnavailable, format!("{shown}: is a directory"))
        }
        ErrorKind::DirectoryNotEmpty => Reply::new(
            Code::FileUnavailable,
            format!("{shown}: directory not empty"),
        ),
        ErrorKind::StorageFull => {
            Reply::new(Code::InsufficientStorage, "insufficient storage space")
        }
        ErrorKind::FileTooLarge => Reply::new(Code::ExceededStorage, "exceeded storage allocation"),
        _ => Reply::new(Code::LocalError, format!("{shown}: local error: {error}")),
    }
}
