//! Testkit: the harness every integration test uses to run a real binary on an ephemeral port
//! and talk to it with a real client (nc, netcat1, …).
//!
//! Servers are started with `--port 0`; [`Server`] waits for their `listening on ADDR` line and
//! kills them on drop. Every read has a timeout, so a broken server fails a test instead of
//! hanging the suite.

mod seaweed;

pub use seaweed::{weed_binary, Seaweed, SEAWEED_STARTUP_TIMEOUT};

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to print `listening on`.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A binary built by this workspace, for tests in a package other than the binary's own
/// (those use `env!("CARGO_BIN_EXE_name")`). `cargo test --workspace` builds every binary first.
pub fn workspace_binary(name: &str) -> PathBuf {
    let test_exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let profile_dir = test_exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let binary = profile_dir.join(name);
    assert!(
        binary.exists(),
        "{} is not built: run `cargo build --workspace` (or `cargo test --workspace`) first",
        binary.display()
    );
    binary
}

/// Fails the test with install advice when a stock client is missing; never skips silently.
pub fn require_tool(tool: &str, debian_package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "this test needs `{tool}`: install it with `apt-get install -y {debian_package}` \
         or run scripts/test.sh, which installs every client the tests use"
    );
}

/// A server process started on an ephemeral port, killed when dropped.
pub struct Server {
    child: Child,
    /// The address from its `listening on ADDR` line.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Runs `program args…` and waits for its `listening on` line.
    pub fn start<S: AsRef<OsStr>>(program: impl AsRef<OsStr>, args: &[S]) -> Server {
        let mut command = Command::new(program);
        command.args(args);
        Server::spawn(command)
    }

    /// Runs a prepared command (extra env, say) and waits for its `listening on` line.
    /// The server is killed when dropped and, should the test die without dropping it, when
    /// the thread that started it ends: so start it on the test's own thread.
    pub fn spawn(mut command: Command) -> Server {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        die_with_parent(&mut command);
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let log_writer = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = addr_tx.send(addr.trim().to_owned());
                }
                log_writer.lock().unwrap().push(line);
            }
        });
        let addr = match addr_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(addr) => addr
                .parse()
                .expect("listening on line holds a socket address"),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "{command:?} printed no `listening on` line ({status:?}); stderr: {:?}",
                    log.lock().unwrap()
                );
            }
        };
        Server { child, addr, log }
    }

    /// Process id, for reading /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every stderr line so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a stderr line contains `needle`; false after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log_lines().iter().any(|line| line.contains(needle)) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Sends a signal by name (`TERM`, `INT`, …) through kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the server to exit on its own; `None` if it is still running after `timeout`
    /// (it is then killed).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_with_deadline(&mut self.child, timeout)
    }

    /// Stops the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asks the kernel to SIGKILL the child when the thread that spawned it ends, so a test
/// binary that is killed or aborts leaves no server behind (exec keeps the setting).
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl, which
    // is async-signal-safe, allocating nothing.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client process whose stdout is read line by line with timeouts; killed when dropped.
pub struct LineClient {
    child: Child,
    lines: Receiver<String>,
}

impl LineClient {
    /// Runs `command` with stdout piped into a line reader.
    pub fn spawn(mut command: Command) -> LineClient {
        command.stdin(Stdio::null()).stdout(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
        let lines = read_lines(child.stdout.take().expect("piped stdout"));
        LineClient { child, lines }
    }

    /// Runs `command` with its stderr (not stdout) read line by line, for programs that
    /// report there.
    pub fn spawn_stderr(mut command: Command) -> LineClient {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
        let lines = read_lines(child.stderr.take().expect("piped stderr"));
        LineClient { child, lines }
    }

    /// `nc -d -n HOST PORT` (netcat-openbsd) connected to `addr`.
    pub fn nc(addr: SocketAddr) -> LineClient {
        require_tool("nc", "netcat-openbsd");
        let mut command = Command::new("nc");
        command
            .args(["-d", "-n"])
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .stderr(Stdio::null());
        LineClient::spawn(command)
    }

    /// The next line (without its newline), or `None` after `timeout` or at EOF.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// True when nothing arrives for `quiet` (and the output is still open).
    pub fn stays_silent(&self, quiet: Duration) -> bool {
        matches!(
            self.lines.recv_timeout(quiet),
            Err(RecvTimeoutError::Timeout)
        )
    }

    /// True when the client's output ends (its connection closed) within `timeout`.
    pub fn closes_within(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(_) => {}
                Err(RecvTimeoutError::Disconnected) => return true,
                Err(RecvTimeoutError::Timeout) => return false,
            }
        }
    }

    /// Process id, for sending signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the client, closing its connection.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LineClient {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_lines(stdout: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Runs `command` like [`run_with_timeout`] and fails the test, showing its output, unless it
