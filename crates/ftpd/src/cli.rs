//! Cli: ftpd's command line (the settings, `--config`, the tools), and how settings become a
//! validated [`Startup`]. Every start-up problem is
//! one [`StartupError`], which `main` turns into one line and an exit code.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::cidr::AddressRules;
use crate::config::{Config, Limits, Timeouts};
use crate::defender::{ConnectionRate, DefenderSettings};
use crate::events::EventSettings;
use crate::passive::PassiveAddressing;
use crate::proxy::ProxyPolicy;
use crate::settings::{Settings, SettingsError};
use crate::storage::{S3Storage, Storage};
use crate::tls::TlsSettings;
use crate::users::{Permissions, Users, UsersError, UsersSource};

/// Concurrent FTP server: serves a directory to ftp, lftp, curl, FileZilla and friends
#[derive(Parser, Debug, Clone)]
#[command(version, args_conflicts_with_subcommands = true)]
pub struct Args {
    /// A tool instead of the server.
    #[command(subcommand)]
    pub command: Option<Tool>,
    /// TOML config file: every flag below has a key of the same name (`max-clients = 64`);
    /// flags given on the command line override it
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The server's settings.
    #[command(flatten)]
    pub settings: Settings,
}

/// The tools beside the server.
#[derive(Subcommand, Debug, Clone)]
pub enum Tool {
    /// Read a password from stdin and print the users-file line for NAME
    Passwd {
        /// The login name
        name: String,
    },
    /// Check a config file (and the users file, certificate and root it names) and print the
    /// effective settings; exit 0 if the server would start with it, 2 with the problem if not
    CheckConfig {
        /// The TOML config file
        file: PathBuf,
    },
}

impl Args {
    /// The settings in force: these flags over the config file, if one is named.
    pub fn settings(&self) -> Result<Settings, StartupError> {
        let file = match &self.config {
            Some(path) => Settings::from_file(path).map_err(StartupError::Config)?,
            None => Settings::default(),
        };
        Ok(self.settings.clone().over(file))
    }
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
    /// What anonymous may do, if it may log in: for the start-up log line.
    pub anonymous: Option<Permissions>,
    /// The served directory or `s3://` location as given, for the start-up log line.
    pub root: PathBuf,
    /// The user to become after binding, when started as root.
    pub user: Option<String>,
    /// Where to serve metrics, if anywhere.
    pub metrics: Option<std::net::SocketAddr>,
}

/// Why the server could not start.
#[derive(Debug)]
pub enum StartupError {
    /// The flags contradict each other (exit 2, with the usage).
    Usage(String),
    /// The config file is unreadable or wrong.
    Config(SettingsError),
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
    /// Socket activation or the switch to the service user failed.
    Service(String),
    /// The `--passive-address` host name does not resolve.
    PassiveAddress(std::io::Error),
}

impl std::fmt::Display for StartupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartupError::Usage(problem) => f.write_str(problem),
            StartupError::Config(error) => write!(f, "{error}"),
            StartupError::Users(error) => write!(f, "{error}"),
            StartupError::Tls(problem) => f.write_str(problem),
            StartupError::Root(path, error) => {
                write!(f, "cannot serve {}: {error}", path.display())
            }
            StartupError::Xferlog(path, error) => {
                write!(f, "cannot open xferlog {}: {error}", path.display())
            }
            StartupError::Listen(what, error) => write!(f, "cannot listen on {what}: {error}"),
            StartupError::Service(problem) => f.write_str(problem),
            StartupError::PassiveAddress(error) => {
                write!(f, "cannot resolve --passive-address: {error}")
            }
        }
    }
}

impl Settings {
    /// What these (effective) settings serve, opened and checked: the local directory, or
    /// the S3 bucket and prefix, whose first page is listed so that a wrong endpoint, bucket
    /// or key fails the start rather than every client.
    fn storage(&self) -> Result<(PathBuf, Storage), StartupError> {
        let s3_flags = [
            ("s3-endpoint", self.s3_endpoint.is_some()),
            ("s3-path-style", self.s3_path_style.is_some()),
            ("s3-access-key-id", self.s3_access_key_id.is_some()),
        ];
        let location = match (&self.storage, &self.root) {
            (Some(_), Some(_)) => {
                return Err(StartupError::Usage(
                    "--storage and --root both name what to serve: give one".into(),
                ))
            }
            (Some(location), None) if self.serves_object_storage() => location.clone(),
            (storage, root) => {
                if let Some((flag, _)) = s3_flags.iter().find(|(_, given)| *given) {
                    return Err(StartupError::Usage(format!(
                        "--{flag} needs --storage s3://BUCKET[/PREFIX]"
                    )));
                }
                let root = storage
                    .as_ref()
                    .map_or_else(|| root.clone().unwrap_or_default(), PathBuf::from);
                let storage = Storage::local(&root)
                    .map_err(|error| StartupError::Root(root.clone(), error))?;
                return Ok((root, storage));
            }
        };
        let parsed = s3store::parse_location(&location)
            .map_err(|error| StartupError::Usage(format!("--storage: {error}")))?;
        let region = self
            .s3_region
            .clone()
            .unwrap_or_else(|| crate::settings::defaults::S3_REGION.into());
        let endpoint_text = self
            .s3_endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let endpoint = endpoint_text.parse().map_err(|error| {
            StartupError::Usage(format!("--s3-endpoint '{endpoint_text}': {error}"))
        })?;
        // The standard variables first, as every AWS tool reads them, so a service manager's
        // secret can override a config file; the file's pair otherwise.
        let credentials = match s3store::Credentials::from_env() {
            Ok(credentials) => credentials,
            Err(missing) => match (&self.s3_access_key_id, &self.s3_secret_access_key) {
                (Some(id), Some(secret)) => s3store::Credentials::new(id, &secret.0),
                _ => {
                    return Err(StartupError::Usage(format!(
                        "no S3 credentials: {missing}, and the config file has no \
                         s3-access-key-id and s3-secret-access-key"
                    )))
                }
            },
        };
        let config = s3store::StoreConfig {
            endpoint,
            region,
            bucket: parsed.bucket,
            prefix: parsed.prefix,
            path_style: self.s3_path_style.unwrap_or(self.s3_endpoint.is_some()),
            credentials,
            timeout: Duration::from_secs(
                self.s3_timeout
                    .unwrap_or(crate::settings::defaults::S3_TIMEOUT)
                    .max(1),
            ),
        };
        let shown = PathBuf::from(&location);
        let store = s3store::Store::new(config)
            .map_err(|error| StartupError::Root(shown.clone(), error.into()))?;
        let s3 = S3Storage::new(store);
        s3.check()
            .map_err(|error| StartupError::Root(shown.clone(), error))?;
        Ok((shown, Storage::S3(s3)))
    }

