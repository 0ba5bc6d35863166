//! Session: one control connection, from the 220 greeting to QUIT. The run loop reads lines
//! against a deadline and hands each command to one `match`; the work lives in rooms of its
//! own: `login` (USER/PASS and what a login may do), `protection` (AUTH TLS, PBSZ, PROT),
//! `files` (paths and names), `data_channel` (PASV/EPSV/PORT/EPRT), `transfers` (the
//! transfer thread), `listings` (what LIST, NLST and MLSD show).

mod data_channel;
mod files;
mod listings;
mod login;
mod protection;
mod transfers;

use std::io::{BufReader, ErrorKind};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::accounts::{Accounts, SessionSlot};
use crate::command::{self, Command, EpsvMode, ParseError, TransferType};
use crate::config::Config;
use crate::control::{read_line, Control, ControlReader, LineRead, PartialLine, MAX_LINE};
use crate::data::{self, DataPlan};
use crate::defender::{Defender, Offence};
use crate::events::{Event, EventKind, Events};
use crate::metrics::Metrics;
use crate::path::VirtualPath;
use crate::proxy::Origin;
use crate::registry::{shutting_down_reply, Registry};
use crate::reply::{Code, Reply};
use crate::storage::Storage;
use crate::upload::StoreMode;
use crate::users::{Identity, VerificationGate};
use crate::xferlog::Xferlog;

use listings::ListingStyle;
use transfers::RunningTransfer;

/// Failed PASS attempts before the connection is closed.
pub const MAX_FAILED_LOGINS: u32 = 3;

/// Stack for session and transfer threads.
pub const THREAD_STACK_SIZE: usize = 256 * 1024;

/// How often a session with a transfer running looks up from its read.
const TRANSFER_POLL: Duration = Duration::from_secs(1);

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

/// What a session reads: the settings it started with (a reload makes a new context for new
/// sessions), and beside them the live state every generation shares.
#[derive(Debug)]
pub struct Context {
    /// Settings, fixed for this session's life.
    pub config: Arc<Config>,
    /// The live sessions, for a graceful shutdown.
    pub registry: Arc<Registry>,
    /// The transfer log, when one was asked for (reopened by each reload).
    pub xferlog: Option<Arc<Xferlog>>,
    /// Bounds concurrent password checks.
    pub verification: Arc<VerificationGate>,
    /// The counters `--metrics` serves.
    pub metrics: Arc<Metrics>,
    /// Scores and bans addresses across sessions; one for the process, kept by reloads.
    pub defender: Arc<Defender>,
    /// Per-user sessions, quota usage and rate limiters; one for the process.
    pub accounts: Arc<Accounts>,
    /// The event hooks' queue and workers (this generation's).
    pub events: Events,
}

impl Context {
    /// Scores an offence by `ip` (and counts it); true when it got the address banned.
    pub fn offend(&self, ip: IpAddr, offence: Offence) -> bool {
        self.metrics.offence(offence);
        self.defender.offend(&self.config.defender, ip, offence)
    }
}

/// Where the login stands.
enum Login {
    AwaitingUser,
    AwaitingPass {
        user: String,
    },
    LoggedIn {
        identity: Identity,
        storage: Arc<Storage>,
        /// This session's place in its user's `max-sessions` count.
        _slot: SessionSlot,
    },
}

/// Where TLS protection stands (RFC 4217): the control connection, then PBSZ, then PROT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protection {
    /// No TLS.
    Clear,
    /// AUTH TLS done; PBSZ not yet sent.
    Secured,
    /// PBSZ sent (or implicit TLS); data connections are private after PROT P.
    Negotiated { private_data: bool },
}

/// What the main loop does after a command.
enum Flow {
    Continue,
    Quit,
}

