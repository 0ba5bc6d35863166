//! clockwall on its own: argument errors, and servers that misbehave, played by in-test
//! listeners (garbage, silence, over-long lines, hang-ups). Its scenarios against the real
//! clock2 live in the workspace's top-level tests/.

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use testkit::{run_with_timeout, LineClient};

const RUN_LIMIT: Duration = Duration::from_secs(10);

fn clockwall() -> Command {
    Command::new(env!("CARGO_BIN_EXE_clockwall"))
}

fn run(args: &[String]) -> Output {
    let mut command = clockwall();
    command.args(args);
    run_with_timeout(command, RUN_LIMIT)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A server on an ephemeral port that runs `session` on its own thread for every connection,
/// with the connection's number (0 for the first). It lives until the test process ends.
fn serve<F>(session: F) -> SocketAddr
where
    F: Fn(TcpStream, usize) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test server");
    let addr = listener.local_addr().expect("test server address");
    let session = Arc::new(session);
    let count = AtomicUsize::new(0);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let number = count.fetch_add(1, Ordering::SeqCst);
            let session = Arc::clone(&session);
            thread::spawn(move || session(stream, number));
        }
    });
    addr
}

/// Sends `lines` and keeps the connection open for a minute, as a live server would.
fn send_and_hold(mut stream: TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes);
    thread::sleep(Duration::from_secs(60));
}

/// An address where nothing listens: a port the OS gave us, closed again.
fn dead_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address")
}

/// Reads piped-mode lines until one contains `needle`, failing after `timeout`.
fn wait_for_line(client: &LineClient, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match client.next_line(left) {
            Some(line) if line.contains(needle) => return line,
            Some(line) => seen.push(line),
            None => break,
        }
    }
    panic!("no line with {needle:?} within {timeout:?}; saw {seen:?}");
}

fn piped(args: &[String]) -> LineClient {
    let mut command = clockwall();
    command.args(args);
    LineClient::spawn(command)
}

#[test]
fn malformed_arguments_are_one_line_naming_them_and_exit_2_before_connecting() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let good = format!("Good={}", listener.local_addr().unwrap());
    for bad in [
        "NoEquals",
        "=localhost:8010",
        "NY=localhost",
        "NY=localhost:",
        "NY=localhost:http",
        "NY=localhost:99999",
        "NY=::1:8010",
        "Good=localhost:8020",
    ] {
        let output = run(&[good.clone(), bad.to_owned()]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{bad}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: ") && first.contains(&format!("'{bad}'")),
            "{bad}: {stderr}"
        );
        assert_eq!(
            stderr.matches("error").count(),
            1,
            "one error line for {bad}: {stderr}"
        );
        assert!(stderr.contains("Usage: clockwall"), "{bad}: {stderr}");
        assert!(
            output.stdout.is_empty(),
            "{bad}: {:?}",
            text(&output.stdout)
        );
    }
    let accepted = listener.accept();
    assert!(
        matches!(&accepted, Err(error) if error.kind() == ErrorKind::WouldBlock),
        "clockwall connected before checking its arguments: {accepted:?}"
    );
}

#[test]
fn no_clocks_or_a_bad_timeout_are_usage_errors() {
    for args in [
        vec![],
        vec![
            "--timeout".to_owned(),
            "soon".to_owned(),
            "A=h:1".to_owned(),
        ],
        vec!["--bogus".to_owned(), "A=h:1".to_owned()],
    ] {
        let output = run(&args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains("Usage: clockwall"), "{args:?}: {stderr}");
    }
}

