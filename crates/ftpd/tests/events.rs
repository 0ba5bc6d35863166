//! Upload events (issue 12): `--on-upload`, `--on-delete`, `--on-rename` hooks (a command
//! getting the event as JSON on stdin and in FTPD_* variables, or an HTTP POST) run after the
//! fact on a bounded queue, never slowing a transfer; `--pre-upload` may refuse an upload
//! with 553 before anything is written. Driven by lftp, curl and Python's ftplib, with a
//! Python `http.server` as the HTTP receiver.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{noise, sha256, Ftpd};
use testkit::{require_tool, run_ok, run_with_timeout, LineClient};

const CLIENT_LIMIT: Duration = Duration::from_secs(60);

/// Writes an executable-by-sh script into `dir` and returns the hook command line for it.
fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    format!("sh {}", path.display())
}

/// The lines of `path` once there are at least `count` (an empty list if it never gets
/// there within `timeout`: the caller's assertion shows what arrived).
fn wait_for_lines(path: &Path, count: usize, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let lines: Vec<String> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if lines.len() >= count || Instant::now() >= deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn json_lines(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect()
}

/// SIGTERM, and the server must be gone within a few seconds.
fn stop(ftpd: &mut Ftpd) {
    ftpd.server.signal("TERM");
    let status = ftpd.server.wait_exit(Duration::from_secs(10));
    assert!(status.is_some(), "ftpd did not stop after SIGTERM");
}

/// True while `pid` is a live process (a zombie waiting for its reaper counts as gone).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

/// `curl -T a URL/a -T b URL/b …`: every file over one connection; the time it took.
fn curl_upload(ftpd: &Ftpd, files: &[PathBuf], directory: &str) -> Duration {
    let mut curl = Command::new("curl");
    curl.args(["-sS", "--fail", "--ftp-create-dirs"]);
    for file in files {
        let name = file.file_name().unwrap().to_str().unwrap();
        curl.arg("-T")
            .arg(file)
            .arg(ftpd.url(&format!("{directory}/{name}")));
    }
    let started = Instant::now();
    run_ok(curl, CLIENT_LIMIT);
    started.elapsed()
}

/// `count` files of varied sizes in `dir`.
fn make_files(dir: &Path, count: usize, seed: u64) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    (0..count)
        .map(|index| {
            let path = dir.join(format!("f{index:03}.bin"));
            let size = (index * 7919 + 13) % 40_000;
            std::fs::write(&path, noise(size, seed + index as u64)).unwrap();
            path
        })
        .collect()
}

/// Every local file by its upload path under `/directory`: (size, SHA-256).
fn expected(files: &[PathBuf], directory: &str) -> BTreeMap<String, (u64, String)> {
    files
        .iter()
        .map(|file| {
            let bytes = std::fs::read(file).unwrap();
            let name = file.file_name().unwrap().to_str().unwrap();
            (
                format!("/{directory}/{name}"),
                (bytes.len() as u64, sha256(&bytes)),
            )
        })
        .collect()
}

