//! loadgen: how well clock2 keeps time for thousands of clients at once.
//!
//! Starts the release clock2 on a loopback ephemeral port, connects N clients, and for a few
//! seconds records when each line arrives. Prints, per N: clients connected, the fraction that
//! received every tick (no second skipped or repeated), mean/p99/max arrival offset from the
//! second boundary, server RSS and RSS per client, server CPU %, and server threads.
//! Run it through `scripts/bench-clock2.sh`, which builds what it needs first.

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// Load generator for clock2
#[derive(Parser, Debug)]
struct Args {
    /// Client counts to try, in order
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    clients: Vec<usize>,
    /// Seconds (ticks) measured per run
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// clock2 binary (default: the one beside this example's directory)
    #[arg(long)]
    server: Option<PathBuf>,
}

/// What one client saw during the measured window.
#[derive(Default)]
struct ClientRecord {
    partial: Vec<u8>,
    seconds_seen: Vec<i64>,
    lines_total: u64,
}

/// One finished run, as printed.
struct RunResult {
    clients: usize,
    connected: usize,
    every_tick: usize,
    mean_offset_ms: f64,
    p99_offset_ms: f64,
    max_offset_ms: f64,
    rss_kib: u64,
    baseline_rss_kib: u64,
    cpu_percent: f64,
    threads: u64,
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    raise_fd_limit();
    let server_path = match args.server.clone() {
        Some(path) => path,
        None => std::env::current_exe()?
            .parent()
            .and_then(|examples| examples.parent())
            .map(|profile| profile.join("clock2"))
            .ok_or_else(|| io::Error::other("cannot locate clock2"))?,
    };
    if !server_path.exists() {
        return Err(io::Error::other(format!(
            "{} not found: run scripts/bench-clock2.sh, which builds it",
            server_path.display()
        )));
    }
    println!(
        "clients  connected  every-tick  offset-mean  offset-p99  offset-max  server-RSS  RSS/client  CPU%  threads"
    );
    for &clients in &args.clients {
        let result = run(&server_path, clients, args.seconds)?;
        let per_client = result.rss_kib.saturating_sub(result.baseline_rss_kib) as f64
            / result.connected.max(1) as f64;
        println!(
            "{:>7}  {:>9}  {:>9.2}%  {:>8.2} ms  {:>7.2} ms  {:>7.2} ms  {:>6.1} MiB  {:>6.2} KiB  {:>4.1}  {:>7}",
            result.clients,
            result.connected,
            100.0 * result.every_tick as f64 / result.clients as f64,
            result.mean_offset_ms,
            result.p99_offset_ms,
            result.max_offset_ms,
            result.rss_kib as f64 / 1024.0,
            per_client,
            result.cpu_percent,
            result.threads,
        );
    }
    println!(
        "reference, Go original at 10000 clients (same kind of machine): all served, RSS 57.4 MiB \
         (5.5 KiB/client), about 13% of one core, drifts 0.28 ms per second"
    );
    Ok(())
}

