//! Settings: what an operator chooses, from the command line and the config file. Every flag
//! has a config-file key of the same name (`--max-clients` is `max-clients`); a flag given
//! on the command line wins over the file; what neither gives takes its default.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};

use crate::cidr::Cidr;
use crate::events::{defaults as event_defaults, Hook};
use crate::passive::{NetworkAddress, PassiveAddress};
use crate::proxy::ProxyMode;
use crate::users::AccountTable;

/// Defaults, for `--help` and for what neither the flags nor the file say.
pub mod defaults {
    /// `--host`.
    pub const HOST: &str = "127.0.0.1";
    /// `--port`.
    pub const PORT: u16 = 2121;
    /// `--root`.
    pub const ROOT: &str = ".";
    /// `--max-clients`.
    pub const MAX_CLIENTS: usize = 512;
    /// `--max-per-ip`.
    pub const MAX_PER_IP: usize = 32;
    /// `--login-timeout`, seconds.
    pub const LOGIN_TIMEOUT: u64 = 60;
    /// `--idle-timeout`, seconds.
    pub const IDLE_TIMEOUT: u64 = 300;
    /// `--data-timeout`, seconds.
    pub const DATA_TIMEOUT: u64 = 30;
    /// `--stall-timeout`, seconds.
    pub const STALL_TIMEOUT: u64 = 300;
    /// `--shutdown-grace`, seconds.
    pub const SHUTDOWN_GRACE: u64 = 10;
    /// `--defender-threshold`: a guesser is cut off after ten wrong passwords.
    pub const DEFENDER_THRESHOLD: u32 = 10;
    /// `--defender-window`, seconds.
    pub const DEFENDER_WINDOW: u64 = 600;
    /// `--defender-ban`, seconds.
    pub const DEFENDER_BAN: u64 = 300;
    /// `--defender-max-ban`, seconds.
    pub const DEFENDER_MAX_BAN: u64 = 86_400;
    /// `--s3-region`: what most S3-compatible servers accept.
    pub const S3_REGION: &str = "us-east-1";
    /// `--s3-timeout`, seconds: how long one step of an S3 request may wait.
    pub const S3_TIMEOUT: u64 = 30;
}

