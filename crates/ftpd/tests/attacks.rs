//! ftpd on a hostile network (issue 5): each attack against the real binary over loopback,
//! with the outcome asserted. The server must answer, keep serving everyone else, and lose
//! nothing.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use support::{connect_from, noise, put, sha256, Ftpd, Raw, FTPD};
use testkit::{exhaust_descriptors, open_descriptors, process_status, run_with_timeout, Server};

fn first_reply(stream: &mut TcpStream) -> String {
    let mut buffer = [0u8; 512];
    let count = stream.read(&mut buffer).unwrap_or(0);
    String::from_utf8_lossy(&buffer[..count]).into_owned()
}

fn epsv_port(raw: &mut Raw) -> u16 {
    let answer = raw.expect("EPSV", 229);
    answer.lines[0].split('|').nth(3).unwrap().parse().unwrap()
}

#[test]
fn bounce_attacks_are_refused() {
    let ftpd = Ftpd::start(&[]);
    let mut raw = ftpd.anonymous();
    let refused = raw.expect("PORT 192,168,1,10,0,25", 504);
    assert!(
        refused.text().contains("only to your own address"),
        "{refused:?}"
    );
    raw.expect("EPRT |1|127.0.0.2|4000|", 504);
    raw.expect("PORT 127,0,0,1,0,21", 504);
    raw.expect("EPRT |2|::1|4000|", 504);
}

#[test]
fn passive_ports_are_random_within_the_range() {
    let ftpd = Ftpd::start(&["--passive-ports", "50000-50999"]);
    let mut raw = ftpd.anonymous();
    let ports: Vec<u16> = (0..8).map(|_| epsv_port(&mut raw)).collect();
    assert!(
        ports.iter().all(|port| (50000..=50999).contains(port)),
        "{ports:?}"
    );
    let sequential = ports.windows(2).all(|pair| pair[1] == pair[0] + 1);
    assert!(!sequential, "passive ports handed out in order: {ports:?}");
}

#[test]
fn a_missing_data_connection_times_out_with_425() {
    let ftpd = Ftpd::start(&["--data-timeout", "1"]);
    put(ftpd.root.path(), "f", b"f");
    let mut raw = ftpd.anonymous();
    epsv_port(&mut raw);
    let asked = Instant::now();
    raw.expect("RETR f", 425);
    assert!(asked.elapsed() < Duration::from_secs(5));
    raw.expect("NOOP", 200);
}

#[test]
fn megabytes_without_a_newline_cost_no_memory() {
    let ftpd = Ftpd::start(&[]);
    let mut raw = ftpd.anonymous();
    let pid = ftpd.server.pid();
    let before = process_status(pid, "VmRSS:");
    let chunk = vec![b'A'; 1024 * 1024];
    for _ in 0..32 {
        raw.send_raw(&chunk);
    }
    raw.send_raw(b"\r\nNOOP\r\n");
    assert_eq!(raw.answer().code, 500);
    assert_eq!(raw.answer().code, 200);
    let after = process_status(pid, "VmRSS:");
    assert!(
        after < before + 4 * 1024,
        "RSS grew from {before} KiB to {after} KiB for one long line"
    );
}

#[test]
fn slow_logins_are_cut_with_421() {
    let ftpd = Ftpd::start(&["--login-timeout", "1"]);
    let mut raw = Raw::connect(ftpd.addr());
    raw.expect("USER anonymous", 331);
    let answer = raw.answer();
    assert_eq!(answer.code, 421, "{answer:?}");
    assert!(answer.text().contains("login timeout"));
    let mut rest = Vec::new();
    let _ = raw.reader.read_to_end(&mut rest);
    assert!(rest.is_empty());
}