fn run(server_path: &PathBuf, clients: usize, seconds: u64) -> io::Result<RunResult> {
    let mut server = start_server(server_path, clients)?;
    let pid = server.child.id();
    std::thread::sleep(Duration::from_millis(200));
    let baseline_rss_kib = proc_status_field(pid, "VmRSS:").unwrap_or(0);

    let mut poll = Poll::new()?;
    let mut streams = Vec::with_capacity(clients);
    for index in 0..clients {
        match std::net::TcpStream::connect(server.addr) {
            Ok(stream) => {
                stream.set_nonblocking(true)?;
                enable_receive_timestamps(stream.as_raw_fd())?;
                let mut stream = TcpStream::from_std(stream);
                poll.registry()
                    .register(&mut stream, Token(index), Interest::READABLE)?;
                streams.push(stream);
            }
            Err(error) => {
                eprintln!("connect {index} failed: {error}");
                break;
            }
        }
    }
    let connected = streams.len();
    let mut records: Vec<ClientRecord> = (0..connected).map(|_| ClientRecord::default()).collect();
    let mut events = Events::with_capacity(4096);

    // Let every client get its first line, then measure from the next boundary but one.
    let settle_deadline = Instant::now() + Duration::from_secs(15);
    let mut offsets = Vec::new();
    while records.iter().any(|record| record.lines_total == 0) && Instant::now() < settle_deadline {
        pump(
            &mut poll,
            &mut events,
            &mut streams,
            &mut records,
            None,
            &mut offsets,
        )?;
    }
    let window_start = unix_now().as_secs() as i64 + 2;
    let window_end = window_start + seconds as i64;
    let window = (window_start, window_end);
    let mut cpu_start = None;
    let mut wall_start = Instant::now();
    while unix_now().as_secs_f64() < window_end as f64 + 0.5 {
        if cpu_start.is_none() && unix_now().as_secs_f64() >= window_start as f64 {
            cpu_start = Some(proc_cpu_ticks(pid));
            wall_start = Instant::now();
        }
        pump(
            &mut poll,
            &mut events,
            &mut streams,
            &mut records,
            Some(window),
            &mut offsets,
        )?;
    }
    let cpu_ticks = proc_cpu_ticks(pid).saturating_sub(cpu_start.unwrap_or(0));
    let wall = wall_start.elapsed().as_secs_f64();
    let rss_kib = proc_status_field(pid, "VmRSS:").unwrap_or(0);
    let threads = proc_status_field(pid, "Threads:").unwrap_or(0);
    let ticks_per_second = clock_ticks_per_second();
    drop(streams);
    server.stop();

    let expected: Vec<i64> = (window_start..window_end).collect();
    let every_tick = records
        .iter()
        .filter(|record| record.seconds_seen == expected)
        .count();
    offsets.sort_by(f64::total_cmp);
    let mean = offsets.iter().sum::<f64>() / offsets.len().max(1) as f64;
    let p99 = offsets
        .get(offsets.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or(f64::NAN);
    Ok(RunResult {
        clients,
        connected,
        every_tick,
        mean_offset_ms: mean,
        p99_offset_ms: p99,
        max_offset_ms: offsets.last().copied().unwrap_or(f64::NAN),
        rss_kib,
        baseline_rss_kib,
        cpu_percent: 100.0 * cpu_ticks as f64 / ticks_per_second / wall,
        threads,
    })
}

/// Reads whatever is ready; lines whose second falls in `window` are recorded with their
/// arrival offset from that second's boundary.
fn pump(
    poll: &mut Poll,
    events: &mut Events,
    streams: &mut [TcpStream],
    records: &mut [ClientRecord],
    window: Option<(i64, i64)>,
    offsets: &mut Vec<f64>,
) -> io::Result<()> {
    poll.poll(events, Some(Duration::from_millis(50)))?;
    let mut buffer = [0u8; 512];
    for event in events.iter() {
        let index = event.token().0;
        loop {
            match read_stamped(streams[index].as_raw_fd(), &mut buffer) {
                Ok((0, _)) => break,
                Ok((count, stamp)) => {
                    let arrival = stamp.unwrap_or_else(|| unix_now().as_secs_f64());
                    let record = &mut records[index];
                    record.partial.extend_from_slice(&buffer[..count]);
                    while let Some(end) = record.partial.iter().position(|&byte| byte == b'\n') {
                        let line: Vec<u8> = record.partial.drain(..=end).collect();
                        record.lines_total += 1;
                        let Some((second, offset)) = locate(&line, arrival) else {
                            continue;
                        };
                        if let Some((start, end)) = window {
                            if (start..end).contains(&second) {
                                record.seconds_seen.push(second);
                                offsets.push(offset * 1000.0);
                            }
                        }
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
    Ok(())
}

/// The Unix second a `HH:MM:SS` UTC line names (the one nearest its arrival) and how long
/// after that second's boundary it arrived.
fn locate(line: &[u8], arrival: f64) -> Option<(i64, f64)> {
    let text = std::str::from_utf8(line).ok()?.trim_end();
    let mut parts = text.split(':').map(|part| part.parse::<i64>().ok());
    let (hours, minutes, secs) = (parts.next()??, parts.next()??, parts.next()??);
    let of_day = hours * 3600 + minutes * 60 + secs;
    let arrival_second = arrival.floor() as i64;
    let day_start = arrival_second - arrival_second.rem_euclid(86_400);
    let candidates = [day_start - 86_400, day_start, day_start + 86_400];
    let second = candidates
        .iter()
        .map(|day| day + of_day)
        .min_by_key(|second| (second - arrival_second).abs())?;
    Some((second, arrival - second as f64))
}

/// Asks the kernel to stamp received data, so offsets time the server and not how soon this
/// one thread gets round to each of thousands of sockets.
fn enable_receive_timestamps(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option value of the size passed.
    let result = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `read`, plus the kernel's receive time of the data (Unix seconds) when it gave one.
fn read_stamped(fd: RawFd, buffer: &mut [u8]) -> io::Result<(usize, Option<f64>)> {
    let mut part = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = &mut part;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `header` points at live buffers of the lengths it states.
    let count = unsafe { libc::recvmsg(fd, &mut header, 0) };
    if count < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: walking the control messages the kernel just wrote, with the libc macros that
    // bound each step by msg_controllen; the timespec is read unaligned.
    unsafe {
        let mut message = libc::CMSG_FIRSTHDR(&header);
        while !message.is_null() {
            if (*message).cmsg_level == libc::SOL_SOCKET
                && (*message).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let time: libc::timespec =
                    std::ptr::read_unaligned(libc::CMSG_DATA(message).cast());
                stamp = Some(time.tv_sec as f64 + time.tv_nsec as f64 * 1e-9);
            }
            message = libc::CMSG_NXTHDR(&header, message);
        }
    }
    Ok((count as usize, stamp))
}

struct RunningServer {
    child: Child,
    addr: SocketAddr,
}

impl RunningServer {
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn start_server(path: &PathBuf, clients: usize) -> io::Result<RunningServer> {
    let mut child = Command::new(path)
        .args(["--host", "127.0.0.1", "--port", "0", "--tz", "UTC"])
        .arg("--max-clients")
        .arg((clients + 100).to_string())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| io::Error::other("no stderr"))?;
    let mut reader = io::BufReader::new(stderr);
    let mut line = String::new();
    io::BufRead::read_line(&mut reader, &mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|addr| addr.parse().ok())
        .ok_or_else(|| io::Error::other(format!("unexpected first line from clock2: {line:?}")))?;
    // Keep draining the server's log so it never blocks on a full pipe.
    std::thread::spawn(move || io::copy(&mut reader, &mut io::sink()));
    Ok(RunningServer { child, addr })
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// A number from /proc/PID/status, e.g. `VmRSS:` (KiB) or `Threads:`.
fn proc_status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// utime + stime of the process, in clock ticks.
fn proc_cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |index: usize| {
        fields
            .get(index)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Lifts the soft descriptor limit to the hard one: 10,000 clients need 10,000 descriptors.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