/// The server's settings, as flags (clap) and as config-file keys (serde). `None` (or
/// `false`) means "not said here".
#[derive(clap::Args, Deserialize, Serialize, Debug, Default, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Address to listen on [default: 127.0.0.1]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Port to listen on; 0 picks a free one [default: 2121]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Directory to serve [default: .]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// What to serve: a directory (as --root does) or s3://BUCKET[/PREFIX], a bucket of an
    /// S3-compatible object store (see --s3-endpoint); each user's home is a key prefix
    #[arg(long, value_name = "PATH|s3://BUCKET[/PREFIX]")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// URL of the S3 service, e.g. http://127.0.0.1:8333 [default: AWS,
    /// https://s3.REGION.amazonaws.com]
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    /// Region signed into every S3 request [default: us-east-1]
    #[arg(long, value_name = "REGION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
    /// Path-style S3 addressing (http://host/bucket/key) when true, virtual-host style
    /// (http://bucket.host/key) when false [default: true with --s3-endpoint, false on AWS]
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_path_style: Option<bool>,
    /// Seconds one step of an S3 request (connect, send, first byte, each read or write)
    /// may wait before the request fails [default: 30]
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_timeout: Option<u64>,
    /// S3 access key id; config file only (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, when
    /// both are set, win)
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key; config file only (a secret has no place on a command line) and
    /// never shown
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_secret_access_key: Option<SecretKey>,
    /// Let anonymous users (and users-file lines without rw/ro) upload, mkdir, delete and rename
    #[arg(long)]
    #[serde(default)]
    pub write: bool,
    /// Users file: one name:argon2-hash[:rw|ro][:home] a line (see `ftpd passwd`)
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<PathBuf>,
    /// Allow anonymous login (the default unless --users is given)
    #[arg(long, overrides_with = "no_anonymous")]
    #[serde(default)]
    pub anonymous: bool,
    /// Refuse anonymous login
    #[arg(long)]
    #[serde(default)]
    pub no_anonymous: bool,
    /// Ports for passive data connections, e.g. 50000-50100 (default: any free port)
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passive_ports: Option<PortRange>,
    /// Address PASV replies advertise: an IP, a host name (looked up again every minute) or
    /// `control`, the address the client connected to [default: control]
    #[arg(long, value_name = "ADDRESS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passive_address: Option<PassiveAddress>,
    /// Tell clients from NETWORK this passive address instead, e.g. 10.0.0.0/8=10.1.2.3
    /// (repeatable; the first match wins)
    #[arg(long, value_name = "NETWORK=ADDRESS")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passive_address_for: Vec<NetworkAddress>,
    /// Load balancers whose PROXY protocol (v1 or v2) headers are believed, e.g.
    /// 10.0.0.5,192.0.2.0/24; nobody else's header is ever read
    #[arg(long, value_delimiter = ',', value_name = "CIDR")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_from: Vec<Cidr>,
    /// required: a connection from --proxy-from without a header is dropped; optional: it is
    /// taken as the balancer's own [default: required]
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_mode: Option<ProxyMode>,
    /// Allow PORT/EPRT to addresses other than the client's own (server-to-server copies)
    #[arg(long)]
    #[serde(default)]
    pub allow_fxp: bool,
    /// Most clients connected at once [default: 512]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_clients: Option<usize>,
    /// Most clients connected at once from one address [default: 32]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_per_ip: Option<usize>,
    /// Seconds a client has to log in, counted from the connection (TLS handshake included)
    /// [default: 60]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_timeout: Option<u64>,
    /// Seconds a logged-in client may go without a complete command (NOOP does not count)
    /// [default: 300]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<u64>,
    /// Seconds to wait for a data connection; an unused passive port is closed after this
    /// [default: 30]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_timeout: Option<u64>,
    /// Seconds a connection may stall (nothing sent or received) before it is dropped
    /// [default: 300]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stall_timeout: Option<u64>,
    /// Seconds running transfers may take to finish after SIGTERM or SIGINT [default: 10]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_grace: Option<u64>,
    /// Append a wu-ftpd format transfer log to this file
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xferlog: Option<PathBuf>,
    /// PEM certificate chain: enables FTPS (AUTH TLS); needs --tls-key
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Refuse logins and data transfers that are not protected by TLS (needs --tls-cert)
    #[arg(long)]
    #[serde(default)]
    pub tls_required: bool,
    /// Also listen for implicit FTPS (TLS from the first byte, port 990 style) on this port
    /// (needs --tls-cert)
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub implicit_tls_port: Option<u16>,
    /// Do not require data connections to resume the control connection's TLS session
    /// (for clients that cannot)
    #[arg(long)]
    #[serde(default)]
    pub tls_no_session_reuse: bool,
    /// Started as root: bind, then become this user (and its group) before serving anyone
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9121 (off by default)
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SocketAddr>,
    /// Turn the defender off: no address is scored or banned (see --defender-threshold)
    #[arg(long)]
    #[serde(default)]
    pub no_defender: bool,
    /// Score at which the defender bans an address: a failed login costs 1, a line over the
    /// limit 2, a refused PORT bounce 3, an HTTP request 5, a connection over the rate 1
    /// [default: 10]
    #[arg(long, value_name = "SCORE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defender_threshold: Option<u32>,
    /// Seconds an offence counts towards the score [default: 600]
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defender_window: Option<u64>,
    /// Seconds of an address's first ban; each later ban doubles [default: 300]
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defender_ban: Option<u64>,
    /// Longest ban, in seconds [default: 86400]
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defender_max_ban: Option<u64>,
    /// Networks never banned nor rate-limited, e.g. 10.0.0.0/8,2001:db8::/32
    #[arg(long, value_delimiter = ',', value_name = "CIDR")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub safelist: Vec<Cidr>,
    /// New control connections per second allowed from one address (a token bucket; off
    /// unless given)
    #[arg(long, value_name = "PER_SECOND")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_rate: Option<u32>,
    /// Connections one address may open at once before --connection-rate applies
    /// [default: twice the rate]
    #[arg(long, value_name = "COUNT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_burst: Option<u32>,
    /// Only these networks may connect, e.g. 192.0.2.0/24,2001:db8::/32 (default: everyone)
    #[arg(long, value_delimiter = ',', value_name = "CIDR")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_from: Vec<Cidr>,
    /// These networks may never connect (wins over --allow-from)
    #[arg(long, value_delimiter = ',', value_name = "CIDR")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_from: Vec<Cidr>,
    /// `[accounts.NAME]` tables: users and their policies in the config file itself
    /// (`--users FILE` may hold the same tables, or `name:hash` lines).
    #[arg(skip)]
    #[serde(default, skip_serializing)]
    pub accounts: BTreeMap<String, AccountTable>,
    /// How log lines look on stderr: text for people, json (one object a line) for log
    /// shippers [default: text]
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// After each committed upload (STOR, APPE, STOU): run this command (split on spaces, no
    /// shell; the event in FTPD_* variables and as JSON on stdin) or POST the JSON to this
    /// http(s) URL
    #[arg(long, value_name = "COMMAND|URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_upload: Option<Hook>,
    /// After each delete (DELE), as --on-upload
    #[arg(long, value_name = "COMMAND|URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_delete: Option<Hook>,
    /// After each rename (RNFR/RNTO), as --on-upload
    #[arg(long, value_name = "COMMAND|URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_rename: Option<Hook>,
    /// Before each upload, on the session's thread: a non-zero exit (or a non-2xx answer)
    /// refuses it with 553 and the hook's first line of output
    #[arg(long, value_name = "COMMAND|URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_upload: Option<Hook>,
    /// Seconds a hook may run before it is killed (each HTTP try) [default: 30]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook_timeout: Option<u64>,
    /// Events that may wait for a hook worker; beyond this they are dropped [default: 1024]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_queue: Option<usize>,
    /// Hooks that run at once [default: 2]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_workers: Option<usize>,
}

