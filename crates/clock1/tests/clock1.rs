//! clock1 end to end: sequential service, read with the stock `nc`.

use std::process::Command;
use std::time::{Duration, Instant};

use testkit::{clock_line_seconds, run_with_timeout, seconds_apart, LineClient, Server};

const CLOCK1: &str = env!("CARGO_BIN_EXE_clock1");
const LINE_WAIT: Duration = Duration::from_secs(3);

fn start() -> Server {
    Server::start(CLOCK1, &["-host", "127.0.0.1", "-port", "0"])
}

#[test]
fn serves_one_client_at_a_time_and_the_next_at_once() {
    let server = start();
    let mut first = LineClient::nc(server.addr);
    let line = first.next_line(LINE_WAIT).expect("first client line");
    assert!(clock_line_seconds(&line).is_some(), "{line:?}");
    let second = LineClient::nc(server.addr);
    assert!(
        second.stays_silent(Duration::from_millis(1500)),
        "second client heard something while the first was connected"
    );
    assert!(
        first.next_line(LINE_WAIT).is_some(),
        "first client still ticking"
    );
    let left = Instant::now();
    first.kill();
    let line = second.next_line(LINE_WAIT).expect("second client's turn");
    // clock1 watches for the hang-up between ticks; the Go original waits for a failed write
    // (0.9-1.9 s). Allow for process start-up and pipes, not for a tick.
    assert!(
        left.elapsed() < Duration::from_millis(500),
        "took {:?}",
        left.elapsed()
    );
    assert!(clock_line_seconds(&line).is_some(), "{line:?}");
}

#[test]
fn ticks_every_second_on_the_second() {
    let server = start();
    let client = LineClient::nc(server.addr);
    let seconds: Vec<u32> = (0..4)
        .map(|_| {
            clock_line_seconds(&client.next_line(LINE_WAIT).expect("line")).expect("clock line")
        })
        .collect();
    for pair in seconds.windows(2) {
        assert_eq!((pair[0] + 1) % 86_400, pair[1], "{seconds:?}");
    }
}

#[test]
fn unknown_zone_and_bad_format_fail_at_startup() {
    for (args, tz, named) in [
        (&["--port", "0"][..], "Atlantis/Capital", "Atlantis/Capital"),
        (&["--port", "0", "--format", "%Q"], "UTC", "%Q"),
    ] {
        let mut command = Command::new(CLOCK1);
        command.args(args).env("TZ", tz);
        let output = run_with_timeout(command, Duration::from_secs(10));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.starts_with("error:") && stderr.contains(named),
            "{stderr}"
        );
    }
}

#[test]
fn a_port_in_use_is_a_one_line_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let mut command = Command::new(CLOCK1);
    command.args(["--host", "127.0.0.1", "--port", &port]);
    let output = run_with_timeout(command, Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&port), "{stderr}");
}

// Issue 15: how `TZ` is read. clock1 has no chrono in its tests, so the references are the
// system clock in UTC, Tokyo as UTC+9 (no daylight saving since 1951) and `date` for the
// system zone.

/// The seconds of day clock1 shows with `TZ` as given (`None`: unset).
fn shown_seconds_with_tz(tz: Option<&str>) -> (u32, String) {
    let mut command = Command::new(CLOCK1);
    command.args(["--host", "127.0.0.1", "--port", "0"]);
    match tz {
        Some(tz) => command.env("TZ", tz),
        None => command.env_remove("TZ"),
    };
    let server = Server::spawn(command);
    let line = LineClient::nc(server.addr)
        .next_line(LINE_WAIT)
        .expect("line");
    let shown = clock_line_seconds(&line).unwrap_or_else(|| panic!("not HH:MM:SS: {line:?}"));
    (shown, line)
}

/// Seconds into the current UTC day, shifted by `offset_hours`.
fn seconds_of_day_at_offset(offset_hours: u64) -> u32 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    ((since_epoch + offset_hours * 3600) % 86_400) as u32
}

#[test]
fn tz_unset_uses_the_system_zone_as_date_does_issue_15() {
    let (shown, line) = shown_seconds_with_tz(None);
    let mut date = Command::new("date");
    date.arg("+%H:%M:%S").env_remove("TZ");
    let output = run_with_timeout(date, Duration::from_secs(10));
    let said = String::from_utf8_lossy(&output.stdout);
    let reference = clock_line_seconds(said.trim()).unwrap_or_else(|| panic!("date: {said:?}"));
    assert!(
        seconds_apart(shown, reference) <= 1,
        "TZ unset showed {line}, date said {said}"
    );
}

#[test]
fn tz_empty_means_utc_issue_15() {
    let (shown, line) = shown_seconds_with_tz(Some(""));
    assert!(
        seconds_apart(shown, seconds_of_day_at_offset(0)) <= 1,
        "TZ= showed {line}"
    );
}

#[test]
fn tz_colon_name_is_that_zone_issue_15() {
    let (shown, line) = shown_seconds_with_tz(Some(":Asia/Tokyo"));
    assert!(
        seconds_apart(shown, seconds_of_day_at_offset(9)) <= 1,
        "TZ=:Asia/Tokyo showed {line}"
    );
}

#[test]
fn tz_name_is_that_zone_issue_15() {
    let (shown, line) = shown_seconds_with_tz(Some("Asia/Tokyo"));
    assert!(
        seconds_apart(shown, seconds_of_day_at_offset(9)) <= 1,
        "TZ=Asia/Tokyo showed {line}"
    );
}

#[test]
fn tz_garbage_is_exit_2_with_one_error_line_naming_it_issue_15() {
    testkit::assert_rejects_zone(std::path::Path::new(CLOCK1), "Not a/Zone!");
}