/// exits 0.
pub fn run_ok(command: Command, timeout: Duration) -> Output {
    let shown = format!("{command:?}");
    let output = run_with_timeout(command, timeout);
    assert!(
        output.status.success(),
        "{shown}: {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A number from /proc/PID/status, e.g. `Threads:` or `VmRSS:` (KiB).
pub fn process_status(pid: u32, field: &str) -> u64 {
    process_status_line(pid, field)
        .split_whitespace()
        .next()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no number in {field} of /proc/{pid}/status"))
}

/// The rest of a /proc/PID/status line after `field`, e.g. `Uid:` (four ids).
pub fn process_status_line(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("process status")
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .map(|rest| rest.trim().to_owned())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Descriptors the process has open.
pub fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("process descriptors")
        .count()
}

/// CPU time (user + system) the process has used, in clock ticks (normally 100 a second).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process stat");
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after_name = stat.rsplit_once(')').expect("stat format").1;
    after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|field| field.parse::<u64>().expect("numeric tick count"))
        .sum()
}

/// Opens `connections` connections to a server started with too few descriptors, waits for
/// its `accept failed` log line, and fails the test if its accept loop then uses more than a
/// fifth of a core for 2 s (a spinning loop uses all of one). Returns the connections, so the
/// caller decides when descriptors come free.
pub fn exhaust_descriptors(server: &Server, connections: usize) -> Vec<std::net::TcpStream> {
    let hogs: Vec<std::net::TcpStream> = (0..connections)
        .map(|_| {
            std::net::TcpStream::connect(server.addr).expect("kernel accepts into the backlog")
        })
        .collect();
    assert!(
        server.wait_for_log("accept failed", Duration::from_secs(10)),
        "{:?}",
        server.log_lines()
    );
    let before = cpu_ticks(server.pid());
    thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(server.pid()) - before;
    assert!(
        used < 40,
        "accept loop used {used} ticks in 2 s while out of descriptors"
    );
    hogs
}

/// Runs a clock server with `TZ=value` and asserts it refuses to start: exit 2, one `error:`
/// line naming the value, and no `listening on` (it must fail before binding).
pub fn assert_rejects_zone(binary: &std::path::Path, value: &str) {
    let mut command = Command::new(binary);
    command
        .args(["--host", "127.0.0.1", "--port", "0"])
        .env("TZ", value);
    let output = run_with_timeout(command, Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(&format!("'{value}'")), "{stderr}");
    assert!(
        !stderr.contains("listening on"),
        "bound before failing: {stderr}"
    );
}

/// Seconds since midnight named by a `HH:MM:SS` clock line, or `None` if it is not one.
pub fn clock_line_seconds(line: &str) -> Option<u32> {
    let bytes = line.as_bytes();
    if bytes.len() != 8 || bytes[2] != b':' || bytes[5] != b':' {
        return None;
    }
    let mut parts = line.split(':').map(|part| part.parse::<u32>().ok());
    let (hours, minutes, seconds) = (parts.next()??, parts.next()??, parts.next()??);
    (hours < 24 && minutes < 60 && seconds < 60).then_some(hours * 3600 + minutes * 60 + seconds)
}

/// Distance in seconds between two times of day, across midnight if shorter that way.
pub fn seconds_apart(a: u32, b: u32) -> u32 {
    let forward = (a + 86_400 - b) % 86_400;
    forward.min(86_400 - forward)
}

/// Runs `command` to completion with stdin closed, killing it after `timeout`.
pub fn run_with_timeout(mut command: Command, timeout: Duration) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let status = wait_with_deadline(&mut child, timeout)
        .unwrap_or_else(|| panic!("{command:?} still running after {timeout:?}"));
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Waits for `child` up to `timeout`; on timeout kills it and returns `None`.
pub fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn drain(mut source: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = source.read_to_end(&mut bytes);
        bytes
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// True when the process is gone or a zombie nobody reaped.
    fn is_dead(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_or(true, |status| status.contains("State:\tZ"))
    }

    #[test]
    fn a_dropped_seaweed_leaves_no_process_and_no_directory() {
        let seaweed = Seaweed::start();
        let pid = seaweed.pid();
        let dir = seaweed.dir().to_owned();
        let sockets = seaweed.grpc_sockets();
        assert!(sockets.iter().all(|socket| socket.exists()), "{sockets:?}");
        assert!(dir.join("data").is_dir());
        assert!(!is_dead(pid));
        drop(seaweed);
        assert!(is_dead(pid), "weed {pid} outlived its Seaweed");
        assert!(!dir.exists(), "{} is still there", dir.display());
        let left: Vec<_> = sockets.iter().filter(|socket| socket.exists()).collect();
        assert!(left.is_empty(), "left behind: {left:?}");
        // Nothing else in its process group either.
        let group = Command::new("pgrep")
            .args(["-g", &pid.to_string()])
            .output()
            .expect("run pgrep");
        assert!(group.stdout.is_empty(), "{group:?}");
    }

    #[test]
    fn a_server_whose_test_forgets_it_dies_with_the_starting_thread() {
        let pid = thread::spawn(|| {
            let mut command = Command::new("sh");
            command.args(["-c", "echo 'listening on 127.0.0.1:9' >&2; exec sleep 60"]);
            let server = Server::spawn(command);
            let pid = server.pid();
            // As a server kept in a static would be: never dropped.
            std::mem::forget(server);
            pid
        })
        .join()
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !is_dead(pid) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert!(
            is_dead(pid),
            "server {pid} outlived the thread that started it"
        );
    }
}