    /// Validates the settings and loads what they name (users, certificate, root), binding
    /// nothing yet.
    pub fn startup(&self) -> Result<Startup, StartupError> {
        let settings = self.effective();
        let needs_cert =
            |flag: &str| StartupError::Usage(format!("--{flag} needs --tls-cert and --tls-key"));
        if settings.tls_cert.is_none() {
            if settings.tls_required {
                return Err(needs_cert("tls-required"));
            }
            if settings.implicit_tls_port.is_some() {
                return Err(needs_cert("implicit-tls-port"));
            }
            if settings.tls_no_session_reuse {
                return Err(needs_cert("tls-no-session-reuse"));
            }
        }
        let default = if settings.write {
            Permissions::all()
        } else {
            Permissions::read_only()
        };
        let users = Users::load(UsersSource {
            file: settings.users.as_deref(),
            tables: &settings.accounts,
            anonymous: settings.anonymous,
            default,
        })
        .map_err(StartupError::Users)?;
        if users.is_empty() && users.anonymous_policy().is_none() {
            return Err(StartupError::Usage(
                "--no-anonymous needs --users or [accounts] tables: nobody could log in".into(),
            ));
        }
        let anonymous = users.anonymous_policy().map(|policy| policy.permissions);
        let tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => Some(
                TlsSettings::load(
                    cert,
                    key,
                    settings.tls_required,
                    !settings.tls_no_session_reuse,
                )
                .map_err(StartupError::Tls)?,
            ),
            (None, None) => None,
            _ => {
                return Err(StartupError::Usage(
                    "--tls-cert and --tls-key go together".into(),
                ))
            }
        };
        let (root, storage) = settings.storage()?;
        let seconds = |value: Option<u64>| Duration::from_secs(value.unwrap_or(0).max(1));
        let config = Config {
            storage: Arc::new(storage),
            users,
            passive_ports: settings.passive_ports.clone().map(|range| range.0),
            passive: PassiveAddressing::start(
                settings.passive_address.as_ref(),
                settings.passive_address_for.clone(),
            )
            .map_err(StartupError::PassiveAddress)?,
            proxy: ProxyPolicy {
                trusted: settings.proxy_from.clone(),
                mode: settings.proxy_mode.unwrap_or_default(),
            },
            address_rules: AddressRules {
                allow: settings.allow_from.clone(),
                deny: settings.deny_from.clone(),
            },
            defender: DefenderSettings {
                enabled: !settings.no_defender,
                threshold: settings.defender_threshold.unwrap_or_default().max(1),
                window: seconds(settings.defender_window),
                ban: seconds(settings.defender_ban),
                max_ban: seconds(settings.defender_max_ban),
                safelist: settings.safelist.clone(),
                rate: settings
                    .connection_rate
                    .filter(|rate| *rate > 0)
                    .map(|rate| ConnectionRate {
                        per_second: f64::from(rate),
                        burst: f64::from(settings.connection_burst.unwrap_or(rate * 2).max(1)),
                    }),
            },
            allow_fxp: settings.allow_fxp,
            timeouts: Timeouts {
                login: seconds(settings.login_timeout),
                idle: seconds(settings.idle_timeout),
                data: seconds(settings.data_timeout),
                stall: seconds(settings.stall_timeout),
            },
            tls,
            events: EventSettings {
                on_upload: settings.on_upload.clone(),
                on_delete: settings.on_delete.clone(),
                on_rename: settings.on_rename.clone(),
                pre_upload: settings.pre_upload.clone(),
                timeout: seconds(settings.hook_timeout),
                queue: settings.event_queue.unwrap_or_default().max(1),
                workers: settings.event_workers.unwrap_or_default().max(1),
            },
        };
        Ok(Startup {
            config,
            limits: Limits {
                max_clients: settings.max_clients.unwrap_or_default(),
                max_per_ip: settings.max_per_ip.unwrap_or_default(),
            },
            host: settings.host.clone().unwrap_or_default(),
            port: settings.port.unwrap_or_default(),
            implicit_tls_port: settings.implicit_tls_port,
            xferlog: settings.xferlog.clone(),
            shutdown_grace: Duration::from_secs(settings.shutdown_grace.unwrap_or_default()),
            anonymous,
            root,
            user: settings.user.clone(),
            metrics: settings.metrics,
        })
    }
}