#[test]
fn garbage_is_shown_cleaned_and_never_reaches_the_terminal() {
    let addr = serve(|stream, _| {
        send_and_hold(
            stream,
            b"\x1b[2J\x1b[H\x1b]0;pwned\x07hi\tthere\x1bc\x08!\r\n",
        );
    });
    let output = run(&[format!("Junk={addr}"), "--once".to_owned()]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let row = stdout.lines().nth(2).unwrap_or_default();
    assert_eq!(row, "hi there!", "{stdout:?}");
    assert!(
        !stdout.contains('\x1b') && !stdout.contains("pwned"),
        "{stdout:?}"
    );
}

#[test]
fn a_garbage_line_is_trimmed_to_its_column() {
    let wide =
        serve(|stream, _| send_and_hold(stream, format!("{}\n", "東京".repeat(50)).as_bytes()));
    let long = serve(|stream, _| send_and_hold(stream, &[b'y'; 100]));
    let output = run(&[
        format!("Wide={wide}"),
        format!("Long={long}"),
        "--once".to_owned(),
        "--timeout".to_owned(),
        "1".to_owned(),
    ]);
    let stdout = text(&output.stdout);
    // Long's line has not ended yet: it has sent nothing to show.
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let row = stdout.lines().nth(2).unwrap_or_default();
    assert_eq!(row, "東京東京東京東…   waiting", "{stdout}");
}

#[test]
fn reading_carries_on_after_an_over_long_line() {
    let addr = serve(|mut stream, _| {
        let _ = stream.write_all(&vec![b'x'; 256 * 1024]);
        let _ = stream.write_all(b"\nstill here\n");
        loop {
            thread::sleep(Duration::from_millis(300));
            if stream.write_all(b"still here\n").is_err() {
                return;
            }
        }
    });
    let client = piped(&[format!("Long={addr}")]);
    wait_for_line(&client, "Long=still here", Duration::from_secs(5));
}

#[test]
fn a_silent_server_shows_waiting_then_stale_and_once_gives_up() {
    let addr = serve(|stream, _| send_and_hold(stream, b""));
    let started = Instant::now();
    let output = run(&[
        format!("Quiet={addr}"),
        "--once".to_owned(),
        "--timeout".to_owned(),
        "500ms".to_owned(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(3), "--once hung");
    assert!(text(&output.stdout).contains("waiting"), "{output:?}");

    let client = piped(&[format!("Quiet={addr}")]);
    wait_for_line(&client, "Quiet=waiting", Duration::from_secs(3));
    wait_for_line(&client, "Quiet=waiting (stale)", Duration::from_secs(5));
}

#[test]
fn a_line_more_than_two_seconds_old_is_marked_stale() {
    let addr = serve(|stream, _| send_and_hold(stream, b"12:00:00\n"));
    let client = piped(&[format!("Frozen={addr}")]);
    wait_for_line(&client, "Frozen=12:00:00", Duration::from_secs(3));
    wait_for_line(&client, "Frozen=12:00:00 (stale)", Duration::from_secs(5));
}

#[test]
fn a_dead_server_does_not_stop_the_wall() {
    let live = serve(|stream, _| send_and_hold(stream, b"10:00:00\n"));
    let dead = dead_address();
    let output = run(&[
        format!("Dead={dead}"),
        format!("Live={live}"),
        "--once".to_owned(),
        "--timeout".to_owned(),
        "1".to_owned(),
    ]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let row = stdout.lines().nth(2).unwrap_or_default();
    assert_eq!(row, "offline           10:00:00", "{stdout}");
    assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
}

#[test]
fn a_server_that_hangs_up_is_offline_then_reconnected() {
    // The first connection sends one line and hangs up, the second hangs up at once (so the
    // column stays offline through two backoff delays), the third stays.
    let addr = serve(|mut stream, number| match number {
        0 => {
            let _ = stream.write_all(b"first\n");
            // Long enough for a redraw to show it.
            thread::sleep(Duration::from_secs(2));
        }
        1 => {}
        _ => send_and_hold(stream, b"second\n"),
    });
    let client = piped(&[format!("Flaky={addr}")]);
    wait_for_line(&client, "Flaky=first", Duration::from_secs(3));
    wait_for_line(&client, "Flaky=offline", Duration::from_secs(3));
    wait_for_line(&client, "Flaky=second", Duration::from_secs(6));
}

#[test]
fn names_may_be_any_utf8_and_hosts_ipv6_or_names() {
    let listener = match TcpListener::bind("[::1]:0") {
        Ok(listener) => listener,
        Err(error) => panic!("this test needs IPv6 on loopback: {error}"),
    };
    let v6 = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || send_and_hold(stream, b"06:00:00\n"));
        }
    });
    let v4 = serve(|stream, _| send_and_hold(stream, b"04:00:00\n")).port();
    let output = run(&[
        "--once".to_owned(),
        format!("東京=[::1]:{v6}"),
        format!("Local=localhost:{v4}"),
    ]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "東京              Local", "{stdout}");
    assert_eq!(lines[2], "06:00:00          04:00:00", "{stdout}");
}
