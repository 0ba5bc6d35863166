//! FTPS (issue 6): explicit AUTH TLS and implicit TLS with curl, lftp, Python's FTP_TLS and
//! suppaftp over rustls, files compared by SHA-256; the policy replies; the clear-text
//! fallback for clients without TLS.

mod support;

use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use support::{noise, put, sha256, Ftpd, Raw};
use testkit::{require_tool, run_ok, run_with_timeout};

const CLIENT_LIMIT: Duration = Duration::from_secs(60);
const BIG: usize = 3 * 1024 * 1024 + 17;

/// A self-signed certificate for localhost and 127.0.0.1, written as PEM files.
struct Certificate {
    dir: tempfile::TempDir,
    der: Vec<u8>,
}

impl Certificate {
    fn new() -> Certificate {
        let certified = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), certified.cert.pem()).unwrap();
        std::fs::write(
            dir.path().join("key.pem"),
            certified.signing_key.serialize_pem(),
        )
        .unwrap();
        Certificate {
            dir,
            der: certified.cert.der().to_vec(),
        }
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert().display().to_string(),
            "--tls-key".into(),
            self.key().display().to_string(),
        ]
    }

    /// A rustls client that trusts exactly this certificate.
    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(self.der.clone()))
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

fn start(certificate: &Certificate, extra: &[&str]) -> Ftpd {
    let mut args: Vec<String> = certificate.args();
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Ftpd::start(&args)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[test]
fn feat_offers_tls_only_with_a_certificate() {
    let plain = Ftpd::start(&[]);
    let mut raw = Raw::connect(plain.addr());
    let feat = raw.expect("FEAT", 211);
    assert!(!feat.text().contains("AUTH TLS"), "{feat:?}");
    raw.expect("AUTH TLS", 502);
    raw.expect("USER anonymous", 331);

    let certificate = Certificate::new();
    let secure = start(&certificate, &[]);
    let mut raw = Raw::connect(secure.addr());
    let feat = raw.expect("FEAT", 211);
    for feature in ["AUTH TLS", "PBSZ", "PROT"] {
        assert!(
            feat.lines.iter().any(|line| line.trim() == feature),
            "{feature}: {feat:?}"
        );
    }
    raw.expect("PBSZ 0", 503);
    raw.expect("PROT P", 503);
    raw.expect("CCC", 502);
}

#[test]
fn curl_over_explicit_and_implicit_tls() {
    require_tool("curl", "curl");
    let certificate = Certificate::new();
    let implicit_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ftpd = start(
        &certificate,
        &["--write", "--implicit-tls-port", &implicit_port.to_string()],
    );
    let big = noise(BIG, 61);
    put(ftpd.root.path(), "big.bin", &big);
    let local = tempfile::tempdir().unwrap();
    let got = local.path().join("got.bin");
    let mut download = Command::new("curl");
    download
        .args(["-sS", "--fail", "--ssl-reqd", "-k", "-o"])
        .arg(&got)
        .arg(ftpd.url("big.bin"));
    run_ok(download, CLIENT_LIMIT);
    assert_eq!(sha256(&read(&got)), sha256(&big));

    let upload = local.path().join("up.bin");
    let sent = noise(BIG, 62);
    std::fs::write(&upload, &sent).unwrap();
    let mut put_file = Command::new("curl");
    put_file
        .args(["-sS", "--fail", "--ssl-reqd", "-k", "-T"])
        .arg(&upload)
        .arg(ftpd.url(""));
    run_ok(put_file, CLIENT_LIMIT);
    assert_eq!(sha256(&read(&ftpd.path("up.bin"))), sha256(&sent));

    let mut listing = Command::new("curl");
    listing
        .args(["-sS", "--fail", "--ssl-reqd", "-k"])
        .arg(ftpd.url(""));
    let output = run_ok(listing, CLIENT_LIMIT);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(" big.bin"),
        "LIST over TLS"
    );

    let mut implicit = Command::new("curl");
    implicit
        .args(["-sS", "--fail", "-k", "-o"])
        .arg(&got)
        .arg(format!("ftps://127.0.0.1:{implicit_port}/big.bin"));
    run_ok(implicit, CLIENT_LIMIT);
    assert_eq!(sha256(&read(&got)), sha256(&big));
}

