//! Servers: the FTP servers a run measures (ours and vsftpd, started on a loopback port over
//! the prepared root, killed on drop) and the plain-TCP source that sets the loopback limit.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::client::{Client, Credentials};

/// How long a server may take to start answering.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// A server to measure: where it listens and which processes are its own.
#[derive(Debug, Clone)]
pub struct Target {
    /// Shown in the table: `ours`, `vsftpd`, or the URL's address.
    pub name: String,
    pub addr: SocketAddr,
    pub credentials: Credentials,
    /// Root of its process tree, for the memory workload; `None` skips it.
    pub pid: Option<u32>,
    /// A client configuration trusting its certificate, when it serves FTPS (ours, started
    /// here); `None` skips the TLS workload.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// A server this run started; killed (with its whole tree) when dropped.
pub struct RunningServer {
    child: Child,
    pub target: Target,
    /// vsftpd's configuration directory, kept until the server is gone.
    _config_dir: Option<tempfile::TempDir>,
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        // vsftpd's session processes leave with their parent's listening socket closed, but
        // not at once: end them too so the next run starts clean.
        let tree = crate::procfs::process_tree(self.child.id()).unwrap_or_default();
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in tree.into_iter().skip(1) {
            // SAFETY: kill(2) on a pid; at worst the process is gone already.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

/// Starts our ftpd on an ephemeral loopback port, serving `root` writable to anonymous
/// users, logging only warnings (vsftpd's configuration logs nothing either).
pub fn start_ours(binary: &Path, root: &Path) -> io::Result<RunningServer> {
    // A certificate for the TLS workload; TLS stays optional, so the plain workloads are
    // unaffected.
    let certificate = crate::tls_client::TestCertificate::generate()?;
    let tls_dir = tempfile::Builder::new().prefix("ftpbench-tls").tempdir()?;
    let cert = tls_dir.path().join("cert.pem");
    let key = tls_dir.path().join("key.pem");
    std::fs::write(&cert, &certificate.cert_pem)?;
    std::fs::write(&key, &certificate.key_pem)?;
    let mut child = Command::new(binary)
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .args(["--host", "127.0.0.1", "--port", "0", "--write"])
        .args(["--max-clients", "20000", "--max-per-ip", "20000"])
        .args(["--idle-timeout", "900", "--login-timeout", "900"])
        .arg("--root")
        .arg(root)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| io::Error::new(error.kind(), format!("{}: {error}", binary.display())))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| io::Error::other("ftpd has no stderr pipe"))?;
    let addr = match announced_addr(stderr, "ftpd") {
        Ok(addr) => addr,
        Err(error) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(error);
        }
    };
    let pid = child.id();
    Ok(RunningServer {
        child,
        target: Target {
            name: "ours".to_owned(),
            addr,
            credentials: Credentials::default(),
            pid: Some(pid),
            tls: Some(certificate.client),
        },
        _config_dir: Some(tls_dir),
    })
}

/// Reads the `listening on ADDR` line a server prints on stderr, then keeps draining the
/// pipe on a thread so the server never blocks on it.
pub(crate) fn announced_addr(stderr: ChildStderr, what: &str) -> io::Result<SocketAddr> {
    let (sender, receiver) = mpsc::channel();
    let what_owned = what.to_owned();
    thread::Builder::new()
        .name(format!("{what}-stderr"))
        .spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = String::new();
            let mut announced = false;
            let mut last_lines = Vec::new();
            // Bounded: each pass reads one line; the loop ends at EOF, when the server exits.
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if announced {
                    continue;
                }
                if let Some(addr) = line.trim().strip_prefix("listening on ") {
                    announced = true;
                    let _ = sender.send(
                        addr.parse::<SocketAddr>()
                            .map_err(|_| format!("{what_owned} announced a bad address '{addr}'")),
                    );
                } else {
                    last_lines.push(line.trim().to_owned());
                }
            }
            if !announced {
                let _ = sender.send(Err(format!(
                    "{what_owned} exited before listening: {}",
                    last_lines.join(" / ")
                )));
            }
        })?;
    match receiver.recv_timeout(STARTUP_TIMEOUT) {
        Ok(result) => result.map_err(io::Error::other),
        Err(_) => Err(io::Error::other(format!(
            "{what} did not print 'listening on' within {STARTUP_TIMEOUT:?}"
        ))),
    }
}

/// Finds vsftpd on PATH or in /usr/sbin.
pub fn find_vsftpd() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join("vsftpd"))
        .find(|candidate| candidate.is_file())
}

/// The configuration that makes vsftpd serve `root` like ours: anonymous, no password,
/// uploads, overwrite and delete allowed, owner shown as `ftp`, no logging, no banner files.
fn vsftpd_config(root: &Path, port: u16) -> String {
    format!(
        "listen=YES\n\
         listen_ipv6=NO\n\
         listen_address=127.0.0.1\n\
         listen_port={port}\n\
         background=NO\n\
         anonymous_enable=YES\n\
         no_anon_password=YES\n\
         local_enable=NO\n\
         anon_root={root}\n\
         write_enable=YES\n\
         anon_upload_enable=YES\n\
         anon_mkdir_write_enable=YES\n\
         anon_other_write_enable=YES\n\
         anon_umask=022\n\
         hide_ids=YES\n\
         pasv_enable=YES\n\
         port_enable=YES\n\
         connect_from_port_20=NO\n\
         max_clients=0\n\
         max_per_ip=0\n\
         idle_session_timeout=900\n\
         data_connection_timeout=300\n\
         dirmessage_enable=NO\n\
         xferlog_enable=NO\n\
         use_sendfile=YES\n\
         secure_chroot_dir=/var/run/vsftpd/empty\n\
         ftp_username=ftp\n\
         seccomp_sandbox=NO\n",
        root = root.display()
    )
}

