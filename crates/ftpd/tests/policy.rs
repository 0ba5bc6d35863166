//! Per-user policy (issue 12), through real clients as different users: permissions as a set,
//! quotas in bytes and files (kept across overwrite, delete and a restart), bandwidth caps
//! shared by all of a user's sessions (measured over whole transfers, ±10 %), and the most
//! sessions per user.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{noise, put, sha256, Ftpd, Raw};
use testkit::{require_tool, run_ok, run_with_timeout};

const LIMIT: Duration = Duration::from_secs(120);

/// A users file of `[accounts.*]` tables, each with the password "pw" and the given extra
/// lines; returns the file (kept alive by the caller).
fn accounts(tables: &[(&str, &str)]) -> tempfile::NamedTempFile {
    let hash = ftpd::users::hash_password("pw").unwrap();
    let mut text = String::from("# users of the policy tests\n");
    for (name, extra) in tables {
        text.push_str(&format!("[accounts.{name}]\n"));
        if *name != "anonymous" {
            text.push_str(&format!("password = \"{hash}\"\n"));
        }
        text.push_str(extra);
        text.push_str("\n\n");
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

fn start(users: &tempfile::NamedTempFile, extra: &[&str]) -> Ftpd {
    let mut args = vec!["--users", users.path().to_str().unwrap()];
    args.extend_from_slice(extra);
    Ftpd::start(&args)
}

fn login(ftpd: &Ftpd, user: &str) -> Raw {
    let mut raw = Raw::connect(ftpd.addr());
    raw.expect(&format!("USER {user}"), 331);
    raw.expect("PASS pw", 230);
    raw
}

fn url(ftpd: &Ftpd, path: &str) -> String {
    ftpd.url(path)
}

/// curl as `user`: upload `local` to `path`; true when it succeeded.
fn curl_put(ftpd: &Ftpd, user: &str, local: &Path, path: &str) -> bool {
    let mut curl = Command::new("curl");
    curl.args(["-sS", "--fail", "-u", &format!("{user}:pw"), "-T"])
        .arg(local)
        .arg(url(ftpd, path));
    run_with_timeout(curl, LIMIT).status.success()
}

#[test]
fn permissions_are_a_set_checked_through_curl_lftp_and_ftplib_issue_12() {
    require_tool("curl", "curl");
    require_tool("lftp", "lftp");
    require_tool("python3", "python3");
    let users = accounts(&[
        ("alice", "permissions = [\"list\", \"download\", \"upload\", \"overwrite\", \"append\", \"delete\", \"rename\", \"mkdir\", \"rmdir\"]"),
        ("bob", "permissions = [\"list\", \"download\", \"upload\"]"),
        ("drop", "permissions = [\"upload\"]\nhome = \"/inbox\""),
        ("anonymous", "permissions = [\"list\"]"),
    ]);
    let ftpd = start(&users, &["--anonymous"]);
    put(ftpd.root.path(), "inbox/.keep", b"");
    put(ftpd.root.path(), "report.txt", b"the report\n");
    let local = tempfile::tempdir().unwrap();
    let file = local.path().join("new.bin");
    std::fs::write(&file, noise(50_000, 1)).unwrap();

    // bob uploads a new name, but may not overwrite, delete or make a directory.
    assert!(curl_put(&ftpd, "bob", &file, "bobs.bin"));
    std::fs::write(&file, b"second version").unwrap();
    assert!(!curl_put(&ftpd, "bob", &file, "bobs.bin"));
    assert_eq!(
        sha256(&std::fs::read(ftpd.path("bobs.bin")).unwrap()),
        sha256(&noise(50_000, 1))
    );
    let mut raw = login(&ftpd, "bob");
    let refused = raw.expect("DELE report.txt", 550);
    assert!(
        refused
            .text()
            .contains("permission denied: this login may not delete"),
        "{refused:?}"
    );
    raw.expect("RNFR report.txt", 550);
    raw.expect("QUIT", 221);
    let mut lftp = Command::new("lftp");
    lftp.arg("-c").arg(format!(
        "set net:max-retries 1; open -u bob,pw {}; mkdir made-by-bob",
        url(&ftpd, "")
    ));
    assert!(!run_with_timeout(lftp, LIMIT).status.success());
    assert!(!ftpd.path("made-by-bob").exists());
    assert!(ftpd.path("report.txt").exists());
    assert!(ftpd
        .server
        .wait_for_log("bob may not overwrite", Duration::from_secs(5)));

    // A drop box: ftplib uploads, but cannot list or read back.
    let script = r#"
import ftplib, io, sys
ftp = ftplib.FTP()
ftp.connect("127.0.0.1", int(sys.argv[1]), timeout=20)
ftp.login("drop", "pw")
ftp.storbinary("STOR delivered.bin", io.BytesIO(b"for the inbox"))
for attempt in (lambda: ftp.nlst(), lambda: ftp.retrbinary("RETR delivered.bin", print)):
    try:
        attempt()
        print("allowed")
    except ftplib.error_perm as error:
        print("refused", str(error)[:3])
ftp.quit()
"#;
    let mut python = Command::new("python3");
    python.args(["-c", script, &ftpd.addr().port().to_string()]);
    let output = run_ok(python, LIMIT);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "refused 550\nrefused 550\n"
    );
    assert_eq!(
        std::fs::read(ftpd.path("inbox/delivered.bin")).unwrap(),
        b"for the inbox"
    );

    // Anonymous, configured the same way: may list, may not download.
    let mut listing = Command::new("curl");
    listing.args(["-sS", "--fail"]).arg(url(&ftpd, ""));
    let listed = run_ok(listing, LIMIT);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("report.txt"));
    let mut download = Command::new("curl");
    download
        .args(["-sS", "--fail"])
        .arg(url(&ftpd, "report.txt"));
    assert!(!run_with_timeout(download, LIMIT).status.success());

    // alice may do it all.
    let mut raw = login(&ftpd, "alice");
    raw.expect("RNFR bobs.bin", 350);
    raw.expect("RNTO alices.bin", 250);
    raw.expect("DELE alices.bin", 250);
    raw.expect("MKD made-by-alice", 257);
    raw.expect("RMD made-by-alice", 250);
}

