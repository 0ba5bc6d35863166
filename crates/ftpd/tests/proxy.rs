//! PROXY protocol headers sent straight to ftpd (issue 14): believed only from `--proxy-from`,
//! and then the client they name is the one every check and log line judges. The same
//! through a real HAProxy is in `balancer.rs`.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::{connect_from, put, Ftpd, Raw};

/// A v2 header (binary) for a TCP client `source` that connected to `destination`.
fn v2_header(source: &str, destination: &str) -> Vec<u8> {
    let addresses = (
        source.parse::<SocketAddr>().unwrap(),
        destination.parse::<SocketAddr>().unwrap(),
    );
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        addresses,
    )
    .build()
    .unwrap()
}

/// A control connection from 127.0.0.1 (the "balancer") that starts with `header`.
fn through_balancer(ftpd: &Ftpd, header: &[u8]) -> Raw {
    let mut stream = connect_from("127.0.0.1", ftpd.addr());
    stream.write_all(header).unwrap();
    Raw::over(stream)
}

/// Logs in anonymously and returns STAT's text, which names the client as the server sees it.
fn stat_peer(raw: &mut Raw) -> String {
    raw.expect("USER anonymous", 331);
    raw.expect("PASS guest@", 230);
    raw.expect("STAT", 211).text()
}

#[test]
fn a_trusted_header_names_the_client_for_every_check_and_log_issue_14() {
    let xferlog = tempfile::NamedTempFile::new().unwrap();
    let xferlog_path = xferlog.path().to_str().unwrap().to_owned();
    let ftpd = Ftpd::start(&[
        "--proxy-from",
        "127.0.0.1",
        "--max-per-ip",
        "1",
        "--xferlog",
        &xferlog_path,
    ]);
    put(ftpd.root.path(), "hello.txt", b"hello through a balancer\n");
    let port = ftpd.addr().port();
    let text = format!("PROXY TCP4 127.0.0.9 192.0.2.1 40000 {port}\r\n");
    let mut first = through_balancer(&ftpd, text.as_bytes());
    assert!(stat_peer(&mut first).contains("connected from 127.0.0.9:40000"));
    // The bounce check judges the header's client: PORT to the balancer's address is refused,
    // PORT to the client's own is taken.
    first.expect("PORT 127,0,0,1,200,10", 504);
    first.expect("PORT 127,0,0,9,200,10", 200);
    // PASV advertises the address the client connected to, as the header says.
    let pasv = first.expect("PASV", 227).text();
    assert!(pasv.contains("(192,0,2,1,"), "{pasv}");
    // A passive data connection through the balancer carries its own header: one naming
    // somebody else is dropped, the client's own is served.
    let epsv = first.expect("EPSV", 229).text();
    let data_port: u16 = epsv
        .rsplit("|||")
        .next()
        .and_then(|rest| rest.split('|').next())
        .and_then(|port| port.parse().ok())
        .unwrap();
    let data_addr = SocketAddr::from(([127, 0, 0, 1], data_port));
    let mut thief = connect_from("127.0.0.1", data_addr);
    thief
        .write_all(&v2_header(
            "127.0.0.66:5000",
            &format!("192.0.2.1:{data_port}"),
        ))
        .unwrap();
    let mut data = connect_from("127.0.0.1", data_addr);
    data.write_all(&v2_header(
        "127.0.0.9:5001",
        &format!("192.0.2.1:{data_port}"),
    ))
    .unwrap();
    first.expect("RETR hello.txt", 150);
    let mut bytes = Vec::new();
    data.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    data.read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes, b"hello through a balancer\n");
    assert_eq!(first.answer().code, 226);
    thief
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut stolen = Vec::new();
    let _ = thief.read_to_end(&mut stolen);
    assert!(stolen.is_empty());
    // The per-address limit counts the header's client, not the balancer.
    let mut second = connect_from("127.0.0.1", ftpd.addr());
    second.write_all(text.as_bytes()).unwrap();
    let refused = Raw::answer_of(second);
    assert_eq!(refused.code, 421, "{refused:?}");
    let other = format!("PROXY TCP4 127.0.0.10 192.0.2.1 40001 {port}\r\n");
    let mut third = through_balancer(&ftpd, other.as_bytes());
    third.expect("QUIT", 221);
    first.expect("QUIT", 221);
    assert!(ftpd.server.wait_for_log(
        "session start 127.0.0.9:40000 via 127.0.0.1:",
        Duration::from_secs(5)
    ));
    let logged = std::fs::read_to_string(xferlog.path()).unwrap();
    assert!(logged.contains(" 127.0.0.9 "), "{logged}");
    assert!(!logged.contains(" 127.0.0.1 "), "{logged}");
}

