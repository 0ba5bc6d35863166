//! ftpd as a service (issue 11): SIGHUP reloads the config file and the users file for new
//! sessions while old ones keep their settings, a broken config is refused with the old one
//! kept, and systemd hears READY, RELOADING and STOPPING on its notify socket.

mod support;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{put, Raw, FTPD};
use testkit::Server;

/// A server started with `--config FILE` over `root`, with `NOTIFY_SOCKET` when given.
fn start(
    config: &std::path::Path,
    root: &std::path::Path,
    notify: Option<&std::path::Path>,
) -> Server {
    let mut command = Command::new(FTPD);
    command
        .args(["--host", "127.0.0.1", "--port", "0", "--root"])
        .arg(root)
        .arg("--config")
        .arg(config);
    if let Some(socket) = notify {
        command.env("NOTIFY_SOCKET", socket);
    }
    Server::spawn(command)
}

fn logged_in(server: &Server, user: &str, password: &str) -> Raw {
    let mut raw = Raw::connect(server.addr);
    raw.expect(&format!("USER {user}"), 331);
    raw.expect(&format!("PASS {password}"), 230);
    raw
}

/// Sends SIGHUP and waits for the `n`th log line that says how the reload went.
fn reload(server: &Server, n: usize) -> String {
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let outcomes: Vec<String> = server
            .log_lines()
            .into_iter()
            .filter(|line| line.contains("reloaded") || line.contains("reload refused"))
            .collect();
        if outcomes.len() >= n {
            return outcomes[n - 1].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no reload outcome: {:?}",
            server.log_lines()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_reloads_for_new_sessions_and_keeps_old_ones_on_their_settings_issue_11() {
    let dir = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let config = dir.path().join("ftpd.toml");
    let users = dir.path().join("users");
    let hash = ftpd::users::hash_password("old").unwrap();
    std::fs::write(&users, format!("alice:{hash}:ro\n")).unwrap();
    std::fs::write(&config, format!("users = {users:?}\nanonymous = true\n")).unwrap();
    let server = start(&config, root.path(), None);
    let mut before = logged_in(&server, "anonymous", "x");
    before.passive();
    before.expect("STOR refused.txt", 550);

    // Anonymous may now write, and bob exists: both for the next login only.
    let bob = ftpd::users::hash_password("new").unwrap();
    std::fs::write(&users, format!("alice:{hash}:ro\nbob:{bob}:rw\n")).unwrap();
    std::fs::write(
        &config,
        format!("users = {users:?}\nanonymous = true\nwrite = true\n"),
    )
    .unwrap();
    let outcome = reload(&server, 1);
    assert!(outcome.contains("reloaded"), "{outcome}");
    let mut after = logged_in(&server, "anonymous", "x");
    assert_eq!(after.upload("STOR new.txt", b"after the reload").code, 226);
    assert_eq!(
        std::fs::read(root.path().join("new.txt")).unwrap(),
        b"after the reload"
    );
    let mut bob = logged_in(&server, "bob", "new");
    bob.expect("PWD", 257);
    // The session from before the reload keeps the settings it started with.
    before.passive();
    before.expect("STOR still-refused.txt", 550);

    // A broken config is refused in one line, and the last good one stays in force.
    std::fs::write(&config, "write = true\nmax-client = 3\n").unwrap();
    let outcome = reload(&server, 2);
    assert!(
        outcome.contains("reload refused") && outcome.contains("max-client"),
        "{outcome}"
    );
    let mut later = logged_in(&server, "bob", "new");
    assert_eq!(later.upload("STOR later.txt", b"still served").code, 226);
}

#[test]
fn systemd_hears_ready_reloading_and_stopping_issue_11() {
    let dir = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    put(root.path(), "f", b"f");
    let config = dir.path().join("ftpd.toml");
    std::fs::write(&config, "").unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let receive = || {
        let mut buffer = [0u8; 512];
        let count = socket.recv(&mut buffer).expect("a notification");
        String::from_utf8_lossy(&buffer[..count]).into_owned()
    };
    let mut server = start(&config, root.path(), Some(&socket_path));
    assert_eq!(receive(), "READY=1\n");
    server.signal("HUP");
    let reloading = receive();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading:?}"
    );
    assert_eq!(receive(), "READY=1\n");
    let mut raw = logged_in(&server, "anonymous", "x");
    raw.expect("SIZE f", 213);
    server.signal("TERM");
    assert_eq!(receive(), "STOPPING=1\n");
    let status = server
        .wait_exit(Duration::from_secs(15))
        .expect("ftpd exited");
    assert!(status.success(), "{status:?}");
}

