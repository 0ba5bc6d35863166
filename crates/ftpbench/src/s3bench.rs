//! The S3 profile (issue 13): ftpd serving a SeaweedFS bucket, against the same bytes PUT and
//! GET straight to that S3 server by a plain client (`s3store`, the blocking client ftpd
//! itself uses), alternating in one run. Big file: STOR and RETR of `big` bytes; small
//! files: STOR and RETR of many 4 KiB files, one FTP session against one S3 client. The
//! peak RSS of ftpd is read after the big uploads: memory per upload must stay bounded.

use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use s3store::{Credentials, Store, StoreConfig};
use testkit::Seaweed;

use crate::client::{Client, Credentials as Login};
use crate::fixture::{Profile, SMALL_FILE};
use crate::report::median;

/// The bucket both paths use; ftpd serves its `ftp/` prefix, direct requests use `direct/`.
const BUCKET: &str = "ftpbench";

/// What one round measured, per path: (big STOR, big RETR) in MiB/s and (small STOR, small
/// RETR) in files/s.
#[derive(Debug, Default, Clone)]
struct Figures {
    big_put: Vec<f64>,
    big_get: Vec<f64>,
    small_put: Vec<f64>,
    small_get: Vec<f64>,
}

/// Runs the S3 profile: starts SeaweedFS and ftpd on it, measures `rounds` rounds, prints a
/// Markdown table to `out`. False when a transfer moved the wrong number of bytes.
pub fn run(ours: &Path, profile: &Profile, rounds: usize, out: &mut dyn Write) -> io::Result<bool> {
    let small_files = profile.small_files.min(2000);
    eprintln!("starting SeaweedFS (weed mini)");
    let seaweed = Seaweed::start();
    let store = Store::new(StoreConfig {
        endpoint: seaweed
            .endpoint
            .parse()
            .map_err(|error| io::Error::other(format!("endpoint: {error}")))?,
        region: "us-east-1".into(),
        bucket: BUCKET.into(),
        prefix: String::new(),
        path_style: true,
        credentials: Credentials::new(&seaweed.access_key, &seaweed.secret_key),
        timeout: Duration::from_secs(60),
    })
    .map_err(io::Error::from)?;
    store.create_bucket().map_err(io::Error::from)?;
    let mut ftpd = FtpdOnS3::start(ours, &seaweed)?;
    let login = Login::default();
    let chunk = noise(1 << 20);
    let small = noise(SMALL_FILE);
    let mut direct = Figures::default();
    let mut through = Figures::default();
    let mut peak_rss_kib = 0;
    let mut correct = true;
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        // Alternate which path goes first, so neither always meets a warm (or cold) server.
        let direct_first = round % 2 == 0;
        for pass in 0..2 {
            if (pass == 0) == direct_first {
                correct &= direct_round(
                    &store,
                    profile.big,
                    small_files,
                    &chunk,
                    &small,
                    &mut direct,
                )?;
            } else {
                let mut client = Client::connect_logged_in(ftpd.addr, &login)?;
                correct &= ftp_round(&mut client, profile.big, small_files, &chunk, &mut through)?;
                client.quit()?;
                peak_rss_kib = peak_rss_kib.max(ftpd.peak_rss_kib());
            }
        }
    }
    ftpd.stop();
    write_table(
        out,
        profile,
        small_files,
        rounds,
        &direct,
        &through,
        peak_rss_kib,
    )?;
    Ok(correct)
}

/// One round straight to S3: a multipart upload and a streamed GET of the big object, then
/// the small objects one by one.
fn direct_round(
    store: &Store,
    big: u64,
    small_files: usize,
    chunk: &[u8],
    small: &[u8],
    figures: &mut Figures,
) -> io::Result<bool> {
    let started = Instant::now();
    let mut upload = store.upload("direct/big.bin").map_err(io::Error::from)?;
    let mut sent = 0u64;
    while sent < big {
        let part = (big - sent).min(chunk.len() as u64) as usize;
        upload.write_all(&chunk[..part])?;
        sent += part as u64;
    }
    upload.finish().map_err(io::Error::from)?;
    figures.big_put.push(mib_per_second(big, started));
    let started = Instant::now();
    let mut reader = store.get("direct/big.bin", 0).map_err(io::Error::from)?;
    let received = drain(&mut reader)?;
    figures.big_get.push(mib_per_second(received, started));
    let started = Instant::now();
    for index in 0..small_files {
        store
            .put(&format!("direct/small/{index}.bin"), small)
            .map_err(io::Error::from)?;
    }
    figures.small_put.push(per_second(small_files, started));
    let started = Instant::now();
    let mut fetched = 0u64;
    for index in 0..small_files {
        let mut reader = store
            .get(&format!("direct/small/{index}.bin"), 0)
            .map_err(io::Error::from)?;
        fetched += drain(&mut reader)?;
    }
    figures.small_get.push(per_second(small_files, started));
    Ok(received == big && fetched == (small_files * small.len()) as u64)
}

