//! netcat1 end to end against plain listeners (the clocks are in the top-level tests).

use std::io::Write;
use std::net::TcpListener;
use std::process::Command;
use std::thread;
use std::time::Duration;

use testkit::run_with_timeout;

const NETCAT1: &str = env!("CARGO_BIN_EXE_netcat1");
const RUN_LIMIT: Duration = Duration::from_secs(20);

fn netcat1(args: &[&str]) -> std::process::Output {
    let mut command = Command::new(NETCAT1);
    command.args(args);
    run_with_timeout(command, RUN_LIMIT)
}

#[test]
fn copies_the_connection_to_stdout_until_eof() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let sent = payload.clone();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.write_all(&sent).unwrap();
    });
    let output = netcat1(&[&addr.to_string()]);
    server.join().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, payload);
}

#[test]
fn ipv6_literals_work() {
    let Ok(listener) = TcpListener::bind("[::1]:0") else {
        panic!("this machine has no ::1; the test needs IPv6 loopback");
    };
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.write_all(b"12:00:00\n").unwrap();
    });
    let output = netcat1(&[&format!("[::1]:{}", addr.port())]);
    server.join().unwrap();
    assert_eq!(output.stdout, b"12:00:00\n");
}

#[test]
fn a_closed_port_is_one_line_naming_the_address_exit_1() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let target = format!("127.0.0.1:{port}");
    let output = netcat1(&[&target]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&target) && stderr.contains("refused"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_host_is_one_line_exit_1() {
    let output = netcat1(&["no-such-host.invalid:8000"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no-such-host.invalid:8000"), "{stderr}");
}

#[test]
fn an_address_without_a_port_is_a_usage_error() {
    let output = netcat1(&["localhost"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error:") && stderr.contains("Usage:"),
        "{stderr}"
    );
}