/// A loopback port nobody listens on now (systemd-socket-activate needs one named).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn systemd_socket_activation_hands_ftpd_its_socket_issue_11() {
    testkit::require_tool("systemd-socket-activate", "systemd");
    testkit::require_tool("curl", "curl");
    let root = tempfile::tempdir().unwrap();
    put(root.path(), "served.txt", b"through an inherited socket");
    let port = free_port();
    let mut command = Command::new("systemd-socket-activate");
    command
        .args(["-l", &format!("127.0.0.1:{port}"), FTPD, "--root"])
        .arg(root.path());
    // systemd-socket-activate announces its own socket in its own words.
    let mut activator = testkit::LineClient::spawn_stderr(command);
    let line = activator
        .next_line(Duration::from_secs(10))
        .expect("systemd-socket-activate started");
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    let mut list = Command::new("curl");
    list.args(["-sS", "--fail", &format!("ftp://127.0.0.1:{port}/")]);
    let output = testkit::run_ok(list, Duration::from_secs(30));
    let listing = String::from_utf8_lossy(&output.stdout);
    assert!(listing.trim_end().ends_with(" served.txt"), "{listing}");
    // ftpd announced the socket it was given, not one of its own.
    let mut seen = Vec::new();
    while let Some(line) = activator.next_line(Duration::from_secs(2)) {
        seen.push(line);
    }
    assert!(
        seen.iter()
            .any(|line| line == &format!("listening on 127.0.0.1:{port}")),
        "{seen:?}"
    );
    activator.kill();
}