#[test]
fn noop_only_sessions_are_still_cut() {
    let ftpd = Ftpd::start(&["--idle-timeout", "2"]);
    let mut raw = ftpd.anonymous();
    let started = Instant::now();
    let mut codes = Vec::new();
    while started.elapsed() < Duration::from_secs(8) {
        raw.send("NOOP");
        let code = raw.answer().code;
        codes.push(code);
        if code == 421 {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(codes.last(), Some(&421), "{codes:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn connection_limits_refuse_with_421_and_never_leak() {
    let ftpd = Ftpd::start(&["--max-clients", "3", "--max-per-ip", "2"]);
    let addr = ftpd.addr();
    for _round in 0..15 {
        let mut first = connect_from("127.0.0.1", addr);
        let mut second = connect_from("127.0.0.1", addr);
        assert!(first_reply(&mut first).starts_with("220"));
        assert!(first_reply(&mut second).starts_with("220"));
        let mut third = connect_from("127.0.0.1", addr);
        let refused = first_reply(&mut third);
        assert!(
            refused.starts_with("421") && refused.contains("your address"),
            "{refused}"
        );
        let mut other = connect_from("127.0.0.2", addr);
        assert!(first_reply(&mut other).starts_with("220"));
        let mut full = connect_from("127.0.0.3", addr);
        let refused = first_reply(&mut full);
        assert!(
            refused.starts_with("421") && refused.contains("server full"),
            "{refused}"
        );
        drop((first, second, third, other, full));
        // Give the sessions a moment to see the hang-ups and give their places back.
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_status(ftpd.server.pid(), "Threads:") > 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mut after = Raw::connect(addr);
    after.expect("NOOP", 200);
}

#[test]
fn failed_logins_slow_down_then_close_and_others_are_not_held_up() {
    let users = tempfile::NamedTempFile::new().unwrap();
    let hash = ftpd::users::hash_password("right").unwrap();
    std::fs::write(users.path(), format!("alice:{hash}\n")).unwrap();
    let ftpd = Ftpd::start(&["--users", users.path().to_str().unwrap()]);
    let mut attacker = Raw::connect(ftpd.addr());
    let started = Instant::now();
    attacker.expect("USER alice", 331);
    attacker.expect("PASS wrong-1", 530);
    // Meanwhile someone else is served at once.
    let mut bystander = Raw::connect(ftpd.addr());
    bystander.expect("NOOP", 200);
    attacker.expect("USER alice", 331);
    attacker.expect("PASS wrong-2", 530);
    // Each 530 comes at once; the session then waits (1 s, then 2 s) before it reads on.
    attacker.expect("USER mallory", 331);
    assert!(
        started.elapsed() >= Duration::from_millis(2900),
        "no delay: {:?}",
        started.elapsed()
    );
    attacker.expect("PASS wrong-3", 421);
    let log = ftpd.server.log_lines().join("\n");
    assert!(
        log.contains("failed login") && log.contains("127.0.0.1"),
        "{log}"
    );
    assert!(!log.contains("wrong-"), "password in the log: {log}");
}

#[test]
fn line_breaks_and_nul_cannot_inject_replies() {
    let ftpd = Ftpd::start(&[]);
    let mut raw = ftpd.anonymous();
    raw.send_raw(b"CWD x\r226 injected\r\n");
    let answer = raw.answer();
    assert_eq!((answer.code, answer.lines.len()), (550, 1), "{answer:?}");
    raw.send_raw(b"SIZE a\x00b\r\n");
    assert_eq!(raw.answer().code, 550);
    raw.expect("NOOP", 200);
}

#[test]
fn a_client_killed_mid_retr_is_logged_and_the_server_carries_on() {
    let ftpd = Ftpd::start(&[]);
    put(ftpd.root.path(), "big", &noise(64 * 1024 * 1024, 1));
    let mut raw = ftpd.anonymous();
    let mut data = TcpStream::connect(("127.0.0.1", epsv_port(&mut raw))).unwrap();
    raw.expect("RETR big", 150);
    let mut some = [0u8; 65536];
    data.read_exact(&mut some).unwrap();
    drop(data);
    drop(raw);
    assert!(
        ftpd.server
            .wait_for_log("RETR /big", Duration::from_secs(10)),
        "{:?}",
        ftpd.server.log_lines()
    );
    let log = ftpd.server.log_lines().join("\n");
    assert!(log.contains("broken"), "{log}");
    let mut next = ftpd.anonymous();
    next.expect("SIZE big", 213);
}

#[test]
fn a_full_disk_is_552_and_the_old_file_survives() {
    let root = tempfile::tempdir().unwrap();
    put(root.path(), "report", b"the old, good report");
    let script = format!(
        "ulimit -f 1024 && exec '{FTPD}' --host 127.0.0.1 --port 0 --write --root '{}'",
        root.path().display()
    );
    let mut command = Command::new("bash");
    command.args(["-c", &script]);
    let server = Server::spawn(command);
    let mut raw = Raw::connect(server.addr);
    raw.expect("USER anonymous", 331);
    raw.expect("PASS x", 230);
    raw.expect("TYPE I", 200);
    let answer = raw.upload("STOR report", &noise(3 * 1024 * 1024, 2));
    assert!(matches!(answer.code, 452 | 552), "{answer:?}");
    assert_eq!(
        std::fs::read(root.path().join("report")).unwrap(),
        b"the old, good report"
    );
    let names: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "temporary left behind: {names:?}");
    raw.expect("NOOP", 200);
}

#[test]
fn an_unusable_root_is_a_clear_startup_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    for root in ["/nonexistent/ftp-root", file.path().to_str().unwrap()] {
        let mut command = Command::new(FTPD);
        command.args(["--port", "0", "--root", root]);
        let output = run_with_timeout(command, Duration::from_secs(10));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.starts_with("ftpd: cannot serve") && stderr.contains(root),
            "{stderr}"
        );
    }
}

#[test]
fn sigterm_tells_idle_sessions_and_lets_transfers_finish() {
    let mut ftpd = Ftpd::start(&["--shutdown-grace", "20"]);
    let big = noise(32 * 1024 * 1024, 4);
    put(ftpd.root.path(), "big", &big);
    let mut idle = ftpd.anonymous();
    let mut busy = ftpd.anonymous();
    busy.expect("TYPE I", 200);
    let mut data = TcpStream::connect(("127.0.0.1", epsv_port(&mut busy))).unwrap();
    busy.expect("RETR big", 150);
    let mut received = vec![0u8; 1024 * 1024];
    data.read_exact(&mut received).unwrap();
    ftpd.server.signal("TERM");
    let goodbye = idle.answer();
    assert_eq!(goodbye.code, 421, "{goodbye:?}");
    assert!(goodbye.text().contains("shutting down"));
    // The transfer still completes.
    let mut rest = Vec::new();
    data.read_to_end(&mut rest).unwrap();
    received.extend_from_slice(&rest);
    assert_eq!(sha256(&received), sha256(&big));
    assert_eq!(busy.answer().code, 226);
    assert_eq!(busy.answer().code, 421);
    let status = ftpd
        .server
        .wait_exit(Duration::from_secs(10))
        .expect("ftpd exited");
    assert!(status.success(), "{status:?}");
    assert!(
        TcpStream::connect(ftpd.addr()).is_err(),
        "still accepting after shutdown"
    );
}

#[test]
fn transfers_are_logged_and_written_to_the_xferlog() {
    let xferlog = tempfile::NamedTempFile::new().unwrap();
    let ftpd = Ftpd::start(&["--write", "--xferlog", xferlog.path().to_str().unwrap()]);
    put(ftpd.root.path(), "down.bin", &[7u8; 1000]);
    let mut raw = ftpd.anonymous();
    raw.expect("TYPE I", 200);
    let (bytes, done) = raw.fetch("RETR down.bin");
    assert_eq!((bytes.len(), done.code), (1000, 226));
    assert_eq!(raw.upload("STOR up.bin", &[1u8; 2500]).code, 226);
    raw.expect("QUIT", 221);
    assert!(
        ftpd.server
            .wait_for_log("STOR /up.bin 2500 bytes", Duration::from_secs(5)),
        "{:?}",
        ftpd.server.log_lines()
    );
    let log = ftpd.server.log_lines().join("\n");
    assert!(
        log.contains("transfer 127.0.0.1:")
            && log.contains("anonymous RETR /down.bin 1000 bytes")
            && log.contains("complete"),
        "{log}"
    );
    let lines: Vec<String> = std::fs::read_to_string(xferlog.path())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let fields: Vec<&str> = lines[0].split_whitespace().collect();
    // weekday month day time year seconds host bytes file type action direction mode user service method id status
    assert_eq!(fields.len(), 18, "{lines:?}");
    assert_eq!(
        &fields[6..],
        [
            "127.0.0.1",
            "1000",
            "/down.bin",
            "b",
            "_",
            "o",
            "a",
            "anonymous",
            "ftp",
            "0",
            "*",
            "c"
        ]
    );
    assert!(
        lines[1].contains(" 2500 /up.bin b _ i a anonymous ftp 0 * c"),
        "{lines:?}"
    );
}

#[test]
fn soak_200_concurrent_sessions_no_failures_no_leaks() {
    let ftpd = Ftpd::start(&["--write", "--max-per-ip", "500"]);
    let payload = noise(64 * 1024, 8);
    put(ftpd.root.path(), "shared.bin", &payload);
    let pid = ftpd.server.pid();
    let mut warm = ftpd.anonymous();
    warm.expect("QUIT", 221);
    std::thread::sleep(Duration::from_millis(200));
    let base_threads = process_status(pid, "Threads:");
    let base_fds = open_descriptors(pid);
    let addr = ftpd.addr();
    let expected = sha256(&payload);
    let workers: Vec<_> = (0..200)
        .map(|index| {
            let expected = expected.clone();
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || -> Result<(), String> {
                    let mut ftp = suppaftp::FtpStream::connect(addr).map_err(|e| e.to_string())?;
                    ftp.login("anonymous", "soak").map_err(|e| e.to_string())?;
                    ftp.transfer_type(suppaftp::types::FileType::Binary)
                        .map_err(|e| e.to_string())?;
                    for round in 0..3 {
                        let got = ftp
                            .retr_as_buffer("shared.bin")
                            .map_err(|e| e.to_string())?
                            .into_inner();
                        if sha256(&got) != expected {
                            return Err("corrupt download".into());
                        }
                        let name = format!("up-{index}-{round}");
                        let body = name.repeat(100);
                        ftp.put_file(&name, &mut body.as_bytes())
                            .map_err(|e| e.to_string())?;
                        if ftp.size(&name).map_err(|e| e.to_string())? != body.len() {
                            return Err(format!("{name}: wrong size"));
                        }
                        ftp.list(None).map_err(|e| e.to_string())?;
                    }
                    ftp.quit().map_err(|e| e.to_string())
                })
                .unwrap()
        })
        .collect();
    let failures: Vec<String> = workers
        .into_iter()
        .filter_map(|worker| worker.join().unwrap().err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} sessions failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_status(pid, "Threads:") > base_threads && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        process_status(pid, "Threads:"),
        base_threads,
        "threads leaked"
    );
    assert_eq!(open_descriptors(pid), base_fds, "descriptors leaked");
    assert_eq!(
        std::fs::read_dir(ftpd.root.path()).unwrap().count(),
        1 + 200 * 3
    );
}