#[test]
fn a_header_from_an_untrusted_address_is_never_believed_issue_14() {
    let ftpd = Ftpd::start(&["--proxy-from", "127.0.0.1"]);
    let stream = connect_from("127.0.0.5", ftpd.addr());
    // No header is waited for: the greeting comes at once, and the header is just a bad line.
    let mut raw = Raw::over(stream);
    raw.send("PROXY TCP4 10.9.9.9 192.0.2.1 40000 21");
    assert_eq!(raw.answer().code, 502);
    assert!(stat_peer(&mut raw).contains("connected from 127.0.0.5:"));
}

#[test]
fn required_mode_drops_headerless_and_garbage_connections_only_issue_14() {
    let ftpd = Ftpd::start(&["--proxy-from", "127.0.0.1", "--login-timeout", "2"]);
    // Silent: dropped at the login timeout, never greeted.
    let silent = connect_from("127.0.0.1", ftpd.addr());
    // Garbage: dropped at once.
    let mut garbage = connect_from("127.0.0.1", ftpd.addr());
    garbage.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let started = Instant::now();
    assert_eq!(read_all(garbage), b"");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(read_all(silent), b"");
    assert!(ftpd
        .server
        .wait_for_log("no PROXY header", Duration::from_secs(5)));
    assert!(ftpd
        .server
        .wait_for_log("bad PROXY header", Duration::from_secs(5)));
    // Everyone else is served throughout, with v1 and v2 headers alike.
    let port = ftpd.addr().port();
    let mut v2 = through_balancer(
        &ftpd,
        &v2_header("[2001:db8::9]:40000", &format!("[2001:db8::1]:{port}")),
    );
    assert!(stat_peer(&mut v2).contains("connected from [2001:db8::9]:40000"));
    let direct = connect_from("127.0.0.2", ftpd.addr());
    let mut direct = Raw::over(direct);
    assert!(stat_peer(&mut direct).contains("connected from 127.0.0.2:"));
}

#[test]
fn optional_mode_takes_a_headerless_trusted_peer_as_itself_issue_14() {
    let ftpd = Ftpd::start(&["--proxy-from", "127.0.0.0/8", "--proxy-mode", "optional"]);
    let mut plain = Raw::over(connect_from("127.0.0.1", ftpd.addr()));
    assert!(stat_peer(&mut plain).contains("connected from 127.0.0.1:"));
    let port = ftpd.addr().port();
    let text = format!("PROXY TCP4 127.0.0.9 127.0.0.1 40000 {port}\r\n");
    let mut proxied = through_balancer(&ftpd, text.as_bytes());
    assert!(stat_peer(&mut proxied).contains("connected from 127.0.0.9:40000"));
}

/// Everything the server sends until it closes (bounded by the read timeout).
fn read_all(mut stream: TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    bytes
}

#[test]
fn pasv_advertises_per_client_network_a_name_or_the_control_address_issue_14() {
    testkit::require_tool("curl", "curl");
    let ftpd = Ftpd::start(&[
        "--passive-address",
        "192.0.2.7",
        "--passive-address-for",
        "127.0.0.5/32=127.0.0.1",
    ]);
    put(ftpd.root.path(), "file.txt", b"fetched over PASV\n");
    let pasv_from = |source: &str| {
        let mut raw = Raw::over(connect_from(source, ftpd.addr()));
        raw.expect("USER anonymous", 331);
        raw.expect("PASS guest@", 230);
        raw.expect("PASV", 227).text()
    };
    assert!(pasv_from("127.0.0.5").contains("(127,0,0,1,"));
    assert!(pasv_from("127.0.0.6").contains("(192,0,2,7,"));
    // A real client from the overridden network follows the address it is given.
    let mut curl = std::process::Command::new("curl");
    curl.args([
        "-sS",
        "--fail",
        "--disable-epsv",
        "--interface",
        "127.0.0.5",
    ])
    .arg(ftpd.url("file.txt"));
    let output = testkit::run_ok(curl, Duration::from_secs(30));
    assert_eq!(output.stdout, b"fetched over PASV\n");
    // A host name is looked up (and looked up again every minute).
    let named = Ftpd::start(&["--passive-address", "localhost"]);
    let mut raw = named.anonymous();
    assert!(raw.expect("PASV", 227).text().contains("(127,0,0,1,"));
}

#[test]
fn a_passive_address_name_that_does_not_resolve_stops_the_start_issue_14() {
    let mut command = std::process::Command::new(support::FTPD);
    command.args(["--port", "0", "--passive-address", "no-such-host.invalid"]);
    let output = testkit::run_with_timeout(command, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot resolve --passive-address"),
        "{stderr}"
    );
}