#[test]
fn quotas_hold_across_overwrite_delete_and_a_restart_issue_12() {
    require_tool("curl", "curl");
    let users = accounts(&[(
        "carol",
        "home = \"/carol\"\nquota-bytes = \"1MiB\"\nquota-files = 4",
    )]);
    let root = tempfile::tempdir().unwrap();
    // 600 KiB already there before the server starts: counted at login.
    put(root.path(), "carol/old.bin", &noise(600 << 10, 2));
    let ftpd = Ftpd::start_in(
        root,
        &["--write", "--users", users.path().to_str().unwrap()],
    );
    let local = tempfile::tempdir().unwrap();
    let sized = |name: &str, kib: usize, seed: u64| {
        let path = local.path().join(name);
        std::fs::write(&path, noise(kib << 10, seed)).unwrap();
        path
    };
    assert!(curl_put(&ftpd, "carol", &sized("a", 300, 3), "a.bin")); // 900 KiB
    assert!(!curl_put(&ftpd, "carol", &sized("b", 200, 4), "b.bin")); // 1100: over
    assert!(!ftpd.path("carol/b.bin").exists());
    let leftovers: Vec<_> = std::fs::read_dir(ftpd.path("carol"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    // An upload over the quota that would replace a good file leaves it intact.
    let mut raw = login(&ftpd, "carol");
    let mut data = raw.passive();
    raw.expect("STOR a.bin", 150);
    let _ = std::io::Write::write_all(&mut data, &noise(900 << 10, 5));
    drop(data);
    let answer = raw.answer();
    assert_eq!(answer.code, 552, "{answer:?}");
    assert!(answer.text().contains("quota"), "{answer:?}");
    assert_eq!(
        sha256(&std::fs::read(ftpd.path("carol/a.bin")).unwrap()),
        sha256(&noise(300 << 10, 3))
    );
    // Overwriting counts the difference: 600 KiB → 100 KiB frees 500 KiB.
    assert!(curl_put(&ftpd, "carol", &sized("c", 100, 6), "old.bin")); // 400 KiB
    assert!(curl_put(&ftpd, "carol", &sized("d", 500, 7), "d.bin")); // 900 KiB
    raw.expect("DELE a.bin", 250); // 600 KiB, 2 files
    assert!(curl_put(&ftpd, "carol", &sized("e", 350, 8), "e.bin")); // 950 KiB, 3 files
    assert!(curl_put(&ftpd, "carol", &sized("f", 1, 9), "f.bin")); // 951 KiB, 4 files
                                                                   // The files quota refuses a fifth file before any byte moves.
    raw.passive();
    let refused = raw.expect("STOR g.bin", 552);
    assert!(refused.text().contains("files quota"), "{refused:?}");
    raw.expect("QUIT", 221);

    // After a restart the usage is counted again from the disk: 951 KiB in 4 files.
    let root = {
        let Ftpd { server, root } = ftpd;
        drop(server);
        root
    };
    let ftpd = Ftpd::start_in(
        root,
        &["--write", "--users", users.path().to_str().unwrap()],
    );
    assert!(!curl_put(&ftpd, "carol", &sized("g", 1, 11), "g.bin")); // a fifth file
    assert!(curl_put(&ftpd, "carol", &sized("h", 200, 12), "e.bin")); // 951 - 350 + 200
    assert!(!curl_put(&ftpd, "carol", &sized("i", 450, 13), "e.bin")); // 801 - 200 + 450
    assert_eq!(
        sha256(&std::fs::read(ftpd.path("carol/e.bin")).unwrap()),
        sha256(&noise(200 << 10, 12))
    );
}

/// curl downloads `path` as `user` into `into`; returns curl's own average speed (bytes/s).
fn curl_speed(ftpd: &Ftpd, user: &str, path: &str, into: &Path) -> f64 {
    let mut curl = Command::new("curl");
    curl.args([
        "-sS",
        "--fail",
        "-u",
        &format!("{user}:pw"),
        "-w",
        "%{speed_download}",
        "-o",
    ])
    .arg(into)
    .arg(url(ftpd, path));
    let output = run_ok(curl, LIMIT);
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn rate_caps_hold_over_whole_transfers_and_across_sessions_issue_12() {
    require_tool("curl", "curl");
    const CAP: f64 = 10.0 * 1024.0 * 1024.0;
    let users = accounts(&[
        ("dave", "download-rate = \"10MiB\"\nupload-rate = \"10MiB\""),
        ("alice", ""),
    ]);
    let ftpd = start(&users, &["--write"]);
    let big = noise(64 << 20, 21);
    put(ftpd.root.path(), "big.bin", &big);
    put(ftpd.root.path(), "half-a.bin", &big[..16 << 20]);
    put(ftpd.root.path(), "half-b.bin", &big[16 << 20..32 << 20]);
    let local = tempfile::tempdir().unwrap();
    // dave's 64 MiB download, while alice (uncapped) downloads the same file.
    let (capped, free) = std::thread::scope(|scope| {
        let capped = scope.spawn(|| curl_speed(&ftpd, "dave", "big.bin", &local.path().join("d")));
        std::thread::sleep(Duration::from_millis(500));
        let free = curl_speed(&ftpd, "alice", "big.bin", &local.path().join("a"));
        (capped.join().unwrap(), free)
    });
    println!(
        "64 MiB: dave {:.2} MiB/s under a 10 MiB/s cap, alice {:.1} MiB/s uncapped",
        capped / 1048576.0,
        free / 1048576.0
    );
    assert!((capped - CAP).abs() <= CAP * 0.10, "capped at {capped} B/s");
    assert!(free > CAP * 3.0, "alice was slowed to {free} B/s");
    assert_eq!(
        sha256(&std::fs::read(local.path().join("d")).unwrap()),
        sha256(&big)
    );
    // Two sessions of dave at once share the one cap.
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for name in ["half-a.bin", "half-b.bin"] {
            let into = local.path().join(name);
            let ftpd = &ftpd;
            scope.spawn(move || curl_speed(ftpd, "dave", name, &into));
        }
    });
    let together = (32u64 << 20) as f64 / started.elapsed().as_secs_f64();
    println!("two sessions together: {:.2} MiB/s", together / 1048576.0);
    assert!(together <= CAP * 1.10, "two sessions got {together} B/s");
    assert!(
        together >= CAP * 0.80,
        "two sessions got only {together} B/s"
    );
    // Uploads are capped the same way.
    let upload = local.path().join("up.bin");
    std::fs::write(&upload, &big[..32 << 20]).unwrap();
    let mut curl = Command::new("curl");
    curl.args([
        "-sS",
        "--fail",
        "-u",
        "dave:pw",
        "-w",
        "%{speed_upload}",
        "-T",
    ])
    .arg(&upload)
    .arg(url(&ftpd, "up.bin"));
    let output = run_ok(curl, LIMIT);
    let up: f64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();
    println!(
        "32 MiB upload: {:.2} MiB/s under a 10 MiB/s cap",
        up / 1048576.0
    );
    assert!((up - CAP).abs() <= CAP * 0.10, "upload at {up} B/s");
    assert_eq!(
        sha256(&std::fs::read(ftpd.path("up.bin")).unwrap()),
        sha256(&big[..32 << 20])
    );
}

#[test]
fn a_user_gets_at_most_max_sessions_at_once_issue_12() {
    let users = accounts(&[("frank", "max-sessions = 2"), ("alice", "")]);
    let ftpd = start(&users, &[]);
    let first = login(&ftpd, "frank");
    let mut second = login(&ftpd, "frank");
    let mut third = Raw::connect(ftpd.addr());
    third.expect("USER frank", 331);
    let refused = third.expect("PASS pw", 421);
    assert!(refused.text().contains("too many sessions"), "{refused:?}");
    // Others are not counted against frank.
    let mut other = login(&ftpd, "alice");
    other.expect("QUIT", 221);
    drop(first);
    // frank's first session is gone once the server has seen it close.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = Raw::connect(ftpd.addr());
        again.expect("USER frank", 331);
        again.send("PASS pw");
        if again.answer().code == 230 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot never came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    second.expect("QUIT", 221);
}