/// `--log-format`.
#[derive(clap::ValueEnum, Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `[time LEVEL] message`.
    Text,
    /// One JSON object a line: time, level, the record's fields, message.
    Json,
}

impl From<LogFormat> for common::logging::LogFormat {
    fn from(format: LogFormat) -> common::logging::LogFormat {
        match format {
            LogFormat::Text => common::logging::LogFormat::Text,
            LogFormat::Json => common::logging::LogFormat::Json,
        }
    }
}

/// Why a config file could not be used.
#[derive(Debug)]
pub enum SettingsError {
    /// The file cannot be read.
    Read(PathBuf, std::io::Error),
    /// The file is not valid TOML for these settings (the message names the key and line).
    Parse(PathBuf, String),
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsError::Read(path, error) => {
                write!(f, "cannot read config {}: {error}", path.display())
            }
            SettingsError::Parse(path, problem) => {
                write!(f, "config {}: {problem}", path.display())
            }
        }
    }
}

impl Settings {
    /// Reads a TOML config file; an unknown key is an error naming the key and its line.
    pub fn from_file(path: &Path) -> Result<Settings, SettingsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| SettingsError::Read(path.to_owned(), error))?;
        Settings::from_toml(&text).map_err(|problem| SettingsError::Parse(path.to_owned(), problem))
    }

    /// Parses config-file text.
    pub fn from_toml(text: &str) -> Result<Settings, String> {
        toml::from_str(text).map_err(|error| one_line(&error.to_string()))
    }

    /// These settings, with whatever they leave unsaid taken from `file`.
    pub fn over(self, file: Settings) -> Settings {
        Settings {
            host: self.host.or(file.host),
            port: self.port.or(file.port),
            root: self.root.or(file.root),
            storage: self.storage.or(file.storage),
            s3_endpoint: self.s3_endpoint.or(file.s3_endpoint),
            s3_region: self.s3_region.or(file.s3_region),
            s3_path_style: self.s3_path_style.or(file.s3_path_style),
            s3_timeout: self.s3_timeout.or(file.s3_timeout),
            s3_access_key_id: self.s3_access_key_id.or(file.s3_access_key_id),
            s3_secret_access_key: self.s3_secret_access_key.or(file.s3_secret_access_key),
            write: self.write || file.write,
            users: self.users.or(file.users),
            // One of the pair on the command line decides, whatever the file says.
            anonymous: self.anonymous || (file.anonymous && !self.no_anonymous),
            no_anonymous: self.no_anonymous || (file.no_anonymous && !self.anonymous),
            passive_ports: self.passive_ports.or(file.passive_ports),
            passive_address: self.passive_address.or(file.passive_address),
            passive_address_for: either(self.passive_address_for, file.passive_address_for),
            proxy_from: either(self.proxy_from, file.proxy_from),
            proxy_mode: self.proxy_mode.or(file.proxy_mode),
            allow_fxp: self.allow_fxp || file.allow_fxp,
            max_clients: self.max_clients.or(file.max_clients),
            max_per_ip: self.max_per_ip.or(file.max_per_ip),
            login_timeout: self.login_timeout.or(file.login_timeout),
            idle_timeout: self.idle_timeout.or(file.idle_timeout),
            data_timeout: self.data_timeout.or(file.data_timeout),
            stall_timeout: self.stall_timeout.or(file.stall_timeout),
            shutdown_grace: self.shutdown_grace.or(file.shutdown_grace),
            xferlog: self.xferlog.or(file.xferlog),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            tls_required: self.tls_required || file.tls_required,
            implicit_tls_port: self.implicit_tls_port.or(file.implicit_tls_port),
            tls_no_session_reuse: self.tls_no_session_reuse || file.tls_no_session_reuse,
            user: self.user.or(file.user),
            metrics: self.metrics.or(file.metrics),
            log_format: self.log_format.or(file.log_format),
            no_defender: self.no_defender || file.no_defender,
            defender_threshold: self.defender_threshold.or(file.defender_threshold),
            defender_window: self.defender_window.or(file.defender_window),
            defender_ban: self.defender_ban.or(file.defender_ban),
            defender_max_ban: self.defender_max_ban.or(file.defender_max_ban),
            safelist: either(self.safelist, file.safelist),
            connection_rate: self.connection_rate.or(file.connection_rate),
            connection_burst: self.connection_burst.or(file.connection_burst),
            allow_from: either(self.allow_from, file.allow_from),
            deny_from: either(self.deny_from, file.deny_from),
            accounts: if self.accounts.is_empty() {
                file.accounts
            } else {
                self.accounts
            },
            on_upload: self.on_upload.or(file.on_upload),
            on_delete: self.on_delete.or(file.on_delete),
            on_rename: self.on_rename.or(file.on_rename),
            pre_upload: self.pre_upload.or(file.pre_upload),
            hook_timeout: self.hook_timeout.or(file.hook_timeout),
            event_queue: self.event_queue.or(file.event_queue),
            event_workers: self.event_workers.or(file.event_workers),
        }
    }

    /// The same settings with every default filled in, as `check-config` shows them.
    pub fn effective(&self) -> Settings {
        Settings {
            host: Some(self.host.clone().unwrap_or(defaults::HOST.into())),
            port: Some(self.port.unwrap_or(defaults::PORT)),
            // --storage names what is served when given; --root is then left as said.
            root: match &self.storage {
                Some(_) => self.root.clone(),
                None => Some(self.root.clone().unwrap_or(defaults::ROOT.into())),
            },
            s3_region: self
                .serves_object_storage()
                .then(|| self.s3_region.clone().unwrap_or(defaults::S3_REGION.into())),
            s3_path_style: self
                .serves_object_storage()
                .then(|| self.s3_path_style.unwrap_or(self.s3_endpoint.is_some())),
            s3_timeout: self
                .serves_object_storage()
                .then(|| self.s3_timeout.unwrap_or(defaults::S3_TIMEOUT)),
            max_clients: Some(self.max_clients.unwrap_or(defaults::MAX_CLIENTS)),
            max_per_ip: Some(self.max_per_ip.unwrap_or(defaults::MAX_PER_IP)),
            login_timeout: Some(self.login_timeout.unwrap_or(defaults::LOGIN_TIMEOUT)),
            idle_timeout: Some(self.idle_timeout.unwrap_or(defaults::IDLE_TIMEOUT)),
            data_timeout: Some(self.data_timeout.unwrap_or(defaults::DATA_TIMEOUT)),
            stall_timeout: Some(self.stall_timeout.unwrap_or(defaults::STALL_TIMEOUT)),
            shutdown_grace: Some(self.shutdown_grace.unwrap_or(defaults::SHUTDOWN_GRACE)),
            // Anonymous is on by default only where no account is configured.
            anonymous: !self.no_anonymous
                && (self.anonymous
                    || (self.users.is_none()
                        && self.accounts.keys().all(|name| name == "anonymous"))),
            log_format: Some(self.log_format.unwrap_or(LogFormat::Text)),
            passive_address: Some(
                self.passive_address
                    .clone()
                    .unwrap_or(PassiveAddress::Control),
            ),
            defender_threshold: Some(
                self.defender_threshold
                    .unwrap_or(defaults::DEFENDER_THRESHOLD),
            ),
            defender_window: Some(self.defender_window.unwrap_or(defaults::DEFENDER_WINDOW)),
            defender_ban: Some(self.defender_ban.unwrap_or(defaults::DEFENDER_BAN)),
            defender_max_ban: Some(self.defender_max_ban.unwrap_or(defaults::DEFENDER_MAX_BAN)),
            connection_burst: self
                .connection_rate
                .map(|rate| self.connection_burst.unwrap_or(rate.saturating_mul(2))),
            proxy_mode: (!self.proxy_from.is_empty()).then(|| self.proxy_mode.unwrap_or_default()),
            hook_timeout: Some(self.hook_timeout.unwrap_or(event_defaults::HOOK_TIMEOUT)),
            event_queue: Some(self.event_queue.unwrap_or(event_defaults::EVENT_QUEUE)),
            event_workers: Some(self.event_workers.unwrap_or(event_defaults::EVENT_WORKERS)),
            ..self.clone()
        }
    }

    /// True when `--storage` names an S3 bucket.
    pub fn serves_object_storage(&self) -> bool {
        self.storage
            .as_deref()
            .is_some_and(|storage| storage.starts_with("s3://"))
    }

    /// The settings as TOML, the config file's own format.
    /// Secrets are never shown: accounts are named in a comment (their tables hold password
    /// hashes), and hook URLs lose their credentials and query.
    pub fn to_toml(&self) -> String {
        let redact = |hook: &Option<Hook>| hook.as_ref().map(Hook::redacted);
        let shown = Settings {
            on_upload: redact(&self.on_upload),
            on_delete: redact(&self.on_delete),
            on_rename: redact(&self.on_rename),
            pre_upload: redact(&self.pre_upload),
            ..self.clone()
        };
        let mut text = toml::to_string(&shown)
            .unwrap_or_else(|error| format!("# cannot show settings: {error}\n"));
        if !self.accounts.is_empty() {
            let names: Vec<&str> = self.accounts.keys().map(String::as_str).collect();
            text.push_str(&format!(
                "# [accounts] in the config file (not shown): {}\n",
                names.join(", ")
            ));
        }
        text
    }
}

