//! ftpd: serves a directory over FTP. With no arguments: the current directory on
//! 127.0.0.1:2121, anonymous, read-only. Flags (over `--config`) → `Settings` → `Startup`
//! → `serve`.

#![deny(clippy::disallowed_methods)]

use std::io::BufRead;
use std::net::TcpListener;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use common::listen::{announce, listen_announced};
use ftpd::accounts::Accounts;
use ftpd::cli::{Args, Startup, StartupError, Tool};
use ftpd::defender::Defender;
use ftpd::events::{Events, HookChildren};
use ftpd::metrics::Metrics;
use ftpd::registry::Registry;
use ftpd::server::{serve, Generation, Listeners, Reload};
use ftpd::service;
use ftpd::session::Context;
use ftpd::settings::{LogFormat, Settings};
use ftpd::users::{hash_password, VerificationGate};
use ftpd::xferlog::Xferlog;

fn main() -> ExitCode {
    let args: Args = common::args::parse();
    // Read once here: the log format must be known before anything is logged.
    let settings = args.settings();
    let format = settings
        .as_ref()
        .ok()
        .and_then(|settings| settings.log_format)
        .unwrap_or(LogFormat::Text);
    common::logging::init_with(format.into());
    match &args.command {
        Some(Tool::Passwd { name }) => passwd(name),
        Some(Tool::CheckConfig { file }) => check_config(file),
        None => match settings.and_then(|settings| run(&args, &settings)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(StartupError::Usage(problem)) => common::args::usage_error::<Args>(problem),
            Err(error) => {
                eprintln!("ftpd: {error}");
                ExitCode::FAILURE
            }
        },
    }
}

