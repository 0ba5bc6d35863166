//! clock2 end to end: the real binary on an ephemeral port, read with the stock `nc`.

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{Timelike, Utc};
use chrono_tz::Tz;
use testkit::{
    clock_line_seconds, exhaust_descriptors, open_descriptors, process_status, run_with_timeout,
    seconds_apart, LineClient, Server,
};

const CLOCK2: &str = env!("CARGO_BIN_EXE_clock2");
const LINE_WAIT: Duration = Duration::from_secs(3);

fn start(args: &[&str], tz: Option<&str>) -> Server {
    let mut command = Command::new(CLOCK2);
    command
        .args(["--host", "127.0.0.1", "--port", "0"])
        .args(args);
    match tz {
        Some(tz) => command.env("TZ", tz),
        None => command.env_remove("TZ"),
    };
    Server::spawn(command)
}

fn seconds_of_day_in(zone: Tz) -> u32 {
    Utc::now().with_timezone(&zone).num_seconds_from_midnight()
}

#[test]
fn first_line_comes_at_once_in_clock_format() {
    let server = start(&["--tz", "UTC"], None);
    let connected = Instant::now();
    let client = LineClient::nc(server.addr);
    let line = client.next_line(LINE_WAIT).expect("first line");
    assert!(
        connected.elapsed() < Duration::from_millis(900),
        "first line took {:?}",
        connected.elapsed()
    );
    let shown = clock_line_seconds(&line).unwrap_or_else(|| panic!("not HH:MM:SS: {line:?}"));
    assert!(
        seconds_apart(shown, seconds_of_day_in(Tz::UTC)) <= 1,
        "{line}"
    );
}

#[test]
fn one_line_per_second_without_gaps() {
    let server = start(&[], None);
    let client = LineClient::nc(server.addr);
    let seconds: Vec<u32> = (0..4)
        .map(|_| {
            let line = client.next_line(LINE_WAIT).expect("a line each second");
            clock_line_seconds(&line).unwrap_or_else(|| panic!("{line:?}"))
        })
        .collect();
    for pair in seconds.windows(2) {
        assert_eq!(
            (pair[0] + 1) % 86_400,
            pair[1],
            "skipped or repeated: {seconds:?}"
        );
    }
}

#[test]
fn tz_names_each_give_that_zones_time() {
    let zones = [
        ("US/Eastern", Tz::US__Eastern),
        ("Asia/Tokyo", Tz::Asia__Tokyo),
        ("Europe/London", Tz::Europe__London),
        (":Asia/Tokyo", Tz::Asia__Tokyo),
        ("UTC", Tz::UTC),
    ];
    let servers: Vec<_> = zones
        .iter()
        .map(|(name, _)| start(&[], Some(name)))
        .collect();
    for (server, (name, zone)) in servers.iter().zip(zones) {
        let line = LineClient::nc(server.addr)
            .next_line(LINE_WAIT)
            .expect("line");
        let shown = clock_line_seconds(&line).expect("clock line");
        assert!(
            seconds_apart(shown, seconds_of_day_in(zone)) <= 1,
            "TZ={name} showed {line}"
        );
    }
}

#[test]
fn tz_flag_overrides_the_environment() {
    let server = start(&["--tz", "Asia/Tokyo"], Some("US/Eastern"));
    let line = LineClient::nc(server.addr)
        .next_line(LINE_WAIT)
        .expect("line");
    let shown = clock_line_seconds(&line).expect("clock line");
    assert!(
        seconds_apart(shown, seconds_of_day_in(Tz::Asia__Tokyo)) <= 1,
        "{line}"
    );
}

#[test]
fn custom_format_is_used() {
    let server = start(&["--format", "%Y-%m-%d %H:%M:%S %Z", "--tz", "UTC"], None);
    let line = LineClient::nc(server.addr)
        .next_line(LINE_WAIT)
        .expect("line");
    let today = Utc::now().format("%Y-%m-%d").to_string();
    assert!(line.starts_with(&today) && line.ends_with(" UTC"), "{line}");
}

fn expect_usage_error(args: &[&str], tz: Option<&str>, names: &str) {
    let mut command = Command::new(CLOCK2);
    command.args(args);
    if let Some(tz) = tz {
        command.env("TZ", tz);
    }
    let output = run_with_timeout(command, Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error:") && first.contains(names),
        "{args:?}: {stderr}"
    );
    assert!(stderr.contains("Usage:"), "{args:?}: {stderr}");
}