#[test]
fn lftp_mirrors_over_tls() {
    require_tool("lftp", "lftp");
    let certificate = Certificate::new();
    let ftpd = start(&certificate, &["--write", "--tls-required"]);
    let big = noise(BIG, 71);
    put(ftpd.root.path(), "tree/big.bin", &big);
    put(ftpd.root.path(), "tree/sub/small.txt", b"small\n");
    let local = tempfile::tempdir().unwrap();
    let outgoing = local.path().join("outgoing");
    put(&outgoing, "a.bin", &noise(200_000, 72));
    let commands = format!(
        "set ssl:verify-certificate no; set ftp:ssl-force yes; set ftp:ssl-protect-data yes; \
         set net:max-retries 1; set net:timeout 10; mirror tree {down}; mirror -R {up} uploaded; quit",
        down = local.path().join("down").display(),
        up = outgoing.display(),
    );
    let mut command = Command::new("lftp");
    command
        .args(["-u", "anonymous,guest@", "-e", &commands])
        .arg(format!("ftp://127.0.0.1:{}", ftpd.addr().port()));
    let output = run_with_timeout(command, CLIENT_LIMIT);
    assert!(
        output.status.success(),
        "lftp: {}\nserver log: {:#?}",
        String::from_utf8_lossy(&output.stderr),
        ftpd.server.log_lines()
    );
    assert_eq!(
        sha256(&read(&local.path().join("down/big.bin"))),
        sha256(&big)
    );
    assert_eq!(read(&local.path().join("down/sub/small.txt")), b"small\n");
    assert_eq!(
        read(&ftpd.path("uploaded/a.bin")),
        read(&outgoing.join("a.bin"))
    );
}

#[test]
fn python_ftp_tls_with_prot_p() {
    require_tool("python3", "python3");
    let certificate = Certificate::new();
    let ftpd = start(&certificate, &["--write"]);
    let big = noise(BIG, 81);
    put(ftpd.root.path(), "big.bin", &big);
    // ftplib does not reuse the control connection's TLS session on data connections by
    // itself; this subclass is the usual fix, and what a server that requires reuse needs.
    let script = r#"
import ftplib, hashlib, io, ssl, sys
class ReusingFTP_TLS(ftplib.FTP_TLS):
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size
context = ssl.create_default_context(cafile=sys.argv[2])
ftp = ReusingFTP_TLS(context=context)
ftp.connect("127.0.0.1", int(sys.argv[1]), timeout=20)
ftp.auth()
ftp.login()
ftp.prot_p()
digest = hashlib.sha256()
ftp.retrbinary("RETR big.bin", digest.update)
ftp.storbinary("STOR up.bin", io.BytesIO(b"tls" * 50000))
names = [name for name, facts in ftp.mlsd()]
ftp.quit()
print(digest.hexdigest(), sorted(names))
"#;
    let mut command = Command::new("python3");
    command.args([
        "-c",
        script,
        &ftpd.addr().port().to_string(),
        certificate.cert().to_str().unwrap(),
    ]);
    let output = run_ok(command, CLIENT_LIMIT);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with(&sha256(&big)), "{stdout}");
    assert!(stdout.contains("['big.bin', 'up.bin']"), "{stdout}");
    assert_eq!(read(&ftpd.path("up.bin")), b"tls".repeat(50000));
}

#[test]
fn suppaftp_with_rustls_verifies_the_certificate_and_transfers() {
    let certificate = Certificate::new();
    let ftpd = start(&certificate, &["--write", "--tls-required"]);
    let big = noise(BIG, 91);
    let connector = suppaftp::RustlsConnector::from(certificate.client_config());
    let mut ftp = suppaftp::RustlsFtpStream::connect(ftpd.addr())
        .unwrap()
        .into_secure(connector, "localhost")
        .unwrap();
    ftp.login("anonymous", "x").unwrap();
    ftp.transfer_type(suppaftp::types::FileType::Binary)
        .unwrap();
    ftp.put_file("big.bin", &mut Cursor::new(&big)).unwrap();
    assert_eq!(
        sha256(&ftp.retr_as_buffer("big.bin").unwrap().into_inner()),
        sha256(&big)
    );
    assert_eq!(ftp.nlst(None).unwrap(), ["big.bin"]);
    ftp.quit().unwrap();
}

#[test]
fn active_mode_data_connections_over_tls() {
    let certificate = Certificate::new();
    let ftpd = start(&certificate, &[]);
    let data = noise(500_000, 92);
    put(ftpd.root.path(), "a.bin", &data);
    let connector = suppaftp::RustlsConnector::from(certificate.client_config());
    let mut ftp = suppaftp::RustlsFtpStream::connect(ftpd.addr())
        .unwrap()
        .into_secure(connector, "localhost")
        .unwrap()
        .active_mode(Duration::from_secs(10));
    ftp.login("anonymous", "x").unwrap();
    ftp.transfer_type(suppaftp::types::FileType::Binary)
        .unwrap();
    assert_eq!(
        sha256(&ftp.retr_as_buffer("a.bin").unwrap().into_inner()),
        sha256(&data)
    );
    assert_eq!(ftp.nlst(None).unwrap(), ["a.bin"]);
}