/// `ftpd check-config FILE`: everything start-up checks short of binding; the effective
/// settings on stdout (as TOML, never a secret: the users file and key are named, not shown).
fn check_config(file: &Path) -> ExitCode {
    let checked = Settings::from_file(file)
        .map_err(StartupError::Config)
        .and_then(|settings| settings.startup().map(|_| settings));
    match checked {
        Ok(settings) => {
            print!("{}", settings.effective().to_toml());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("ftpd: {error}");
            ExitCode::from(2)
        }
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

/// Serves with `settings` (the flags over the config file); a reload reads them afresh
/// through `args`.
fn run(args: &Args, settings: &Settings) -> Result<(), StartupError> {
    let startup = settings.startup()?;
    ignore_file_size_signal();
    tune_allocator();
    let stale = startup.config.storage.sweep_stale_uploads();
    if stale > 0 {
        log::info!("removed {stale} temporary uploads left by a server that is gone");
    }
    let host = startup.host.clone();
    let port = startup.port;
    let listeners = listen(&startup)?;
    match &startup.user {
        Some(user) => {
            service::drop_privileges(user).map_err(StartupError::Service)?;
            log::info!("serving as user {user}");
        }
        None if service::is_root() => {
            log::warn!("serving with root's privileges: give --user to drop them after binding");
        }
        None => {}
    }
    let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    let shared = Shared {
        registry: Arc::new(Registry::default()),
        verification: Arc::new(VerificationGate::new(cores)),
        metrics: Arc::new(Metrics::default()),
        defender: Arc::new(Defender::new()),
        accounts: Arc::new(Accounts::default()),
        hooks: Arc::new(HookChildren::default()),
    };
    let grace = startup.shutdown_grace;
    let implicit_port = startup.implicit_tls_port;
    let first = generation(startup, &shared)?;
    let hooks = Arc::clone(&shared.hooks);
    let reload_args = args.clone();
    let reload: Reload = Box::new(move || {
        let startup = reload_args
            .settings()
            .and_then(|settings| settings.startup())
            .map_err(|error| error.to_string())?;
        if startup.host != host
            || startup.port != port
            || startup.implicit_tls_port != implicit_port
        {
            log::warn!("listen addresses change only with a restart; keeping the bound ones");
        }
        generation(startup, &shared).map_err(|error| error.to_string())
    });
    serve(listeners, first, reload, grace);
    // Queued events die with the process; hooks still running must not outlive it.
    let killed = hooks.kill_all();
    if killed > 0 {
        log::info!("killed {killed} event hooks still running");
    }
    log::info!("stopped");
    Ok(())
}

/// The listeners systemd passed (socket activation), or the ones bound here; each announced.
fn listen(startup: &Startup) -> Result<Listeners, StartupError> {
    let mut inherited = service::inherited_listeners().map_err(StartupError::Service)?;
    if !inherited.is_empty() {
        for listener in &inherited {
            announce(listener)
                .map_err(|error| StartupError::Listen("a socket from systemd".into(), error))?;
        }
        let control = inherited.remove(0);
        return Ok(Listeners {
            control,
            implicit_tls: inherited.into_iter().next(),
            metrics: metrics_listener(startup)?,
        });
    }
    let host = &startup.host;
    let control = listen_announced(host, startup.port)
        .map_err(|error| StartupError::Listen(format!("{host}:{}", startup.port), error))?;
    let implicit_tls = match startup.implicit_tls_port {
        Some(port) => Some(listen_announced(host, port).map_err(|error| {
            StartupError::Listen(format!("{host}:{port} for implicit TLS"), error)
        })?),
        None => None,
    };
    Ok(Listeners {
        control,
        implicit_tls,
        metrics: metrics_listener(startup)?,
    })
}

/// The metrics page's listener, announced as `metrics on http://ADDR/metrics`.
fn metrics_listener(startup: &Startup) -> Result<Option<TcpListener>, StartupError> {
    let Some(addr) = startup.metrics else {
        return Ok(None);
    };
    let bound = TcpListener::bind(addr).and_then(|listener| Ok((listener.local_addr()?, listener)));
    let (local, listener) =
        bound.map_err(|error| StartupError::Listen(format!("{addr} for metrics"), error))?;
    eprintln!("metrics on http://{local}/metrics");
    Ok(Some(listener))
}

/// What every generation of settings shares.
#[derive(Clone)]
struct Shared {
    registry: Arc<Registry>,
    verification: Arc<VerificationGate>,
    metrics: Arc<Metrics>,
    defender: Arc<Defender>,
    accounts: Arc<Accounts>,
    hooks: Arc<HookChildren>,
}

/// The settings of `startup` as the context new sessions get, with the transfer log
/// (re)opened, so that a reload after logrotate writes to the new file.
fn generation(startup: Startup, shared: &Shared) -> Result<Generation, StartupError> {
    let xferlog = match &startup.xferlog {
        Some(path) => {
            Some(Arc::new(Xferlog::open(path).map_err(|error| {
                StartupError::Xferlog(path.clone(), error)
            })?))
        }
        None => None,
    };
    log::info!(
        "serving {} ({}; anonymous {})",
        startup.root.display(),
        match startup.anonymous {
            Some(permissions) if !permissions.is_read_only() => "writable",
            _ => "read-only",
        },
        if startup.anonymous.is_some() {
            "on"
        } else {
            "off"
        }
    );
    // The old generation's workers end once its last session is gone and they have run
    // what was queued.
    let events = Events::start(
        &startup.config.events,
        Arc::clone(&shared.metrics),
        Arc::clone(&shared.hooks),
    );
    Ok(Generation {
        context: Arc::new(Context {
            events,
            config: Arc::new(startup.config),
            registry: Arc::clone(&shared.registry),
            xferlog,
            verification: Arc::clone(&shared.verification),
            metrics: Arc::clone(&shared.metrics),
            defender: Arc::clone(&shared.defender),
            accounts: Arc::clone(&shared.accounts),
        }),
        limits: startup.limits,
    })
}

/// A file-size limit (`ulimit -f`) must fail the upload with 552, not kill the server:
/// the kernel's default for SIGXFSZ is to end the process.
fn ignore_file_size_signal() {
    // SAFETY: setting a standard signal to SIG_IGN at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// Gives large blocks back to the system when they are freed. glibc raises its mmap
/// threshold to the size of each large block freed (up to 32 MiB), so after the first
/// argon2 check (19 MiB) every later one, and every 256 KiB transfer buffer, came from the
/// heap arenas and stayed there: 156 MiB of RSS after a burst of logins, for good. A fixed
/// threshold keeps such blocks in their own mappings, unmapped on free.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