#[test]
fn started_as_root_with_user_it_serves_as_that_user_issue_11() {
    let root = tempfile::tempdir().unwrap();
    let status = Command::new("chmod")
        .arg("777")
        .arg(root.path())
        .status()
        .unwrap();
    assert!(status.success());
    let am_root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let mut command = Command::new(FTPD);
    command
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--write",
            "--user",
            "nobody",
            "--root",
        ])
        .arg(root.path());
    if !am_root {
        // Not root: switching users is refused with one clear line.
        let output = testkit::run_with_timeout(command, Duration::from_secs(10));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("cannot switch to user nobody"), "{stderr}");
        return;
    }
    let server = Server::spawn(command);
    let nobody = String::from_utf8(
        Command::new("id")
            .args(["-u", "nobody"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let nobody: u32 = nobody.trim().parse().unwrap();
    // Before any client: every uid (real, effective, saved, fs) is nobody's.
    let uids = testkit::process_status_line(server.pid(), "Uid:");
    assert!(
        uids.split_whitespace().all(|uid| uid == nobody.to_string()),
        "Uid: {uids}"
    );
    let groups = testkit::process_status_line(server.pid(), "Groups:");
    assert!(
        !groups.split_whitespace().any(|group| group == "0"),
        "Groups: {groups}"
    );
    let mut raw = logged_in(&server, "anonymous", "x");
    assert_eq!(raw.upload("STOR mine.txt", b"owned by nobody").code, 226);
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(root.path().join("mine.txt"))
        .unwrap()
        .uid();
    assert_eq!(owner, nobody);
    assert!(server
        .log_lines()
        .iter()
        .any(|line| line.contains("serving as user nobody")));
}

/// A packaged file, from `packaging/`.
fn packaged(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../packaging")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[test]
fn the_packaged_units_pass_systemd_analyze_verify_issue_11() {
    testkit::require_tool("systemd-analyze", "systemd");
    let dir = tempfile::tempdir().unwrap();
    // The units name the installed binary; here it is the one just built.
    let service = packaged("ftpd.service").replace("/usr/bin/ftpd", FTPD);
    assert!(service.contains("Type=notify") && service.contains("ExecReload="));
    std::fs::write(dir.path().join("ftpd.service"), service).unwrap();
    std::fs::write(dir.path().join("ftpd.socket"), packaged("ftpd.socket")).unwrap();
    let mut verify = Command::new("systemd-analyze");
    verify
        .args(["verify", "--man=no"])
        .arg(dir.path().join("ftpd.service"))
        .arg(dir.path().join("ftpd.socket"));
    let output = testkit::run_ok(verify, Duration::from_secs(60));
    // Unknown keys are only warnings to systemd-analyze: none may appear.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.trim().is_empty(), "{stderr}");
}

#[test]
fn logrotate_with_the_packaged_file_and_a_reload_moves_the_xferlog_issue_11() {
    testkit::require_tool("logrotate", "logrotate");
    let dir = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    put(root.path(), "f", b"0123456789");
    let xferlog = dir.path().join("xferlog");
    let config = dir.path().join("ftpd.toml");
    std::fs::write(&config, format!("xferlog = {xferlog:?}\n")).unwrap();
    let server = start(&config, root.path(), None);
    let mut raw = logged_in(&server, "anonymous", "x");
    assert_eq!(raw.fetch("RETR f").1.code, 226);
    // The packaged rule, pointed at this directory and told to signal this server.
    let rules = packaged("ftpd.logrotate")
        .replace("/var/log/ftpd", &dir.path().display().to_string())
        .replace("create 0640 ftpd ftpd", "create 0640")
        .replace(
            "systemctl reload ftpd.service >/dev/null 2>&1 || true",
            &format!("kill -HUP {}", server.pid()),
        );
    let rules_file = dir.path().join("rules");
    std::fs::write(&rules_file, rules).unwrap();
    let mut rotate = Command::new("logrotate");
    rotate
        .args(["--force", "--state"])
        .arg(dir.path().join("state"))
        .arg(&rules_file);
    testkit::run_ok(rotate, Duration::from_secs(30));
    // The rule's postrotate sent the SIGHUP.
    assert!(
        server.wait_for_log("reloaded", Duration::from_secs(10)),
        "{:?}",
        server.log_lines()
    );
    let mut next = logged_in(&server, "anonymous", "x");
    assert_eq!(next.fetch("RETR f").1.code, 226);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&xferlog)
        .unwrap_or_default()
        .is_empty()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let fresh = std::fs::read_to_string(&xferlog).unwrap();
    assert_eq!(fresh.lines().count(), 1, "the new xferlog: {fresh:?}");
    let rotated = std::fs::read_to_string(dir.path().join("xferlog.1")).unwrap();
    assert_eq!(
        rotated.lines().count(),
        1,
        "the rotated xferlog: {rotated:?}"
    );
}

#[test]
fn json_logs_are_one_object_a_line_with_the_fields_and_no_password_issue_11() {
    testkit::require_tool("python3", "python3");
    testkit::require_tool("curl", "curl");
    let dir = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    put(root.path(), "f.bin", &[7u8; 4321]);
    let users = dir.path().join("users");
    let hash = ftpd::users::hash_password("pa55-word").unwrap();
    std::fs::write(&users, format!("alice:{hash}\n")).unwrap();
    let config = dir.path().join("ftpd.toml");
    std::fs::write(
        &config,
        format!("log-format = \"json\"\nusers = {users:?}\n"),
    )
    .unwrap();
    let server = start(&config, root.path(), None);
    let mut get = Command::new("curl");
    get.args(["-sS", "--fail", "-o", "/dev/null", "-u", "alice:pa55-word"])
        .arg(format!("ftp://127.0.0.1:{}/f.bin", server.addr.port()));
    testkit::run_ok(get, Duration::from_secs(30));
    let mut wrong = Raw::connect(server.addr);
    wrong.expect("USER alice", 331);
    wrong.expect("PASS not-it", 530);
    assert!(server.wait_for_log("\"event\":\"transfer\"", Duration::from_secs(10)));
    let lines: Vec<String> = server
        .log_lines()
        .into_iter()
        .filter(|line| !line.starts_with("listening on "))
        .collect();
    assert!(lines
        .iter()
        .all(|line| !line.contains("pa55-word") && !line.contains("not-it")));
    // Python's json module reads every line and picks out the events.
    let script = r#"
import json, sys
events = {}
for line in sys.stdin:
    record = json.loads(line)
    assert {"time", "level", "message"} <= record.keys(), record
    if "event" in record:
        events.setdefault(record["event"], record)
t = events["transfer"]
print(t["verb"], t["path"], t["bytes"], t["user"], t["outcome"], type(t["session"]).__name__,
      type(t["duration_ms"]).__name__, events["login"]["user"], events["login_failed"]["user"],
      "session_start" in events)
"#;
    let mut python = Command::new("python3");
    python
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = python.spawn().unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        lines.join("\n").as_bytes(),
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}\n{lines:#?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "RETR /f.bin 4321 alice complete int int alice alice True"
    );
}