/// One client's session state.
pub struct Session {
    /// The registry's number for this session, in its structured log fields.
    id: u64,
    context: Arc<Context>,
    control: Arc<Control>,
    /// The client: the peer, or the one a trusted balancer's PROXY header names. Every
    /// check of an address and every log line uses it.
    peer: SocketAddr,
    /// Our end of the control connection: passive ports are opened on its address.
    local: SocketAddr,
    /// The address the client connected to, as it sees it (the balancer's front, when a
    /// header names it): what PASV advertises unless told otherwise.
    seen_local: IpAddr,
    login: Login,
    failed_logins: u32,
    cwd: VirtualPath,
    transfer_type: TransferType,
    data_plan: DataPlan,
    epsv_all: bool,
    /// REST's offset, for the next RETR or STOR.
    restart_at: Option<u64>,
    /// RNFR's path; any command but RNTO drops it.
    rename_from: Option<VirtualPath>,
    /// The transfer running on its own thread, if any: the one record that one is.
    running: Option<RunningTransfer>,
    /// Mirrors `running` for the registry, which lets a shutdown wait for transfers.
    transferring: Arc<AtomicBool>,
    connected_at: Instant,
    /// When the last complete command other than NOOP or STAT arrived.
    last_command: Instant,
    protection: Protection,
}

/// A result whose error is already the reply to send.
type Replied<T> = Result<T, Reply>;