/// A list from the command line if it gives any, else the file's.
fn either<T>(flags: Vec<T>, file: Vec<T>) -> Vec<T> {
    if flags.is_empty() {
        file
    } else {
        flags
    }
}

/// A TOML error as one line: toml's messages span several lines with a source excerpt.
fn one_line(message: &str) -> String {
    let mut lines = message.lines().map(str::trim).filter(|line| {
        !line.is_empty() && !line.starts_with('|') && !line.starts_with('^') && *line != "|"
    });
    let first = lines.next().unwrap_or_default().to_owned();
    let rest: Vec<&str> = lines
        .filter(|line| !line.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .collect();
    if rest.is_empty() {
        first
    } else {
        format!("{first}: {}", rest.join("; "))
    }
}

/// A secret from the config file: read like any string, written (by `check-config`) and
/// debug-printed only as `<redacted>`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretKey(pub String);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl Serialize for SecretKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

/// A port range like `50000-50100`, as a flag and as a config value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRange(pub RangeInclusive<u16>);

impl FromStr for PortRange {
    type Err = String;

    fn from_str(value: &str) -> Result<PortRange, String> {
        let bad = || format!("'{value}' is not a port range like 50000-50100");
        let (low, high) = value.split_once('-').ok_or_else(bad)?;
        let (low, high): (u16, u16) = (
            low.trim().parse().map_err(|_| bad())?,
            high.trim().parse().map_err(|_| bad())?,
        );
        if low == 0 || low > high {
            return Err(bad());
        }
        Ok(PortRange(low..=high))
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0.start(), self.0.end())
    }
}

