//! Smoke: ftpbench's own workloads, shrunk to a few seconds, against our ftpd, so the
//! benchmark tool cannot rot unnoticed. The real benchmark runs only through
//! scripts/bench-ftpd.sh.

use std::process::{Command, Output};
use std::time::Duration;

use ftpbench::fixture::{self, Profile};
use testkit::{run_with_timeout, workspace_binary, Server};

/// Rows every smoke run must print, each with a figure.
const ROWS: [&str; 11] = [
    "| loopback limit, 4 MiB",
    "| RETR 4 MiB |",
    "| RETR 1 MiB (SHA-256 checked) |",
    "| STOR 4 MiB from memory |",
    "| sessions/s, sequential |",
    "| sessions/s, 8 threads |",
    "| 20 × 4 KiB files, one session |",
    "| LIST 100 entries, time |",
    "| NLST 100 entries, bytes |",
    "| 5 idle + 2 × RETR 1 MiB, aggregate |",
    "| PSS per idle session (10 sessions) |",
];

fn ftpbench(args: &[String]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ftpbench"));
    command.args(args);
    run_with_timeout(command, Duration::from_secs(120))
}

fn assert_verified(output: &Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "ftpbench failed:\n{stdout}\n{stderr}"
    );
    for row in ROWS {
        assert!(stdout.contains(row), "no row {row:?} in:\n{stdout}");
    }
    assert!(
        stdout.contains("|   failures (RETR or idle NOOP) | 0 |"),
        "{stdout}"
    );
    assert!(!stderr.contains("FAILED"), "{stderr}");
}

#[test]
fn serving_ftpd_itself_every_workload_verifies_issue_7() {
    let ftpd = workspace_binary("ftpd");
    let output = ftpbench(&[
        "--smoke".into(),
        "--rounds".into(),
        "1".into(),
        "--serve-ours".into(),
        ftpd.display().to_string(),
    ]);
    assert_verified(&output);
}

#[test]
fn against_a_running_ftpd_by_url_every_workload_verifies_issue_7() {
    let root = tempfile::tempdir().unwrap();
    fixture::prepare(root.path(), &Profile::smoke()).unwrap();
    let root_arg = root.path().display().to_string();
    let server = Server::start(
        workspace_binary("ftpd"),
        &[
            "--port",
            "0",
            "--write",
            "--root",
            &root_arg,
            "--max-per-ip",
            "100",
        ],
    );
    let output = ftpbench(&[
        "--smoke".into(),
        "--rounds".into(),
        "1".into(),
        "--url".into(),
        format!("ftp://{}", server.addr),
        "--server-pid".into(),
        server.pid().to_string(),
    ]);
    assert_verified(&output);
}

#[test]
fn a_url_off_loopback_is_a_usage_error_naming_it() {
    let output = ftpbench(&["--url".into(), "ftp://192.0.2.1:21".into()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("'ftp://192.0.2.1:21' is not a loopback address"),
        "{stderr}"
    );
}