/// Serves one control connection until QUIT, EOF, a timeout or a failed write.
/// With `implicit_tls`, the connection is TLS from its first byte (port 990 style).
pub fn serve(stream: TcpStream, origin: Origin, context: Arc<Context>, implicit_tls: bool) {
    let connected_at = Instant::now();
    let config = &context.config;
    let peer = origin.client;
    let local = stream.local_addr().unwrap_or(peer);
    let seen_local = data::canonical(origin.destination.unwrap_or(local).ip());
    // A 150 and its 226 go out back to back; Nagle would hold the 226 for the client's
    // delayed ACK (about 40 ms), which capped small-file transfers at ~25 files/s.
    let _ = stream.set_nodelay(true);
    let control = Arc::new(Control::new(stream, config.timeouts.stall));
    let login_deadline = connected_at + config.timeouts.login;
    let mut protection = Protection::Clear;
    if implicit_tls {
        let Some(settings) = config.tls.as_ref() else {
            return;
        };
        match settings.handshake(control.socket(), login_deadline) {
            Ok(connection) => {
                control.secure(Arc::new(Mutex::new(connection)));
                protection = Protection::Negotiated {
                    private_data: false,
                };
            }
            Err(error) => {
                log::info!("{peer}: TLS handshake failed: {error}");
                context.metrics.tls_failure();
                return;
            }
        }
    }
    let transferring = Arc::new(AtomicBool::new(false));
    let registry_owner = Arc::clone(&context);
    let _registration = registry_owner
        .registry
        .register(Arc::clone(&control), Arc::clone(&transferring));
    let reader = ControlReader::new(Arc::clone(&control), login_deadline);
    let mut session = Session {
        id: _registration.id(),
        context,
        control,
        peer,
        local,
        seen_local,
        login: Login::AwaitingUser,
        failed_logins: 0,
        cwd: VirtualPath::root(),
        transfer_type: TransferType::Image,
        data_plan: DataPlan::None,
        epsv_all: false,
        restart_at: None,
        rename_from: None,
        running: None,
        transferring,
        connected_at,
        last_command: connected_at,
        protection,
    };
    session.run(BufReader::with_capacity(MAX_LINE, reader));
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
            if self.context.registry.is_shutting_down() && self.running.is_none() {
                let _ = self.send(shutting_down_reply());
                break;
            }
            self.data_plan.expire(Instant::now());
            let Some(wake) = self.next_wake() else {
                let _ = self.send(self.timeout_reply());
                break;
            };
            reader.get_mut().set_deadline(wake);
            let line = match read_line(&mut reader, &mut partial) {
                Ok(LineRead::Line(line)) => line,
                Ok(LineRead::TooLong) => {
                    self.context.offend(self.peer.ip(), Offence::OverlongLine);
                    self.finish_transfer();
                    let too_long = Reply::new(Code::SyntaxError, "command line too long");
                    if self.send(too_long).is_err() {
                        break;
                    }
                    continue;
                }
                Ok(LineRead::Eof) => break,
                // Deadlines are checked at the top of the loop.
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
                    self.context.offend(self.peer.ip(), Offence::HttpVerb);
                    Flow::Quit
                }
                Err(error) => {
                    self.rename_from = None;
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

    /// The session's own deadline: from the connection until login, from the last command
    /// after; bytes that do not finish a line never move it.
    fn deadline(&self) -> Instant {
        let timeouts = &self.context.config.timeouts;
        match self.login {
            Login::LoggedIn { .. } => self.last_command + timeouts.idle,
            _ => self.connected_at + timeouts.login,
        }
    }

    /// When the next read must give up: the session's deadline, sooner while a transfer runs
    /// (to notice its end) or a passive port waits (to close it on time); `None` once the
    /// session's deadline has passed.
    fn next_wake(&mut self) -> Option<Instant> {
        let now = Instant::now();
        if let Some(running) = &self.running {
            if !running.is_finished() {
                return Some(now + TRANSFER_POLL);
            }
            self.finish_transfer();
        }
        let deadline = self.deadline();
        if deadline <= now {
            return None;
        }
        Some(
            self.data_plan
                .expires()
                .map_or(deadline, |expires| expires.min(deadline)),
        )
    }

    fn timeout_reply(&self) -> Reply {
        let text = match self.login {
            Login::LoggedIn { .. } => "idle timeout, closing control connection",
            _ => "login timeout, closing control connection",
        };
        Reply::new(Code::ServiceUnavailable, text)
    }

    /// Routes a command, with the rules for transfers in progress, pending renames and
    /// login state.
    fn dispatch(&mut self, command: Command) -> Flow {
        // NOOP and STAT keep a connection open, not a session alive: idle clients are cut.
        if !matches!(command, Command::Noop | Command::Stat(None)) {
            self.last_command = Instant::now();
        }
        // RNTO must come right after RNFR (RFC 959): anything else drops the pending rename.
        let rename_from = self.rename_from.take();
        if self.running.is_some() {
            match command {
                Command::Abor => return self.abort_transfer(),
                Command::Stat(None) => return self.reply(self.status()),
                _ => self.finish_transfer(),
            }
        }
        if self.context.config.tls_required()
            && !self.control.is_secured()
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
        match self.handle(command, rename_from) {
            Ok(flow) => flow,
            Err(reply) => self.reply(reply),
        }
    }

    /// One arm a command: each names the room that does the work.
    fn handle(&mut self, command: Command, rename_from: Option<VirtualPath>) -> Replied<Flow> {
        let reply = match command {
            Command::User(name) => self.user(name),
            Command::Pass(secret) => return self.log_in(&secret.0),
            Command::Acct => Reply::new(Code::Superfluous, "ACCT not needed"),
            Command::Quit => {
                let _ = self.send(Reply::new(Code::Closing, "Goodbye"));
                return Ok(Flow::Quit);
            }
            Command::Noop => Reply::new(Code::Ok, "NOOP ok"),
            Command::Syst => Reply::new(Code::SystemType, "UNIX Type: L8"),
            Command::Feat => self.features(),
            Command::Opts(option) => options(&option),
            Command::Help => help(),
            Command::Stat(None) => self.status(),
            Command::Stat(Some(path)) => return self.stat_path(&path),
            Command::Pwd => self.working_directory(),
            Command::Cwd(path) => self.change_dir(self.cwd.resolve(&path))?,
            Command::Cdup => self.change_dir(self.cwd.parent())?,
            Command::Mkd(path) => self.make_dir(&path)?,
            Command::Rmd(path) => self.remove_dir(&path)?,
            Command::Dele(path) => self.delete(&path)?,
            Command::Rnfr(path) => self.rename_from(&path)?,
            Command::Rnto(path) => self.rename_to(rename_from, &path)?,
            Command::Type(kind) => self.set_type(kind),
            Command::Mode => Reply::new(Code::Ok, "Mode set to S"),
            Command::Stru => Reply::new(Code::Ok, "Structure set to F"),
            Command::Allo => Reply::new(Code::Superfluous, "ALLO not needed"),
            Command::Pasv => self.passive(false)?,
            Command::Epsv(EpsvMode::All) => self.extended_passive_only(),
            Command::Epsv(EpsvMode::Open(protocol)) => self.extended_passive(protocol)?,
            Command::Port(addr) | Command::Eprt(addr) => self.active(addr)?,
            Command::List(path) => return self.listing(path.as_deref(), ListingStyle::Long),
            Command::Nlst(path) => return self.listing(path.as_deref(), ListingStyle::Names),
            Command::Mlsd(path) => return self.listing(path.as_deref(), ListingStyle::Facts),
            Command::Mlst(path) => self.mlst(path.as_deref())?,
            Command::Size(path) => self.size(&path)?,
            Command::Mdtm(path) => self.modification_time(&path)?,
            Command::Mfmt(time, path) => self.set_modification_time(time, &path)?,
            Command::Retr(path) => return self.retrieve(&path),
            Command::Stor(path) => return self.store(&path, StoreMode::Replace),
            Command::Appe(path) => return self.store(&path, StoreMode::Append),
            Command::Stou => return self.store(b"", StoreMode::Unique),
            Command::Rest(offset) => self.restart(offset),
            Command::Abor => self.abort_idle(),
            // The main loop secures the connection itself; this is a repeated AUTH.
            Command::Auth => Reply::new(Code::BadSequence, "TLS is already on"),
            Command::Pbsz => self.protection_buffer()?,
            Command::Prot(private) => self.protection_level(private)?,
            Command::Ccc => Reply::new(
                Code::NotImplemented,
                "CCC not supported: the control connection stays encrypted",
            ),
        };
        Ok(self.reply(reply))
    }

    fn user(&mut self, name: String) -> Reply {
        self.login = Login::AwaitingPass { user: name };
        Reply::new(Code::NeedPassword, "Password required")
    }

    fn features(&self) -> Reply {
        let tls_features = [" AUTH TLS", " PBSZ", " PROT"];
        let offered = FEATURES
            .iter()
            .chain(
                tls_features
                    .iter()
                    .filter(|_| self.context.config.tls.is_some()),
            )
            .map(|feature| feature.as_bytes().to_vec())
            .collect();
        Reply::multi(Code::SystemStatus, "Features:", offered, "End")
    }

    fn set_type(&mut self, kind: TransferType) -> Reply {
        self.transfer_type = kind;
        match kind {
            TransferType::Ascii => Reply::new(Code::Ok, "Type set to A"),
            TransferType::Image => Reply::new(Code::Ok, "Type set to I"),
        }
    }

    fn restart(&mut self, offset: u64) -> Reply {
        self.restart_at = Some(offset);
        Reply::new(
            Code::PendingFurtherInfo,
            format!("Restarting at {offset}. Send STOR or RETR"),
        )
    }

    fn send(&self, reply: Reply) -> std::io::Result<()> {
        self.control.send(&reply)
    }

    /// Sends a reply; a control connection we cannot write to ends the session.
    fn reply(&self, reply: Reply) -> Flow {
        match self.send(reply) {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Quit,
        }
    }

    /// An event of `kind` on `path` by this session's user, if anyone listens for it.
    fn event(&self, kind: EventKind, path: &VirtualPath) -> Option<Event> {
        let wanted = match kind {
            EventKind::PreUpload => self.context.config.events.pre_upload.is_some(),
            _ => self.context.events.wants(kind),
        };
        let user = self
            .identity()
            .map_or("-", |identity| identity.name.as_str());
        wanted.then(|| Event::new(kind, user, self.peer, path.display()))
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
        match &self.running {
            Some(running) => {
                lines.push(format!(" transfer in progress: {}", running.what()).into_bytes())
            }
            None => lines.push(b" no transfer in progress".to_vec()),
        }
        Reply::multi(
            Code::SystemStatus,
            "FTP server status:",
            lines,
            "End of status",
        )
    }
}

/// OPTS: UTF8 is always on; MLST facts are fixed.
fn options(option: &str) -> Reply {
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

fn help() -> Reply {
    Reply::multi(
        Code::Help,
        "The following commands are recognized:",
        vec![
            b" ABOR ACCT ALLO APPE CDUP CWD  DELE EPRT EPSV FEAT HELP LIST MDTM MFMT".to_vec(),
            b" MKD  MLSD MLST MODE NLST NOOP OPTS PASS PASV PORT PWD  QUIT REST RETR".to_vec(),
            b" RMD  RNFR RNTO SIZE STAT STOR STOU STRU SYST TYPE USER XCUP XCWD XMKD".to_vec(),
            b" XPWD XRMD".to_vec(),
        ],
        "Help OK",
    )
}