#[test]
fn unknown_zone_is_a_startup_error_naming_it() {
    expect_usage_error(&["--port", "0"], Some("Mars/Olympus"), "Mars/Olympus");
    expect_usage_error(&["--port", "0", "--tz", "Not/AZone"], None, "Not/AZone");
}

#[test]
fn bad_flags_and_values_are_usage_errors() {
    expect_usage_error(&["--port", "eighty"], None, "eighty");
    expect_usage_error(&["-port", "70000"], None, "70000");
    expect_usage_error(&["--bogus"], None, "--bogus");
    expect_usage_error(&["--format", "%H:%Q"], None, "%H:%Q");
}

#[test]
fn every_spelling_of_port_works() {
    for args in [
        &["-port", "0"][..],
        &["-port=0"],
        &["--port", "0"],
        &["--port=0"],
    ] {
        let mut command = Command::new(CLOCK2);
        command.args(["-host", "127.0.0.1"]).args(args);
        let server = Server::spawn(command);
        assert_ne!(server.addr.port(), 0, "{args:?}");
        assert!(TcpStream::connect(server.addr).is_ok(), "{args:?}");
    }
}

#[test]
fn help_and_version_exit_zero() {
    for flag in ["-h", "--help", "-help", "--version"] {
        let mut command = Command::new(CLOCK2);
        command.arg(flag);
        let output = run_with_timeout(command, Duration::from_secs(10));
        assert!(output.status.success(), "{flag}");
        assert!(!output.stdout.is_empty(), "{flag} printed nothing");
    }
}

#[test]
fn two_clients_are_served_at_once() {
    let server = start(&[], None);
    let first = LineClient::nc(server.addr);
    let second = LineClient::nc(server.addr);
    for _ in 0..2 {
        let a = first.next_line(LINE_WAIT).expect("first client line");
        let b = second.next_line(LINE_WAIT).expect("second client line");
        let (a, b) = (
            clock_line_seconds(&a).unwrap(),
            clock_line_seconds(&b).unwrap(),
        );
        assert!(seconds_apart(a, b) <= 1);
    }
}

#[test]
fn clients_beyond_max_clients_are_closed_at_once() {
    let server = start(&["--max-clients", "1"], None);
    let first = LineClient::nc(server.addr);
    assert!(first.next_line(LINE_WAIT).is_some());
    let extra = LineClient::nc(server.addr);
    assert!(
        extra.closes_within(Duration::from_secs(2)),
        "extra client kept open"
    );
    assert!(
        server.wait_for_log("refused", Duration::from_secs(2)),
        "{:?}",
        server.log_lines()
    );
    assert!(
        first.next_line(LINE_WAIT).is_some(),
        "first client still served"
    );
}

#[test]
fn a_client_that_leaves_is_noticed_at_once_and_logged() {
    let server = start(&[], None);
    let mut client = LineClient::nc(server.addr);
    assert!(client.next_line(LINE_WAIT).is_some());
    assert!(server.wait_for_log("(1 live)", Duration::from_secs(2)));
    let left = Instant::now();
    client.kill();
    assert!(
        server.wait_for_log("disconnect", Duration::from_secs(2)),
        "{:?}",
        server.log_lines()
    );
    // The log is read through a pipe and polled; the server itself notices within a few ms.
    assert!(
        left.elapsed() < Duration::from_millis(900),
        "took {:?}",
        left.elapsed()
    );
    assert!(server
        .log_lines()
        .iter()
        .any(|line| line.contains("(0 live)")));
}

#[test]
fn a_client_that_never_reads_does_not_hold_up_others() {
    let server = start(&[], None);
    // This one connects and never reads; the server's writes to it just queue.
    let _stalled = TcpStream::connect(server.addr).expect("connect");
    let reader = LineClient::nc(server.addr);
    for _ in 0..3 {
        assert!(reader.next_line(LINE_WAIT).is_some());
    }
}

#[test]
fn descriptor_exhaustion_backs_off_quietly_and_recovers() {
    let script = format!("ulimit -n 24 && exec '{CLOCK2}' --host 127.0.0.1 --port 0");
    let mut command = Command::new("sh");
    command.args(["-c", &script]);
    let server = Server::spawn(command);
    // Hold far more connections than the server has descriptors for.
    let hogs = exhaust_descriptors(&server, 60);
    let failures = server
        .log_lines()
        .iter()
        .filter(|line| line.contains("accept failed"))
        .count();
    assert!(
        failures <= 3,
        "{failures} accept-failure lines: log once per burst"
    );
    drop(hogs);
    let client = LineClient::nc(server.addr);
    let line = client
        .next_line(Duration::from_secs(4))
        .expect("served again once descriptors came free");
    assert!(clock_line_seconds(&line).is_some(), "{line:?}");
    assert!(server.wait_for_log("accept recovered", Duration::from_secs(2)));
}