/// Arbitrary input must never stop the server answering. One server serves every case, and
/// it belongs to this test, so it is killed when the test ends (a server kept in a static
/// is never dropped and outlived the test binary).
#[test]
fn arbitrary_bytes_get_replies_and_the_server_stays_up() {
    use proptest::test_runner::{Config, TestRunner};
    let ftpd = Ftpd::start(&["--write"]);
    let line = proptest::collection::vec(
        any::<u8>().prop_filter("no newline", |b| *b != b'\n'),
        0..300,
    );
    let lines = proptest::collection::vec(line, 1..6);
    let mut runner = TestRunner::new(Config::with_cases(48));
    let result = runner.run(&lines, |lines| {
        let mut stream = TcpStream::connect(ftpd.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(b"USER anonymous\r\nPASS x\r\n").unwrap();
        for line in &lines {
            stream.write_all(line).unwrap();
            stream.write_all(b"\r\n").unwrap();
        }
        stream.write_all(b"QUIT\r\n").unwrap();
        let mut replies = Vec::new();
        let _ = stream.read_to_end(&mut replies);
        let text = String::from_utf8_lossy(&replies);
        prop_assert!(text.starts_with("220 "), "{}", text);
        for line in text.split("\r\n").filter(|line| !line.is_empty()) {
            prop_assert!(
                line.len() >= 4
                    && (line[..3].bytes().all(|b| b.is_ascii_digit()) || line.starts_with(' ')),
                "{:?}",
                line
            );
        }
        let mut check = Raw::connect(ftpd.addr());
        check.expect("NOOP", 200);
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

#[test]
fn a_stalled_data_connection_ends_the_transfer_not_the_server() {
    let ftpd = Ftpd::start(&["--stall-timeout", "1"]);
    put(ftpd.root.path(), "big", &noise(32 * 1024 * 1024, 6));
    let mut raw = ftpd.anonymous();
    raw.expect("TYPE I", 200);
    // Connect the data channel but never read from it.
    let _data = TcpStream::connect(("127.0.0.1", epsv_port(&mut raw))).unwrap();
    raw.expect("RETR big", 150);
    let answer = raw.answer();
    assert_eq!(answer.code, 426, "{answer:?}");
    raw.expect("NOOP", 200);
}

#[test]
fn running_out_of_descriptors_refuses_without_spinning_and_recovers() {
    let root = tempfile::tempdir().unwrap();
    let script = format!(
        "ulimit -n 40 && exec '{FTPD}' --host 127.0.0.1 --port 0 --max-per-ip 500 --root '{}'",
        root.path().display()
    );
    let mut command = Command::new("bash");
    command.args(["-c", &script]);
    let server = Server::spawn(command);
    let hogs = exhaust_descriptors(&server, 80);
    drop(hogs);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        if first_reply(&mut stream).starts_with("220") {
            break;
        }
        assert!(Instant::now() < deadline, "never served again");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn stat_of_a_huge_directory_streams_over_the_control_connection() {
    let ftpd = Ftpd::start(&[]);
    let dir = ftpd.path("many");
    std::fs::create_dir(&dir).unwrap();
    for index in 0..20_000 {
        std::fs::File::create(dir.join(format!("entry-{index:05}"))).unwrap();
    }
    let mut raw = ftpd.anonymous();
    let before = process_status(ftpd.server.pid(), "VmRSS:");
    let answer = raw.expect("STAT many", 213);
    assert_eq!(answer.lines.len(), 20_000 + 2);
    assert!(answer.lines[1..20_001]
        .iter()
        .all(|line| line.starts_with("-rw")));
    let after = process_status(ftpd.server.pid(), "VmRSS:");
    // 20,000 lines are about 1.5 MB of text; streaming keeps it out of memory.
    assert!(
        after < before + 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    raw.expect("NOOP", 200);
}
