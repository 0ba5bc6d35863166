//! What listings show and which files may be opened (issue 10): globbing in NLST, LIST and
//! STAT, `ls` order, RNFR/RNTO sequencing, FIFOs and unreadable directories, and the bytes a
//! listing is logged with.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{put, Ftpd, Raw, FTPD};
use testkit::Server;

fn names(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .split("\r\n")
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn nlst_list_and_stat_expand_globs_in_the_last_component_issue_10() {
    let ftpd = Ftpd::start(&[]);
    for name in [
        "b.txt",
        "a.txt",
        "c.log",
        "logs/x.log",
        "logs/y.log",
        "logs/z.txt",
    ] {
        put(ftpd.root.path(), name, name.as_bytes());
    }
    put(
        ftpd.root.path(),
        "dir.txt/inner",
        b"a directory that matches",
    );
    let mut raw = ftpd.anonymous();
    let (listed, done) = raw.fetch("NLST *.txt");
    assert_eq!(done.code, 226);
    assert_eq!(names(&listed), ["a.txt", "b.txt", "dir.txt"]);
    let (listed, _) = raw.fetch("NLST /logs/*.log");
    assert_eq!(names(&listed), ["/logs/x.log", "/logs/y.log"]);
    let (listed, _) = raw.fetch("NLST logs/?.[lz]og");
    assert_eq!(names(&listed), ["logs/x.log", "logs/y.log"]);
    let (listed, _) = raw.fetch("LIST logs/*.txt");
    let lines = names(&listed);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("-rw") && lines[0].ends_with(" z.txt"),
        "{lines:?}"
    );
    let status = raw.expect("STAT *.log", 213);
    assert_eq!(status.lines.len(), 3, "{status:?}");
    assert!(status.lines[1].ends_with(" c.log"), "{status:?}");
    // Nothing matches: 550 before any data connection is used.
    raw.passive();
    let missing = raw.expect("NLST *.pdf", 550);
    assert!(missing.text().contains("no file matches"), "{missing:?}");
    // MLSD takes no patterns.
    raw.passive();
    raw.expect("MLSD *.txt", 550);
}

#[test]
fn a_name_that_exists_literally_wins_over_the_pattern_issue_10() {
    let ftpd = Ftpd::start(&[]);
    for name in ["a*b", "aXb", "a[1]", "a1"] {
        put(ftpd.root.path(), name, b"x");
    }
    let mut raw = ftpd.anonymous();
    let (listed, _) = raw.fetch("NLST a*b");
    assert_eq!(names(&listed), ["a*b"]);
    let (listed, _) = raw.fetch("NLST a[1]");
    assert_eq!(names(&listed), ["a[1]"]);
    let (listed, _) = raw.fetch("NLST a?b");
    assert_eq!(names(&listed), ["a*b", "aXb"]);
}

#[test]
fn a_pathological_pattern_over_20000_entries_answers_promptly_issue_10() {
    let ftpd = Ftpd::start(&[]);
    let dir = ftpd.path("many");
    std::fs::create_dir(&dir).unwrap();
    let long = "a".repeat(40);
    for index in 0..20_000 {
        std::fs::File::create(dir.join(format!("{long}{index:05}"))).unwrap();
    }
    let mut raw = ftpd.anonymous();
    raw.passive();
    let asked = Instant::now();
    raw.expect("NLST many/*a*a*a*a*a*a*a*b", 550);
    // A backtracking matcher takes minutes here; ours is linear (generous bound for a debug
    // build on a busy machine).
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "took {:?}",
        asked.elapsed()
    );
}

