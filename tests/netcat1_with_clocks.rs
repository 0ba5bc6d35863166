//! netcat1 against the real clock servers: the book's pairing, end to end.

use std::process::Command;
use std::time::Duration;

use testkit::{clock_line_seconds, run_with_timeout, workspace_binary, LineClient, Server};

const LINE_WAIT: Duration = Duration::from_secs(3);

fn is_clock_line(line: &str) -> bool {
    clock_line_seconds(line).is_some()
}

fn netcat1_to(server: &Server) -> LineClient {
    let mut command = Command::new(workspace_binary("netcat1"));
    command.arg(server.addr.to_string());
    LineClient::spawn(command)
}

#[test]
fn netcat1_prints_clock2_lines() {
    let server = Server::start(workspace_binary("clock2"), &["--port", "0"]);
    let client = netcat1_to(&server);
    for _ in 0..2 {
        let line = client.next_line(LINE_WAIT).expect("a line from clock2");
        assert!(is_clock_line(&line), "{line:?}");
    }
}

#[test]
fn netcat1_and_nc_share_clock2_at_once() {
    let server = Server::start(workspace_binary("clock2"), &["-port", "0"]);
    let ours = netcat1_to(&server);
    let stock = LineClient::nc(server.addr);
    let ours_first = ours.next_line(LINE_WAIT).expect("netcat1 line");
    let stock_first = stock.next_line(LINE_WAIT).expect("nc line");
    assert!(is_clock_line(&ours_first) && is_clock_line(&stock_first));
    // Both keep ticking together.
    assert!(ours.next_line(LINE_WAIT).is_some());
    assert!(stock.next_line(LINE_WAIT).is_some());
}

#[test]
fn netcat1_waits_its_turn_on_clock1() {
    let server = Server::start(workspace_binary("clock1"), &["--port", "0"]);
    let mut first = netcat1_to(&server);
    assert!(first.next_line(LINE_WAIT).is_some());
    let second = netcat1_to(&server);
    assert!(
        second.stays_silent(Duration::from_millis(1500)),
        "clock1 served two at once"
    );
    first.kill();
    let line = second
        .next_line(Duration::from_millis(1000))
        .unwrap_or_else(|| panic!("second client not served: {:?}", server.log_lines()));
    assert!(is_clock_line(&line), "{line:?}");
}

#[test]
fn netcat1_piped_into_head_ends_quietly() {
    let server = Server::start(workspace_binary("clock2"), &["--port", "0"]);
    let script = format!(
        "set -o pipefail; '{}' {} | head -1",
        workspace_binary("netcat1").display(),
        server.addr
    );
    let mut command = Command::new("bash");
    command.args(["-c", &script]);
    let output = run_with_timeout(command, Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{:?} stderr: {stderr}",
        output.status
    );
    assert!(stderr.is_empty(), "netcat1 complained: {stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(is_clock_line(stdout.trim_end()), "{stdout:?}");
}

/// Regression (issue 2): std's `io::copy` spliced socket to pipe and held each line back
/// until the next one came, a second late.
#[test]
fn netcat1_passes_each_line_on_as_it_arrives_issue2() {
    let server = Server::start(workspace_binary("clock2"), &["--port", "0", "--tz", "UTC"]);
    let client = netcat1_to(&server);
    let _first = client.next_line(LINE_WAIT).expect("first line");
    for _ in 0..3 {
        let line = client.next_line(LINE_WAIT).expect("tick line");
        let received = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let shown = clock_line_seconds(&line).expect("clock line");
        let received_of_day = received.as_secs_f64() % 86_400.0;
        let late = (received_of_day - f64::from(shown)).rem_euclid(86_400.0);
        assert!(
            late < 0.7,
            "{line} arrived {late:.3} s after its second began"
        );
    }
}