#[test]
fn tls_required_refuses_plaintext_logins_and_transfers() {
    let certificate = Certificate::new();
    let ftpd = start(&certificate, &["--tls-required"]);
    let mut raw = Raw::connect(ftpd.addr());
    let refused = raw.expect("USER anonymous", 534);
    assert!(refused.text().contains("AUTH TLS"), "{refused:?}");
    raw.expect("PASS x", 534);
    raw.expect("SYST", 215);
}

#[test]
fn plaintext_sent_after_auth_tls_is_discarded() {
    let certificate = Certificate::new();
    let ftpd = start(&certificate, &[]);
    let mut raw = Raw::connect(ftpd.addr());
    // A man in the middle appends a login to the AUTH line; it must not run.
    raw.send_raw(b"AUTH TLS\r\nUSER anonymous\r\nPASS x\r\n");
    assert_eq!(raw.answer().code, 234);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(certificate.client_config(), name).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, raw.writer.try_clone().unwrap());
    tls.write_all(b"PWD\r\n").unwrap();
    let mut reply = [0u8; 256];
    let count = tls.read(&mut reply).unwrap();
    let reply = String::from_utf8_lossy(&reply[..count]);
    assert!(reply.starts_with("530"), "the smuggled login ran: {reply}");
}

#[test]
fn data_connections_must_resume_the_tls_session_unless_told_otherwise() {
    require_tool("python3", "python3");
    let certificate = Certificate::new();
    put(tempfile::tempdir().unwrap().path(), "unused", b"");
    // Plain ftplib FTP_TLS opens data connections with a fresh TLS session.
    let script = r#"
import ftplib, ssl, sys
ftp = ftplib.FTP_TLS(context=ssl._create_unverified_context())
ftp.connect("127.0.0.1", int(sys.argv[1]), timeout=20)
ftp.auth(); ftp.login(); ftp.prot_p()
try:
    print("listed", ftp.nlst())
except Exception:
    # The data connection's handshake is refused; the reason follows on the control connection.
    print("refused", ftp.getline())
"#;
    for (extra, expected) in [
        (&[][..], "refused 522"),
        (&["--tls-no-session-reuse"][..], "listed"),
    ] {
        let ftpd = start(&certificate, extra);
        let mut command = Command::new("python3");
        command.args(["-c", script, &ftpd.addr().port().to_string()]);
        let output = run_ok(command, CLIENT_LIMIT);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.starts_with(expected), "{extra:?}: {stdout}");
    }
}

#[test]
fn the_stock_ftp_client_without_tls_still_works_when_tls_is_optional() {
    require_tool("ftp", "ftp");
    let certificate = Certificate::new();
    let ftpd = start(&certificate, &[]);
    put(ftpd.root.path(), "plain.txt", b"no tls needed\n");
    let local = tempfile::tempdir().unwrap();
    let script = format!(
        "user anonymous guest@\nbinary\nget plain.txt {}\nquit\n",
        local.path().join("plain.txt").display()
    );
    let mut command = Command::new("sh");
    command.args([
        "-c",
        &format!(
            "printf '%s' \"$SCRIPT\" | ftp -n -p 127.0.0.1 {}",
            ftpd.addr().port()
        ),
    ]);
    command.env("SCRIPT", script);
    run_ok(command, CLIENT_LIMIT);
    assert_eq!(read(&local.path().join("plain.txt")), b"no tls needed\n");
}

#[test]
fn a_failed_handshake_ends_only_that_session_with_a_log_line() {
    let certificate = Certificate::new();
    let ftpd = start(&certificate, &[]);
    let mut raw = Raw::connect(ftpd.addr());
    raw.expect("AUTH TLS", 234);
    raw.send_raw(b"this is not a TLS ClientHello\r\n\r\n");
    let mut rest = Vec::new();
    let _ = raw.reader.read_to_end(&mut rest);
    assert!(
        ftpd.server
            .wait_for_log("TLS handshake failed", Duration::from_secs(5)),
        "{:?}",
        ftpd.server.log_lines()
    );
    let mut other = Raw::connect(ftpd.addr());
    other.expect("NOOP", 200);
}