serde_as_string!(PortRange);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_flag_names_and_flags_win() {
        let file = Settings::from_toml(
            "port = 2100\nmax-clients = 9\npassive-ports = \"50000-50010\"\nwrite = true\n",
        )
        .unwrap();
        assert_eq!(file.passive_ports, Some(PortRange(50000..=50010)));
        let flags = Settings {
            port: Some(3000),
            ..Settings::default()
        };
        let merged = flags.over(file);
        assert_eq!(
            (merged.port, merged.max_clients, merged.write),
            (Some(3000), Some(9), true)
        );
        let effective = merged.effective();
        assert_eq!(effective.idle_timeout, Some(defaults::IDLE_TIMEOUT));
        let shown = effective.to_toml();
        assert!(shown.contains("passive-ports = \"50000-50010\""), "{shown}");
        assert_eq!(Settings::from_toml(&shown).unwrap(), effective);
    }

    #[test]
    fn balancer_keys_load_and_show_as_they_were_written() {
        let file = Settings::from_toml(
            "passive-address = \"ftp.example.org\"\n\
             passive-address-for = [\"10.0.0.0/8=10.1.2.3\"]\n\
             proxy-from = [\"10.0.0.1\", \"2001:db8::/32\"]\n\
             proxy-mode = \"optional\"\n",
        )
        .unwrap();
        assert_eq!(
            file.passive_address,
            Some(PassiveAddress::Host("ftp.example.org".into()))
        );
        assert_eq!(file.proxy_from.len(), 2);
        let flags = Settings {
            proxy_from: vec!["192.0.2.1".parse().unwrap()],
            ..Settings::default()
        };
        let merged = flags.over(file);
        assert_eq!(merged.proxy_from, vec!["192.0.2.1".parse().unwrap()]);
        assert_eq!(merged.passive_address_for.len(), 1);
        let shown = merged.effective().to_toml();
        assert!(shown.contains("proxy-from = [\"192.0.2.1/32\"]"), "{shown}");
        assert!(shown.contains("proxy-mode = \"optional\""), "{shown}");
        assert_eq!(Settings::from_toml(&shown).unwrap(), merged.effective());
        let bad = Settings::from_toml("proxy-from = [\"10.0.0.0/33\"]\n").unwrap_err();
        assert!(bad.contains("10.0.0.0/33"), "{bad}");
    }

    #[test]
    fn hook_keys_load_merge_and_show_as_written() {
        let file = Settings::from_toml(
            "on-upload = \"/usr/local/bin/uploaded --quiet\"\n\
             on-delete = \"https://hooks.example.org/ftpd\"\n\
             hook-timeout = 5\nevent-queue = 16\n",
        )
        .unwrap();
        assert_eq!(
            file.on_upload,
            Some(Hook::Command {
                program: "/usr/local/bin/uploaded".into(),
                args: vec!["--quiet".into()],
            })
        );
        let flags = Settings {
            hook_timeout: Some(9),
            ..Settings::default()
        };
        let effective = flags.over(file).effective();
        assert_eq!(
            (
                effective.hook_timeout,
                effective.event_queue,
                effective.event_workers
            ),
            (Some(9), Some(16), Some(event_defaults::EVENT_WORKERS))
        );
        let shown = effective.to_toml();
        assert!(
            shown.contains("on-upload = \"/usr/local/bin/uploaded --quiet\""),
            "{shown}"
        );
        assert_eq!(Settings::from_toml(&shown).unwrap(), effective);
        let bad = Settings::from_toml("pre-upload = \"\"\n").unwrap_err();
        assert!(bad.contains("line 1") && bad.contains("hook"), "{bad}");
    }

    #[test]
    fn s3_keys_load_merge_and_never_show_the_secret_issue_13() {
        let file = Settings::from_toml(
            "storage = \"s3://bucket/ftp\"\n\
             s3-endpoint = \"http://127.0.0.1:8333\"\n\
             s3-access-key-id = \"AKID\"\n\
             s3-secret-access-key = \"very-secret\"\n",
        )
        .unwrap();
        let flags = Settings {
            s3_region: Some("eu-west-1".into()),
            ..Settings::default()
        };
        let merged = flags.over(file);
        assert_eq!(
            merged.s3_secret_access_key,
            Some(SecretKey("very-secret".into()))
        );
        let effective = merged.effective();
        assert_eq!(effective.s3_region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            effective.s3_path_style,
            Some(true),
            "an endpoint means path style"
        );
        assert_eq!(effective.s3_timeout, Some(defaults::S3_TIMEOUT));
        assert_eq!(effective.root, None, "--storage names what is served");
        let shown = effective.to_toml();
        assert!(shown.contains("s3-access-key-id = \"AKID\""), "{shown}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(!format!("{effective:?}").contains("very-secret"));
        let local = Settings::default().effective().to_toml();
        assert!(!local.contains("s3-"), "{local}");
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let error = Settings::from_toml("port = 21\n\nmax-client = 3\n").unwrap_err();
        assert!(error.contains("max-client"), "{error}");
        assert!(error.contains("line 3"), "{error}");
        assert!(!error.contains('\n'), "{error}");
    }

    #[test]
    fn a_flag_beats_the_file_for_anonymous_either_way() {
        let file = Settings {
            no_anonymous: true,
            ..Settings::default()
        };
        let flags = Settings {
            anonymous: true,
            ..Settings::default()
        };
        let merged = flags.over(file);
        assert!(merged.anonymous && !merged.no_anonymous);
    }
}
