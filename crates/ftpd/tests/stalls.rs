//! ftpd against clients that stop cooperating (issue 10): a client that never reads, one that
//! trickles bytes, one that asks for a passive port and never connects, one that never reads
//! its download or stops its upload, and a server killed in the middle of uploads.
//! Each must cost no more than its timeout, and never a slot, a port or a thread for good.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::{noise, put, Ftpd, Raw, FTPD};
use testkit::Server;

/// A control connection whose own receive buffer is tiny, so the server's replies back up.
fn connect_with_small_buffer(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// Sends `HELP` over and over and reads nothing back, until the server's replies fill every
/// buffer between us and it stops reading too (our write then times out).
fn flood_without_reading(stream: &mut TcpStream) {
    let burst = b"HELP\r\n".repeat(1000);
    for _ in 0..5000 {
        if stream.write_all(&burst).is_err() {
            return;
        }
    }
    panic!("the server took 30 MB of HELP without its replies backing up");
}

/// Connects until a `220` arrives; how long that took and the connection (which holds the
/// slot it got), or `None` after `limit`.
fn time_until_served(addr: SocketAddr, limit: Duration) -> Option<(Duration, TcpStream)> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(mut stream) = TcpStream::connect(addr) {
            stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut greeting = [0u8; 3];
            if stream.read_exact(&mut greeting).is_ok() && &greeting == b"220" {
                return Some((started.elapsed(), stream));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn a_client_that_never_reads_is_dropped_at_the_stall_timeout_and_its_slot_freed_issue_10() {
    let ftpd = Ftpd::start(&["--stall-timeout", "2", "--max-per-ip", "1"]);
    let mut hog = connect_with_small_buffer(ftpd.addr());
    flood_without_reading(&mut hog);
    // The hog still holds the one slot for this address until its writes time out.
    let (took, mut next) =
        time_until_served(ftpd.addr(), Duration::from_secs(15)).expect("the slot never came back");
    assert!(
        took < Duration::from_secs(2 + 3),
        "slot came back after {took:?} with --stall-timeout 2"
    );
    // The newcomer is served in full on the slot it got.
    next.write_all(b"USER anonymous\r\nPASS x\r\nQUIT\r\n")
        .unwrap();
    let mut replies = String::new();
    next.read_to_string(&mut replies).unwrap();
    assert!(
        replies.contains("230 ") && replies.contains("221 "),
        "{replies:?}"
    );
}

#[test]
fn sigterm_finishes_within_the_grace_with_a_client_that_never_reads_issue_10() {
    let mut ftpd = Ftpd::start(&["--stall-timeout", "300", "--shutdown-grace", "2"]);
    let mut hog = connect_with_small_buffer(ftpd.addr());
    hog.write_all(b"USER anonymous\r\nPASS x\r\n").unwrap();
    flood_without_reading(&mut hog);
    let asked = Instant::now();
    ftpd.server.signal("TERM");
    let status = ftpd
        .server
        .wait_exit(Duration::from_secs(2 + 5))
        .expect("ftpd did not exit after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(2 + 1),
        "exit took {:?}",
        asked.elapsed()
    );
}

/// Sends `bytes` one at a time, `gap` apart, until done or the server closes; returns when
/// the server's close was seen (or `None` if it never closed).
fn trickle_until_closed(stream: &mut TcpStream, bytes: &[u8], gap: Duration) -> Option<Instant> {
    stream
        .set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    let mut sink = [0u8; 4096];
    for &byte in bytes.iter().cycle().take(200) {
        if stream.write_all(&[byte]).is_err() {
            return Some(Instant::now());
        }
        std::thread::sleep(gap);
        match stream.read(&mut sink) {
            Ok(0) => return Some(Instant::now()),
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return Some(Instant::now()),
        }
    }
    None
}

#[test]
fn a_trickling_client_is_cut_at_the_login_timeout_issue_10() {
    let ftpd = Ftpd::start(&["--login-timeout", "2"]);
    let mut stream = TcpStream::connect(ftpd.addr()).unwrap();
    let connected = Instant::now();
    // One line, a byte every 200 ms: it would take 6 s to finish, but never resets a clock.
    let closed = trickle_until_closed(
        &mut stream,
        b"USER anonymous-and-then-some",
        Duration::from_millis(200),
    )
    .expect("the trickling client was never cut");
    let took = closed - connected;
    assert!(took < Duration::from_secs(2 + 2), "cut after {took:?}");
}

#[test]
fn a_logged_in_client_trickling_half_a_line_is_cut_at_the_idle_timeout_issue_10() {
    let ftpd = Ftpd::start(&["--idle-timeout", "2"]);
    let raw = ftpd.anonymous();
    let mut stream = raw.writer;
    let started = Instant::now();
    let closed = trickle_until_closed(&mut stream, b"NOOPNOOPNOOP", Duration::from_millis(200))
        .expect("the trickling client was never cut");
    let took = closed - started;
    assert!(took < Duration::from_secs(2 + 2), "cut after {took:?}");
}

#[test]
fn a_download_nobody_reads_fails_at_the_stall_timeout_issue_10() {
    let ftpd = Ftpd::start(&["--stall-timeout", "2"]);
    put(ftpd.root.path(), "big", &noise(64 * 1024 * 1024, 10));
    let mut raw = ftpd.anonymous();
    raw.expect("TYPE I", 200);
    let _data = raw.passive();
    raw.expect("RETR big", 150);
    let started = Instant::now();
    let answer = raw.answer();
    assert_eq!(answer.code, 426, "{answer:?}");
    // The buffers fill within a second or so; the stall is counted from then.
    assert!(
        started.elapsed() < Duration::from_secs(2 + 3),
        "426 after {:?} with --stall-timeout 2",
        started.elapsed()
    );
    raw.expect("NOOP", 200);
}

#[test]
fn an_unused_passive_port_is_given_back_after_the_data_timeout_issue_10() {
    // Two ports free now, below the kernel's ephemeral range (32768 and up), so no outgoing
    // connection of another test can take one meanwhile.
    let low = (30_000..32_000u16)
        .step_by(2)
        .skip((std::process::id() % 500) as usize)
        .chain((30_000..32_000u16).step_by(2))
        .find(|port| {
            [*port, port + 1]
                .iter()
                .all(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        })
        .expect("two free ports");
    let range = format!("{low}-{}", low + 1);
    let ftpd = Ftpd::start(&["--passive-ports", &range, "--data-timeout", "1"]);
    let mut first = ftpd.anonymous();
    let mut second = ftpd.anonymous();
    let mut third = ftpd.anonymous();
    first.expect("EPSV", 229);
    second.expect("EPSV", 229);
    let refused = third.expect("EPSV", 425);
    assert!(refused.text().contains("passive port"), "{refused:?}");
    std::thread::sleep(Duration::from_millis(2500));
    third.expect("EPSV", 229);
    // The first session's listener is gone: its transfer needs a new PASV.
    let gone = first.expect("LIST", 425);
    assert!(gone.text().contains("PASV"), "{gone:?}");
    first.expect("NOOP", 200);
}

#[test]
fn a_server_killed_mid_upload_leaves_nothing_listable_after_restart_issue_10() {
    let root = tempfile::tempdir().unwrap();
    put(root.path(), "keep.txt", b"the good file");
    let start = |root: &std::path::Path| {
        let mut command = std::process::Command::new(FTPD);
        command
            .args(["--host", "127.0.0.1", "--port", "0", "--write", "--root"])
            .arg(root);
        Server::spawn(command)
    };
    let mut first = start(root.path());
    let mut raw = Raw::connect(first.addr);
    raw.expect("USER anonymous", 331);
    raw.expect("PASS x", 230);
    raw.expect("TYPE I", 200);
    let mut data = raw.passive();
    raw.expect("STOR keep.txt", 150);
    data.write_all(&noise(1024 * 1024, 11)).unwrap();
    let temporary_on_disk = || {
        std::fs::read_dir(root.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with(".ftpd-upload-"))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while temporary_on_disk() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        temporary_on_disk(),
        1,
        "the upload's temporary file never appeared"
    );
    // While the upload runs, listings do not show its temporary file.
    let mut lister = Raw::connect(first.addr);
    lister.expect("USER anonymous", 331);
    lister.expect("PASS x", 230);
    let (names, done) = lister.fetch("NLST -a");
    assert_eq!(done.code, 226);
    assert_eq!(String::from_utf8(names).unwrap(), "keep.txt\r\n");
    first.kill();
    drop((raw, data, lister));
    assert_eq!(
        temporary_on_disk(),
        1,
        "SIGKILL should leave the temporary behind"
    );
    let second = start(root.path());
    assert_eq!(temporary_on_disk(), 0, "the restarted server did not sweep");
    let mut raw = Raw::connect(second.addr);
    raw.expect("USER anonymous", 331);
    raw.expect("PASS x", 230);
    let (listing, done) = raw.fetch("LIST");
    assert_eq!(done.code, 226);
    let listing = String::from_utf8(listing).unwrap();
    assert_eq!(listing.lines().count(), 1, "{listing}");
    assert!(listing.ends_with(" keep.txt\r\n"), "{listing}");
    assert_eq!(
        std::fs::read(root.path().join("keep.txt")).unwrap(),
        b"the good file"
    );
}

#[test]
fn each_control_connection_costs_one_descriptor_issue_10() {
    let ftpd = Ftpd::start(&["--max-per-ip", "200"]);
    let pid = ftpd.server.pid();
    let mut warm = ftpd.anonymous();
    warm.expect("NOOP", 200);
    let base = testkit::open_descriptors(pid);
    let sessions: Vec<Raw> = (0..100)
        .map(|_| {
            let mut raw = ftpd.anonymous();
            raw.expect("NOOP", 200);
            raw
        })
        .collect();
    let grown = testkit::open_descriptors(pid) - base;
    assert!(
        (100..=103).contains(&grown),
        "100 sessions opened {grown} descriptors"
    );
    drop(sessions);
}

#[test]
fn an_upload_that_stops_fails_at_the_stall_timeout_and_keeps_the_old_file_issue_10() {
    let ftpd = Ftpd::start(&["--write", "--stall-timeout", "2"]);
    put(ftpd.root.path(), "report", b"the old report");
    let mut raw = ftpd.anonymous();
    raw.expect("TYPE I", 200);
    let mut data = raw.passive();
    raw.expect("STOR report", 150);
    data.write_all(&noise(100_000, 13)).unwrap();
    let stopped = Instant::now();
    let answer = raw.answer();
    assert_eq!(answer.code, 426, "{answer:?}");
    assert!(
        stopped.elapsed() < Duration::from_secs(2 + 2),
        "426 after {:?} with --stall-timeout 2",
        stopped.elapsed()
    );
    assert_eq!(
        std::fs::read(ftpd.path("report")).unwrap(),
        b"the old report"
    );
    drop(data);
    raw.expect("NOOP", 200);
}