/// Upload events by path: (size, SHA-256), checking each is an upload by anonymous.
fn uploads(events: &[Value]) -> BTreeMap<String, (u64, String)> {
    events
        .iter()
        .map(|event| {
            assert_eq!(event["event"], "upload", "{event}");
            assert_eq!(event["user"], "anonymous", "{event}");
            assert!(
                event["client"].as_str().unwrap().starts_with("127.0.0.1:"),
                "{event}"
            );
            (
                event["path"].as_str().unwrap().to_owned(),
                (
                    event["size"].as_u64().unwrap(),
                    event["sha256"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

#[test]
fn two_hundred_lftp_uploads_make_two_hundred_events_with_sizes_and_hashes_issue_12() {
    require_tool("lftp", "lftp");
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("events.jsonl");
    let hook = script(
        work.path(),
        "hook.sh",
        "line=$(cat)\nprintf '%s\\n' \"$line\" >> \"$1\"\n",
    );
    let mut ftpd = Ftpd::start(&[
        "--write",
        "--on-upload",
        &format!("{hook} {}", log.display()),
    ]);
    let files = make_files(&work.path().join("outgoing"), 200, 1200);
    let commands = format!(
        "set net:max-retries 1; set net:timeout 10; mirror -R {} incoming; quit",
        work.path().join("outgoing").display()
    );
    let mut lftp = Command::new("lftp");
    lftp.args(["-u", "anonymous,guest@", "-e", &commands])
        .arg(format!("ftp://127.0.0.1:{}", ftpd.addr().port()));
    run_ok(lftp, CLIENT_LIMIT);
    let lines = wait_for_lines(&log, 200, Duration::from_secs(60));
    assert_eq!(lines.len(), 200, "{lines:?}");
    let got = uploads(&json_lines(&lines));
    assert_eq!(got, expected(&files, "incoming"));
    stop(&mut ftpd);
}

/// A Python `http.server` on a free loopback port recording each POST body as a line in
/// `bodies`; the first `fail_first` POSTs get a 500 (noted in `bodies.failed`).
fn receiver(bodies: &Path, fail_first: u32) -> (LineClient, u16) {
    require_tool("python3", "python3");
    let program = r#"
import http.server, sys
bodies, fail_first = sys.argv[1], int(sys.argv[2])
seen = [0]
class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        seen[0] += 1
        if seen[0] <= fail_first:
            with open(bodies + ".failed", "ab") as out:
                out.write(body + b"\n")
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with open(bodies, "ab") as out:
            out.write(body + b"\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;
    let mut python = Command::new("python3");
    python
        .args(["-c", program])
        .arg(bodies)
        .arg(fail_first.to_string());
    let client = LineClient::spawn(python);
    let port = client
        .next_line(Duration::from_secs(10))
        .expect("the receiver prints its port")
        .trim()
        .parse()
        .unwrap();
    (client, port)
}

#[test]
fn an_http_hook_gets_every_upload_and_a_500_is_retried_issue_12() {
    require_tool("curl", "curl");
    let work = tempfile::tempdir().unwrap();
    let bodies = work.path().join("bodies.jsonl");
    let (_receiver, port) = receiver(&bodies, 1);
    let mut ftpd = Ftpd::start(&[
        "--write",
        "--on-upload",
        &format!("http://127.0.0.1:{port}/ftpd-events"),
    ]);
    let files = make_files(&work.path().join("outgoing"), 3, 1300);
    curl_upload(&ftpd, &files, "web");
    let lines = wait_for_lines(&bodies, 3, Duration::from_secs(30));
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(uploads(&json_lines(&lines)), expected(&files, "web"));
    // The one refused POST was tried again: it is among the three recorded.
    let failed = std::fs::read_to_string(work.path().join("bodies.jsonl.failed")).unwrap();
    let failed = json_lines(&failed.lines().map(str::to_owned).collect::<Vec<_>>());
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(lines
        .iter()
        .any(|line| line.contains(failed[0]["path"].as_str().unwrap())));
    stop(&mut ftpd);
}

#[test]
fn a_hook_sleeping_30_s_does_not_slow_uploads_and_dies_with_the_server_issue_12() {
    require_tool("curl", "curl");
    let work = tempfile::tempdir().unwrap();
    let pids = work.path().join("pids");
    let hook = script(
        work.path(),
        "slow.sh",
        "echo $$ >> \"$1\"\nsleep 30 &\necho $! >> \"$1\"\nwait\n",
    );
    let files = make_files(&work.path().join("outgoing"), 20, 1400);

    let plain = Ftpd::start(&["--write"]);
    let without_hook = curl_upload(&plain, &files, "up");
    drop(plain);

    let mut ftpd = Ftpd::start(&[
        "--write",
        "--on-upload",
        &format!("{hook} {}", pids.display()),
    ]);
    let with_hook = curl_upload(&ftpd, &files, "up");
    assert!(
        with_hook < without_hook + Duration::from_secs(5),
        "20 uploads took {with_hook:?} with a sleeping hook, {without_hook:?} without"
    );
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            std::fs::read(ftpd.path(&format!("up/{name}"))).unwrap(),
            std::fs::read(file).unwrap()
        );
    }
    // Both workers are inside a hook (each wrote its pid and its sleep's).
    let started = wait_for_lines(&pids, 4, Duration::from_secs(20));
    assert_eq!(started.len(), 4, "{started:?}");
    stop(&mut ftpd);
    let pids: Vec<u32> = wait_for_lines(&pids, 4, Duration::ZERO)
        .iter()
        .map(|line| line.trim().parse().unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|pid| alive(*pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<&u32> = pids.iter().filter(|pid| alive(**pid)).collect();
    assert!(left.is_empty(), "hook processes left running: {left:?}");
}

#[test]
fn a_full_queue_drops_events_with_a_log_line_and_a_metric_issue_12() {
    require_tool("curl", "curl");
    let work = tempfile::tempdir().unwrap();
    let hook = script(work.path(), "slow.sh", "sleep 30\n");
    let mut ftpd = Ftpd::start(&[
        "--write",
        "--metrics",
        "127.0.0.1:0",
        "--event-queue",
        "1",
        "--event-workers",
        "1",
        "--on-upload",
        &hook,
    ]);
    let url = ftpd.metrics_url();
    let files = make_files(&work.path().join("outgoing"), 10, 1500);
    curl_upload(&ftpd, &files, "many");
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(ftpd.path(&format!("many/{name}")).is_file(), "{name}");
    }
    assert!(ftpd
        .server
        .wait_for_log("event queue full", Duration::from_secs(10)));
    let mut scrape = Command::new("curl");
    scrape.args(["-sS", "--fail", &url]);
    let page = String::from_utf8(run_ok(scrape, CLIENT_LIMIT).stdout).unwrap();
    let dropped: f64 = page
        .lines()
        .find_map(|line| line.strip_prefix("ftpd_events_dropped_total "))
        .unwrap_or_else(|| panic!("no ftpd_events_dropped_total in {page}"))
        .trim()
        .parse()
        .unwrap();
    // One event runs, one waits; of the other eight, most (all, unless the worker was slow
    // to take the first) are dropped.
    assert!((7.0..=9.0).contains(&dropped), "{dropped}\n{page}");
    stop(&mut ftpd);
}

#[test]
fn a_pre_upload_hook_refuses_with_553_before_anything_is_written_issue_12() {
    require_tool("curl", "curl");
    let work = tempfile::tempdir().unwrap();
    let hook = script(
        work.path(),
        "veto.sh",
        "echo 'uploads closed for maintenance'\necho 'second line'\nexit 1\n",
    );
    let mut ftpd = Ftpd::start(&["--write", "--pre-upload", &hook]);
    let local = work.path().join("a.bin");
    std::fs::write(&local, noise(5000, 1600)).unwrap();
    let mut curl = Command::new("curl");
    curl.args(["-sS", "--fail", "-T"])
        .arg(&local)
        .arg(ftpd.url("a.bin"));
    let output = run_with_timeout(curl, CLIENT_LIMIT);
    assert!(!output.status.success(), "{output:?}");
    let mut raw = ftpd.anonymous();
    let _data = raw.passive();
    let refused = raw.expect("STOR b.bin", 553);
    assert_eq!(refused.lines, ["553 uploads closed for maintenance"]);
    raw.expect("STOU", 553);
    raw.expect("APPE c.bin", 553);
    let names: Vec<_> = std::fs::read_dir(ftpd.root.path()).unwrap().collect();
    assert!(names.is_empty(), "{names:?}");
    stop(&mut ftpd);

    // A hook that overruns the timeout refuses too, with its own text.
    let slow = script(work.path(), "slow.sh", "sleep 30\n");
    let mut ftpd = Ftpd::start(&["--write", "--pre-upload", &slow, "--hook-timeout", "1"]);
    let mut raw = ftpd.anonymous();
    let _data = raw.passive();
    let refused = raw.expect("STOR b.bin", 553);
    assert!(refused.text().contains("timed out"), "{refused:?}");
    assert_eq!(std::fs::read_dir(ftpd.root.path()).unwrap().count(), 0);
    stop(&mut ftpd);

    // One that exits 0 lets the upload through, and saw what was asked.
    let asked = work.path().join("asked");
    let allow = script(
        work.path(),
        "allow.sh",
        "echo \"$FTPD_EVENT $FTPD_USER $FTPD_PATH\" >> \"$1\"\n",
    );
    let mut ftpd = Ftpd::start(&[
        "--write",
        "--pre-upload",
        &format!("{allow} {}", asked.display()),
    ]);
    let mut curl = Command::new("curl");
    curl.args(["-sS", "--fail", "-T"])
        .arg(&local)
        .arg(ftpd.url("a.bin"));
    run_ok(curl, CLIENT_LIMIT);
    assert_eq!(
        std::fs::read(ftpd.path("a.bin")).unwrap(),
        std::fs::read(&local).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(&asked).unwrap(),
        "pre_upload anonymous /a.bin\n"
    );
    stop(&mut ftpd);
}

#[test]
fn delete_and_rename_hooks_get_their_paths_from_ftplib_issue_12() {
    require_tool("python3", "python3");
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("events.txt");
    let hook = script(
        work.path(),
        "hook.sh",
        "json=$(cat)\necho \"$FTPD_EVENT|$FTPD_PATH|$FTPD_FROM|$FTPD_USER|$json\" >> \"$1\"\n",
    );
    let hook = format!("{hook} {}", log.display());
    let mut ftpd = Ftpd::start(&[
        "--write",
        "--event-workers",
        "1",
        "--on-upload",
        &hook,
        "--on-delete",
        &hook,
        "--on-rename",
        &hook,
    ]);
    let program = r#"
import ftplib, io, sys
ftp = ftplib.FTP()
ftp.connect("127.0.0.1", int(sys.argv[1]), timeout=10)
ftp.login()
ftp.mkd("docs")
ftp.storbinary("STOR docs/a.txt", io.BytesIO(b"hello events\n"))
ftp.rename("docs/a.txt", "docs/b.txt")
ftp.delete("docs/b.txt")
ftp.quit()
"#;
    let mut python = Command::new("python3");
    python
        .args(["-c", program])
        .arg(ftpd.addr().port().to_string());
    run_ok(python, CLIENT_LIMIT);
    let lines = wait_for_lines(&log, 3, Duration::from_secs(30));
    assert_eq!(lines.len(), 3, "{lines:?}");
    // One worker: in the order they happened.
    let fields: Vec<Vec<&str>> = lines
        .iter()
        .map(|line| line.splitn(5, '|').collect())
        .collect();
    assert_eq!(fields[0][..4], ["upload", "/docs/a.txt", "", "anonymous"]);
    assert_eq!(
        fields[1][..4],
        ["rename", "/docs/b.txt", "/docs/a.txt", "anonymous"]
    );
    assert_eq!(fields[2][..4], ["delete", "/docs/b.txt", "", "anonymous"]);
    let upload: Value = serde_json::from_str(fields[0][4]).unwrap();
    // Hashed from the file as committed, though it was renamed and deleted since.
    assert_eq!(upload["size"], 13);
    assert_eq!(upload["sha256"], sha256(b"hello events\n"));
    let rename: Value = serde_json::from_str(fields[1][4]).unwrap();
    assert_eq!(rename["from"], "/docs/a.txt");
    assert!(rename["sha256"].is_null());
    stop(&mut ftpd);
}

/// How many event worker threads `pid` has, once it has `wanted` (or after 10 s).
fn event_workers(pid: u32, wanted: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("ftpd-events-"))
            .count();
        if count == wanted || Instant::now() >= deadline {
            return count;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_reload_starts_new_workers_and_the_old_ones_end_issue_12() {
    require_tool("curl", "curl");
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("events.jsonl");
    let hook = script(work.path(), "hook.sh", "cat >> \"$1\"\n");
    let config = work.path().join("ftpd.toml");
    let settings = |workers: usize| {
        format!(
            "write = true\non-upload = \"{hook} {}\"\nevent-workers = {workers}\n",
            log.display()
        )
    };
    std::fs::write(&config, settings(3)).unwrap();
    let mut ftpd = Ftpd::start(&["--config", config.to_str().unwrap()]);
    let pid = ftpd.server.pid();
    assert_eq!(event_workers(pid, 3), 3);
    std::fs::write(&config, settings(1)).unwrap();
    ftpd.server.signal("HUP");
    assert!(ftpd
        .server
        .wait_for_log("reloaded", Duration::from_secs(10)));
    assert_eq!(
        event_workers(pid, 1),
        1,
        "the old generation's workers did not end"
    );
    let files = make_files(&work.path().join("outgoing"), 2, 1700);
    curl_upload(&ftpd, &files, "after");
    let lines = wait_for_lines(&log, 2, Duration::from_secs(30));
    assert_eq!(uploads(&json_lines(&lines)), expected(&files, "after"));
    stop(&mut ftpd);
}

#[test]
fn an_http_pre_upload_hook_refuses_unless_it_answers_2xx_issue_12() {
    let work = tempfile::tempdir().unwrap();
    let bodies = work.path().join("asked.jsonl");
    // The first POST gets a 500, every later one a 200.
    let (_receiver, port) = receiver(&bodies, 1);
    let mut ftpd = Ftpd::start(&[
        "--write",
        "--pre-upload",
        &format!("http://127.0.0.1:{port}/may-i"),
    ]);
    let mut raw = ftpd.anonymous();
    let _data = raw.passive();
    let refused = raw.expect("STOR a.bin", 553);
    assert_eq!(refused.lines, ["553 HTTP 500"]);
    assert_eq!(std::fs::read_dir(ftpd.root.path()).unwrap().count(), 0);
    // Asked once, not retried: the client is waiting.
    let asked = std::fs::read_to_string(work.path().join("asked.jsonl.failed")).unwrap();
    let asked: Value = serde_json::from_str(asked.trim()).unwrap();
    assert_eq!(asked["event"], "pre_upload");
    assert_eq!(asked["path"], "/a.bin");
    let answer = raw.upload("STOR a.bin", b"now allowed\n");
    assert_eq!(answer.code, 226, "{answer:?}");
    assert_eq!(std::fs::read(ftpd.path("a.bin")).unwrap(), b"now allowed\n");
    stop(&mut ftpd);
}