/// Waits until the server is back to `threads` threads, or a few seconds have passed.
fn settle_to_threads(pid: u32, threads: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = process_status(pid, "Threads:");
        if now <= threads || Instant::now() >= deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn resources_return_to_baseline_after_2000_clients_come_and_go() {
    let server = start(&[], None);
    let pid = server.pid();
    let _ = LineClient::nc(server.addr).next_line(LINE_WAIT);
    let base_threads = settle_to_threads(pid, 1);
    let base_fds = open_descriptors(pid);
    let base_rss = process_status(pid, "VmRSS:");
    let clients: Vec<TcpStream> = (0..2000)
        .map(|_| TcpStream::connect(server.addr).expect("connect"))
        .collect();
    assert!(
        server.wait_for_log("(2000 live)", Duration::from_secs(20)),
        "not all 2000 clients were admitted"
    );
    let peak_rss = process_status(pid, "VmRSS:");
    drop(clients);
    let threads = settle_to_threads(pid, base_threads);
    assert_eq!(threads, base_threads, "session threads left behind");
    assert!(server.wait_for_log("(0 live)", Duration::from_secs(5)));
    assert_eq!(open_descriptors(pid), base_fds, "descriptors left open");
    let rss = process_status(pid, "VmRSS:");
    // The C library keeps a bounded cache of freed thread stacks (40 MiB of address space,
    // about 160 of our stacks); everything else the 2000 sessions used is given back.
    let grew = rss.saturating_sub(base_rss);
    let peak_growth = peak_rss - base_rss;
    assert!(
        grew * 4 < peak_growth,
        "RSS {base_rss} KiB → peak {peak_rss} KiB → {rss} KiB after all left"
    );
}

// Issue 15: how `TZ` is read. One test per case, each against an independent reference.

/// The seconds of day clock2 shows with `TZ` as given (`None`: unset).
fn shown_seconds_with_tz(tz: Option<&str>) -> (u32, String) {
    let server = start(&[], tz);
    let line = LineClient::nc(server.addr)
        .next_line(LINE_WAIT)
        .expect("line");
    let shown = clock_line_seconds(&line).unwrap_or_else(|| panic!("not HH:MM:SS: {line:?}"));
    (shown, line)
}

/// The system's time of day as the C library sees it: `date` with `TZ` unset.
fn system_seconds_of_day_by_date() -> u32 {
    let mut date = Command::new("date");
    date.arg("+%H:%M:%S").env_remove("TZ");
    let output = run_with_timeout(date, Duration::from_secs(10));
    assert!(output.status.success(), "date failed: {output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    clock_line_seconds(text.trim()).unwrap_or_else(|| panic!("date said {text:?}"))
}

#[test]
fn tz_unset_uses_the_system_zone_as_date_does_issue_15() {
    let (shown, line) = shown_seconds_with_tz(None);
    let reference = system_seconds_of_day_by_date();
    assert!(
        seconds_apart(shown, reference) <= 1,
        "TZ unset showed {line}, date +%H:%M:%S says {reference} s into the day"
    );
}

#[test]
fn tz_empty_means_utc_issue_15() {
    let (shown, line) = shown_seconds_with_tz(Some(""));
    assert!(
        seconds_apart(shown, seconds_of_day_in(Tz::UTC)) <= 1,
        "TZ= showed {line}"
    );
}

#[test]
fn tz_colon_name_is_that_zone_issue_15() {
    let (shown, line) = shown_seconds_with_tz(Some(":Asia/Tokyo"));
    assert!(
        seconds_apart(shown, seconds_of_day_in(Tz::Asia__Tokyo)) <= 1,
        "TZ=:Asia/Tokyo showed {line}"
    );
}

#[test]
fn tz_name_is_that_zone_issue_15() {
    let (shown, line) = shown_seconds_with_tz(Some("Asia/Tokyo"));
    assert!(
        seconds_apart(shown, seconds_of_day_in(Tz::Asia__Tokyo)) <= 1,
        "TZ=Asia/Tokyo showed {line}"
    );
}

#[test]
fn tz_garbage_is_exit_2_with_one_error_line_naming_it_issue_15() {
    testkit::assert_rejects_zone(std::path::Path::new(CLOCK2), "Not a/Zone!");
}