#[test]
fn listings_come_in_name_order_issue_10() {
    let ftpd = Ftpd::start(&[]);
    let order = ["B", "_x", "a", "a.b", "ab", "b", "\u{e9}t\u{e9}"];
    for name in order.iter().rev() {
        put(ftpd.root.path(), name, b"x");
    }
    let mut raw = ftpd.anonymous();
    let (listed, _) = raw.fetch("NLST");
    assert_eq!(names(&listed), order);
    let (listed, _) = raw.fetch("LIST");
    let shown: Vec<String> = names(&listed)
        .iter()
        .map(|line| line.rsplit(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(shown, order);
    let (listed, _) = raw.fetch("MLSD");
    let shown: Vec<String> = names(&listed)
        .iter()
        .map(|line| line.split_once("; ").unwrap().1.to_owned())
        .collect();
    assert_eq!(shown, order);
}

#[test]
fn any_command_between_rnfr_and_rnto_drops_the_rename_issue_10() {
    let ftpd = Ftpd::start(&["--write"]);
    put(ftpd.root.path(), "a", b"a");
    put(ftpd.root.path(), "b", b"b");
    let mut raw = ftpd.anonymous();
    raw.expect("RNFR a", 350);
    raw.expect("DELE b", 250);
    raw.expect("RNTO c", 503);
    assert!(ftpd.path("a").exists() && !ftpd.path("c").exists());
    raw.expect("RNFR a", 350);
    raw.expect("NOOP", 200);
    raw.expect("RNTO c", 503);
    raw.expect("RNFR a", 350);
    raw.expect("RNTO c", 250);
    assert!(!ftpd.path("a").exists() && ftpd.path("c").exists());
}

#[test]
fn fifos_and_other_special_files_are_refused_not_opened_issue_10() {
    let ftpd = Ftpd::start(&["--write"]);
    let status = Command::new("mkfifo")
        .arg(ftpd.path("pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    let mut raw = ftpd.anonymous();
    raw.expect("TYPE I", 200);
    let refused = raw.expect("SIZE pipe", 550);
    assert!(refused.text().contains("not a regular file"), "{refused:?}");
    raw.expect("TYPE A", 200);
    raw.expect("SIZE pipe", 550);
    raw.passive();
    let refused = raw.expect("RETR pipe", 550);
    assert!(refused.text().contains("not a regular file"), "{refused:?}");
    raw.passive();
    raw.expect("STOR pipe", 550);
    raw.passive();
    raw.expect("APPE pipe", 550);
    raw.expect("MDTM pipe", 213);
    raw.expect("NOOP", 200);
}

#[test]
fn a_directory_the_server_cannot_read_is_550_at_cwd_and_list_issue_10() {
    // As root every permission check passes, so the server runs as nobody here.
    let root = tempfile::tempdir().unwrap();
    put(root.path(), "open/f", b"f");
    put(root.path(), "closed/f", b"f");
    let chmod = |path: &str, mode: &str| {
        let status = Command::new("chmod")
            .arg(mode)
            .arg(root.path().join(path))
            .status()
            .unwrap();
        assert!(status.success());
    };
    chmod(".", "755");
    chmod("open", "755");
    chmod("closed", "000");
    let am_root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let mut command = if am_root {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", FTPD]);
        command
    } else {
        Command::new(FTPD)
    };
    command
        .args(["--host", "127.0.0.1", "--port", "0", "--root"])
        .arg(root.path());
    let server = Server::spawn(command);
    let mut raw = Raw::connect(server.addr);
    raw.expect("USER anonymous", 331);
    raw.expect("PASS x", 230);
    raw.expect("CWD open", 250);
    let refused = raw.expect("CWD /closed", 550);
    assert!(refused.text().contains("permission denied"), "{refused:?}");
    raw.passive();
    raw.expect("LIST /closed", 550);
    raw.passive();
    raw.expect("NLST /closed", 550);
    raw.expect("PWD", 257);
    chmod("closed", "755");
}

#[test]
fn listings_are_logged_with_the_bytes_they_sent_issue_10() {
    let ftpd = Ftpd::start(&[]);
    put(ftpd.root.path(), "one", b"1");
    put(ftpd.root.path(), "two", b"2");
    let mut raw = ftpd.anonymous();
    let (listed, _) = raw.fetch("NLST");
    assert_eq!(listed, b"one\r\ntwo\r\n");
    let expected = format!("NLST / {} bytes", listed.len());
    assert!(
        ftpd.server.wait_for_log(&expected, Duration::from_secs(5)),
        "{:?}",
        ftpd.server.log_lines()
    );
}