/// The same through ftpd over one FTP session.
fn ftp_round(
    client: &mut Client,
    big: u64,
    small_files: usize,
    chunk: &[u8],
    figures: &mut Figures,
) -> io::Result<bool> {
    client.expect("TYPE I", &[200])?;
    let started = Instant::now();
    let sent = client.store("big.bin", chunk, big)?;
    figures.big_put.push(mib_per_second(sent, started));
    let mut buffer = vec![0u8; 256 * 1024];
    let started = Instant::now();
    let received = client.retrieve("big.bin", &mut buffer, &mut |_| {})?;
    figures.big_get.push(mib_per_second(received, started));
    let _ = client.command("MKD small")?;
    let small = &chunk[..SMALL_FILE];
    let started = Instant::now();
    for index in 0..small_files {
        client.store(&format!("small/{index}.bin"), small, small.len() as u64)?;
    }
    figures.small_put.push(per_second(small_files, started));
    let started = Instant::now();
    let mut fetched = 0u64;
    for index in 0..small_files {
        fetched += client.retrieve(&format!("small/{index}.bin"), &mut buffer, &mut |_| {})?;
    }
    figures.small_get.push(per_second(small_files, started));
    Ok(received == big && fetched == (small_files * SMALL_FILE) as u64)
}

fn drain(reader: &mut dyn Read) -> io::Result<u64> {
    let mut buffer = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => return Ok(total),
            Ok(count) => total += count as u64,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

fn mib_per_second(bytes: u64, started: Instant) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / started.elapsed().as_secs_f64()
}

fn per_second(count: usize, started: Instant) -> f64 {
    count as f64 / started.elapsed().as_secs_f64()
}

/// Bytes that do not compress or repeat within a part.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn write_table(
    out: &mut dyn Write,
    profile: &Profile,
    small_files: usize,
    rounds: usize,
    direct: &Figures,
    through: &Figures,
    peak_rss_kib: u64,
) -> io::Result<()> {
    writeln!(out, "{}", crate::machine_description())?;
    writeln!(
        out,
        "\nftpd on S3 (SeaweedFS `weed mini`, loopback) against direct S3 requests, {} profile, \
         median of {rounds} rounds:\n",
        profile.name
    )?;
    writeln!(
        out,
        "| workload | direct S3 | through ftpd | ftpd ÷ direct |"
    )?;
    writeln!(out, "|---|---:|---:|---:|")?;
    let big = format!("{} MiB", profile.big >> 20);
    let rows = [
        (
            format!("STOR {big} (MiB/s)"),
            &direct.big_put,
            &through.big_put,
        ),
        (
            format!("RETR {big} (MiB/s)"),
            &direct.big_get,
            &through.big_get,
        ),
        (
            format!("STOR {small_files} × 4 KiB (files/s)"),
            &direct.small_put,
            &through.small_put,
        ),
        (
            format!("RETR {small_files} × 4 KiB (files/s)"),
            &direct.small_get,
            &through.small_get,
        ),
    ];
    for (label, direct, through) in rows {
        let (direct, through) = (median(direct), median(through));
        let ratio = match (direct, through) {
            (Some(direct), Some(through)) if direct > 0.0 => format!("{:.2}×", through / direct),
            _ => "–".into(),
        };
        writeln!(
            out,
            "| {label} | {} | {} | {ratio} |",
            shown(direct),
            shown(through)
        )?;
    }
    writeln!(
        out,
        "\nftpd's peak RSS over the run (VmHWM): {:.1} MiB",
        peak_rss_kib as f64 / 1024.0
    )?;
    Ok(())
}

fn shown(value: Option<f64>) -> String {
    value.map_or("–".into(), |value| format!("{value:.1}"))
}

/// Our ftpd serving `s3://ftpbench/ftp` on the given SeaweedFS, killed when stopped.
struct FtpdOnS3 {
    child: Child,
    addr: std::net::SocketAddr,
}

impl FtpdOnS3 {
    fn start(binary: &Path, seaweed: &Seaweed) -> io::Result<FtpdOnS3> {
        let mut child = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", "0", "--write"])
            .args(["--storage", &format!("s3://{BUCKET}/ftp")])
            .args(["--s3-endpoint", &seaweed.endpoint])
            .env("AWS_ACCESS_KEY_ID", &seaweed.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &seaweed.secret_key)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| {
                io::Error::new(error.kind(), format!("{}: {error}", binary.display()))
            })?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| io::Error::other("ftpd has no stderr pipe"))?;
        match crate::servers::announced_addr(stderr, "ftpd") {
            Ok(addr) => Ok(FtpdOnS3 { child, addr }),
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(error)
            }
        }
    }

    /// The process's peak resident set so far (VmHWM), in KiB.
    fn peak_rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("VmHWM:"))
                    .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for FtpdOnS3 {
    fn drop(&mut self) {
        self.stop();
    }
}
