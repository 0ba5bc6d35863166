//! The config file (issue 11): `--config FILE` in TOML, keys named like the flags, flags
//! winning over the file; `ftpd check-config`; the shipped example.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{put, Ftpd, Raw, FTPD};
use testkit::{require_tool, run_ok, run_with_timeout};

const LIMIT: Duration = Duration::from_secs(30);

/// The example shipped in `packaging/`.
fn shipped_example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/ftpd.toml")
}

fn check_config(file: &Path) -> std::process::Output {
    let mut command = Command::new(FTPD);
    command.arg("check-config").arg(file);
    run_with_timeout(command, LIMIT)
}

#[test]
fn the_shipped_example_loads_and_checks_with_its_root_in_place_issue_11() {
    let text = std::fs::read_to_string(shipped_example()).unwrap();
    let parsed = ftpd::settings::Settings::from_toml(&text).unwrap();
    assert_eq!(parsed.root, Some(PathBuf::from("/srv/ftp")));
    // The same file with a root that exists here passes the whole check.
    let root = tempfile::tempdir().unwrap();
    let copy = root.path().join("ftpd.toml");
    let local = text.replace("\"/srv/ftp\"", &format!("{:?}", root.path()));
    std::fs::write(&copy, local).unwrap();
    let output = check_config(&copy);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains("passive-ports = \"50000-50100\""),
        "{stdout}"
    );
    assert!(stdout.contains("idle-timeout = 300"), "{stdout}");
    // What it prints is itself a config file that loads.
    ftpd::settings::Settings::from_toml(&stdout).unwrap();
}

#[test]
fn the_shipped_example_defender_keys_and_accounts_load_when_uncommented_issue_12() {
    let text = std::fs::read_to_string(shipped_example()).unwrap();
    let uncommented: String = text
        .lines()
        .map(|line| {
            let bare = line.strip_prefix("# ").unwrap_or(line);
            let wanted = [
                "no-defender",
                "safelist",
                "connection-",
                "allow-from",
                "deny-from",
            ]
            .iter()
            .any(|key| bare.starts_with(key));
            if wanted {
                bare.to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    // The accounts block: everything from its first table to the end, uncommented.
    let start = uncommented.find("# [accounts.alice]").unwrap();
    let (head, block) = uncommented.split_at(start);
    let block: String = block
        .lines()
        .map(|line| line.trim_start_matches('#').trim_start())
        .collect::<Vec<_>>()
        .join("\n");
    let parsed = ftpd::settings::Settings::from_toml(&format!("{head}\n{block}\n")).unwrap();
    assert!(parsed.no_defender);
    assert_eq!(parsed.safelist.len(), 2);
    assert_eq!(parsed.connection_rate, Some(20));
    let alice = &parsed.accounts["alice"];
    assert_eq!(alice.max_sessions, Some(4));
    assert_eq!(alice.quota_bytes.map(|size| size.0), Some(10 << 30));
    assert!(parsed.accounts.contains_key("anonymous"));
}

#[test]
fn the_shipped_example_hook_keys_load_when_uncommented_issue_12() {
    let text = std::fs::read_to_string(shipped_example()).unwrap();
    let hooks: String = text
        .lines()
        .filter_map(|line| line.strip_prefix("# "))
        .filter(|line| {
            ["on-", "pre-upload", "hook-timeout", "event-"]
                .iter()
                .any(|key| line.starts_with(key))
        })
        .map(|line| format!("{line}\n"))
        .collect();
    assert_eq!(hooks.lines().count(), 7, "{hooks}");
    let parsed = ftpd::settings::Settings::from_toml(&hooks).unwrap();
    assert!(parsed.on_upload.is_some() && parsed.pre_upload.is_some());
    assert_eq!(parsed.event_workers, Some(2));
}

#[test]
fn check_config_names_an_unknown_key_and_its_line_and_exits_2_issue_11() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ftpd.toml");
    std::fs::write(&file, "port = 2121\n\nmax-client = 3\n").unwrap();
    let output = check_config(&file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("max-client") && stderr.contains("line 3"),
        "{stderr}"
    );
    // A missing root is caught too, naming it.
    std::fs::write(&file, "root = \"/nonexistent/ftp\"\n").unwrap();
    let output = check_config(&file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/ftp"), "{stderr}");
}

#[test]
fn check_config_never_shows_a_secret_issue_11() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    let hash = ftpd::users::hash_password("s3cret").unwrap();
    std::fs::write(&users, format!("alice:{hash}:rw\n")).unwrap();
    let file = dir.path().join("ftpd.toml");
    std::fs::write(
        &file,
        format!("root = {:?}\nusers = {users:?}\n", dir.path()),
    )
    .unwrap();
    let output = check_config(&file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("users = "), "{stdout}");
    assert!(
        !stdout.contains("argon2") && !stdout.contains("s3cret"),
        "{stdout}"
    );
    assert!(stdout.contains("anonymous = false"), "{stdout}");
}

#[test]
fn the_server_runs_on_its_config_file_and_flags_override_it_issue_11() {
    require_tool("curl", "curl");
    let config_dir = tempfile::tempdir().unwrap();
    let file = config_dir.path().join("ftpd.toml");
    std::fs::write(&file, "write = true\nmax-per-ip = 1\nlogin-timeout = 300\n").unwrap();
    // The file allows one client per address; the command line says three.
    let ftpd = Ftpd::start(&["--config", file.to_str().unwrap(), "--max-per-ip", "3"]);
    put(ftpd.root.path(), "hello.txt", b"hello");
    let _first = Raw::connect(ftpd.addr());
    let mut second = ftpd.anonymous();
    second.expect("NOOP", 200);
    // `write = true` from the file: curl may upload (the third client from this address).
    let local = tempfile::tempdir().unwrap();
    let upload = local.path().join("up.txt");
    std::fs::write(&upload, b"uploaded through the config").unwrap();
    let mut put_file = Command::new("curl");
    put_file
        .args(["-sS", "--fail", "-T"])
        .arg(&upload)
        .arg(ftpd.url("up.txt"));
    run_ok(put_file, LIMIT);
    assert_eq!(
        std::fs::read(ftpd.path("up.txt")).unwrap(),
        b"uploaded through the config"
    );
}