#[test]
fn each_listener_announces_itself_plain_first_then_implicit_tls_issue_10() {
    let certificate = Certificate::new();
    let ftpd = start(&certificate, &["--implicit-tls-port", "0"]);
    let mut announced = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while announced.len() < 2 && std::time::Instant::now() < deadline {
        announced = ftpd
            .server
            .log_lines()
            .iter()
            .filter_map(|line| line.strip_prefix("listening on "))
            .map(|addr| addr.parse::<std::net::SocketAddr>().unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(announced.len(), 2, "{:?}", ftpd.server.log_lines());
    assert_eq!(
        announced[0],
        ftpd.addr(),
        "the first line is the plain listener"
    );
    let mut plain = Raw::connect(announced[0]);
    plain.expect("NOOP", 200);
    let socket = std::net::TcpStream::connect(announced[1]).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(certificate.client_config(), name).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, socket);
    let mut greeting = [0u8; 4];
    tls.read_exact(&mut greeting).unwrap();
    assert_eq!(
        &greeting, b"220 ",
        "the second line is the implicit-TLS listener"
    );
}

#[test]
fn a_handshake_trickled_a_byte_at_a_time_ends_at_the_login_timeout_issue_10() {
    let certificate = Certificate::new();
    let ftpd = start(&certificate, &["--login-timeout", "2"]);
    let mut raw = Raw::connect(ftpd.addr());
    let connected = std::time::Instant::now();
    raw.expect("AUTH TLS", 234);
    // A TLS record header promising 512 bytes of handshake, then a byte every 200 ms.
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    hello.resize(517, 0x42);
    raw.writer
        .set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    let mut closed = None;
    for &byte in &hello {
        if raw.writer.write_all(&[byte]).is_err() {
            closed = Some(connected.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut sink = [0u8; 64];
        match raw.writer.read(&mut sink) {
            Ok(0) => {
                closed = Some(connected.elapsed());
                break;
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => {
                closed = Some(connected.elapsed());
                break;
            }
        }
    }
    let took = closed.expect("the trickled handshake was never cut");
    assert!(took < Duration::from_secs(2 + 2), "cut after {took:?}");
}

/// True when a fresh explicit-TLS client that trusts only `certificate` completes its
/// handshake with the server at `addr`, that is, when the server presents that certificate.
fn presents(addr: std::net::SocketAddr, certificate: &Certificate) -> bool {
    let mut raw = Raw::connect(addr);
    raw.expect("AUTH TLS", 234);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut connection = rustls::ClientConnection::new(certificate.client_config(), name).unwrap();
    let mut socket = raw.writer.try_clone().unwrap();
    while connection.is_handshaking() {
        if connection.complete_io(&mut socket).is_err() {
            return false;
        }
    }
    true
}

#[test]
fn a_renewed_certificate_is_served_after_sighup_and_a_running_download_completes_issue_11() {
    require_tool("curl", "curl");
    let old = Certificate::new();
    let renewed = Certificate::new();
    let live = tempfile::tempdir().unwrap();
    let (cert, key) = (live.path().join("cert.pem"), live.path().join("key.pem"));
    std::fs::copy(old.cert(), &cert).unwrap();
    std::fs::copy(old.key(), &key).unwrap();
    let config = live.path().join("ftpd.toml");
    std::fs::write(&config, format!("tls-cert = {cert:?}\ntls-key = {key:?}\n")).unwrap();
    let ftpd = Ftpd::start(&["--config", config.to_str().unwrap()]);
    let big = noise(6 * 1024 * 1024, 71);
    put(ftpd.root.path(), "big.bin", &big);
    assert!(presents(ftpd.addr(), &old) && !presents(ftpd.addr(), &renewed));
    // A PROT P download slow enough to span the renewal.
    let local = tempfile::tempdir().unwrap();
    let got = local.path().join("got.bin");
    let mut download = Command::new("curl");
    download
        .args([
            "-sS",
            "--fail",
            "--ssl-reqd",
            "-k",
            "--limit-rate",
            "2M",
            "-o",
        ])
        .arg(&got)
        .arg(ftpd.url("big.bin"));
    let downloading = std::thread::spawn(move || run_with_timeout(download, CLIENT_LIMIT));
    std::thread::sleep(Duration::from_millis(700));
    // certbot replaces the files; the service manager sends SIGHUP.
    std::fs::copy(renewed.cert(), &cert).unwrap();
    std::fs::copy(renewed.key(), &key).unwrap();
    ftpd.server.signal("HUP");
    assert!(
        ftpd.server
            .wait_for_log("reloaded", Duration::from_secs(10)),
        "{:?}",
        ftpd.server.log_lines()
    );
    assert!(presents(ftpd.addr(), &renewed) && !presents(ftpd.addr(), &old));
    let output = downloading.join().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(sha256(&read(&got)), sha256(&big));
}