/// Starts vsftpd with [`vsftpd_config`] on a free loopback port, its configuration in a
/// temporary directory. The root is made vsftpd-friendly first: not writable by the `ftp`
/// user (vsftpd refuses a writable chroot) but with an upload directory owned by it.
pub fn start_vsftpd(binary: &Path, root: &Path, upload_dir: &Path) -> io::Result<RunningServer> {
    prepare_vsftpd_root(root, upload_dir)?;
    let secure = Path::new("/var/run/vsftpd/empty");
    if !secure.is_dir() {
        fs::create_dir_all(secure)?;
    }
    let config_dir = tempfile::Builder::new()
        .prefix("ftpbench-vsftpd")
        .tempdir()?;
    // The kernel hands out the port; vsftpd binds it a moment later (a rare clash shows as a
    // startup error naming the port, and a second run picks another).
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config_path = config_dir.path().join("vsftpd.conf");
    fs::write(&config_path, vsftpd_config(root, port))?;
    let mut child = Command::new(binary)
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| io::Error::new(error.kind(), format!("{}: {error}", binary.display())))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let mut last_error = io::Error::other("not started");
    // Bounded by the deadline; vsftpd prints nothing when it is ready, so wait for a 220.
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            let mut message = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_string(&mut message);
            }
            return Err(io::Error::other(format!(
                "vsftpd on port {port} exited with {status}: {}",
                message.trim()
            )));
        }
        match Client::connect(addr) {
            Ok(client) => {
                let _ = client.quit();
                let pid = child.id();
                return Ok(RunningServer {
                    child,
                    target: Target {
                        name: "vsftpd".to_owned(),
                        addr,
                        credentials: Credentials::default(),
                        pid: Some(pid),
                        tls: None,
                    },
                    _config_dir: Some(config_dir),
                });
            }
            Err(error) => last_error = error,
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(io::Error::other(format!(
        "vsftpd did not answer on port {port} within {STARTUP_TIMEOUT:?}: {last_error}"
    )))
}

fn prepare_vsftpd_root(root: &Path, upload_dir: &Path) -> io::Result<()> {
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))?;
    let name = CString::new("ftp").map_err(io::Error::other)?;
    // SAFETY: getpwnam with a valid C string; the record is read at once, before any other
    // call that could overwrite it.
    let (uid, gid) = unsafe {
        let record = libc::getpwnam(name.as_ptr());
        if record.is_null() {
            return Err(io::Error::other(
                "user 'ftp' not found: vsftpd's package creates it",
            ));
        }
        ((*record).pw_uid, (*record).pw_gid)
    };
    std::os::unix::fs::chown(upload_dir, Some(uid), Some(gid))?;
    fs::set_permissions(upload_dir, fs::Permissions::from_mode(0o755))
}

/// The hidden `--loopback-source FILE` mode: listen on an ephemeral loopback port, print
/// `listening on ADDR` on stdout, `sendfile` the whole file to the first connection, exit.
pub fn serve_loopback_source(path: &Path) -> io::Result<()> {
    let file = File::open(path)
        .map_err(|error| io::Error::new(error.kind(), format!("{}: {error}", path.display())))?;
    let length = file.metadata()?.len();
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {}", listener.local_addr()?)?;
    stdout.flush()?;
    drop(stdout);
    let (stream, _) = listener.accept()?;
    let mut offset: libc::off_t = 0;
    // Bounded: every pass sends at least one byte or returns.
    while (offset as u64) < length {
        let left = (length - offset as u64).min(1 << 30) as usize;
        // SAFETY: two descriptors we own, alive for the call, and a valid offset pointer.
        let sent =
            unsafe { libc::sendfile(stream.as_raw_fd(), file.as_raw_fd(), &mut offset, left) };
        match sent {
            -1 => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
            0 => {
                return Err(io::Error::other(format!(
                    "{} shrank while being sent",
                    path.display()
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The loopback limit: a child process `sendfile`s `path` over plain TCP to this one, which
/// reads into a 1 MiB buffer and discards, like the RETR client. Returns (bytes, seconds).
pub fn measure_loopback(path: &Path, expected: u64) -> io::Result<(u64, f64)> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("--loopback-source")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let result = (|| {
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("loopback source has no stdout pipe"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr: SocketAddr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|addr| addr.parse().ok())
            .ok_or_else(|| io::Error::other(format!("loopback source said '{}'", line.trim())))?;
        let mut buffer = vec![0u8; 1 << 20];
        let started = Instant::now();
        let mut stream = TcpStream::connect_timeout(&addr, crate::client::CONNECT_TIMEOUT)?;
        stream.set_read_timeout(Some(crate::client::IO_TIMEOUT))?;
        let mut received = 0u64;
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => break,
                Ok(count) => received += count as u64,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        if received != expected {
            return Err(io::Error::other(format!(
                "loopback received {received} bytes, expected {expected}"
            )));
        }
        Ok((received, seconds))
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vsftpd_config_names_root_and_port() {
        let config = vsftpd_config(Path::new("/srv/x"), 40123);
        assert!(config.contains("anon_root=/srv/x\n"));
        assert!(config.contains("listen_port=40123\n"));
        assert!(config.contains("background=NO\n"));
    }
}
