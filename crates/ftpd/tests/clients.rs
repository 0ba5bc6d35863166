//! ftpd with clients we did not write: suppaftp (Rust), the stock `ftp` (tnftp), GNU inetutils
//! ftp, ncftpget, lftp, curl and Python's ftplib. Every file is compared by SHA-256.

mod support;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use suppaftp::list::{File as ListedFile, ListParser};
use suppaftp::types::FileType;
use suppaftp::{FtpStream, Mode};
use support::{noise, put, sha256, Ftpd, FTPD};
use testkit::{require_tool, run_ok};

const CLIENT_LIMIT: Duration = Duration::from_secs(60);
const BIG: usize = 5 * 1024 * 1024 + 123;

fn suppaftp_login(ftpd: &Ftpd, user: &str, password: &str) -> FtpStream {
    let mut ftp = FtpStream::connect(ftpd.addr()).expect("connect");
    ftp.login(user, password).expect("login");
    ftp.transfer_type(FileType::Binary).expect("TYPE I");
    ftp
}

#[test]
fn suppaftp_full_session() {
    let ftpd = Ftpd::start(&["--write"]);
    let big = noise(BIG, 11);
    let mut ftp = suppaftp_login(&ftpd, "anonymous", "guest@");
    assert_eq!(ftp.pwd().unwrap(), "/");
    ftp.mkdir("dir with space").unwrap();
    ftp.cwd("dir with space").unwrap();
    assert_eq!(ftp.pwd().unwrap(), "/dir with space");
    assert_eq!(
        ftp.put_file("big.bin", &mut Cursor::new(&big)).unwrap(),
        big.len() as u64
    );
    assert_eq!(
        sha256(&std::fs::read(ftpd.path("dir with space/big.bin")).unwrap()),
        sha256(&big)
    );
    let fetched = ftp.retr_as_buffer("big.bin").unwrap().into_inner();
    assert_eq!(sha256(&fetched), sha256(&big));
    assert_eq!(ftp.size("big.bin").unwrap(), big.len());
    ftp.mdtm("big.bin").unwrap();

    let listing = ftp.list(None).unwrap();
    let files: Vec<ListedFile> = listing
        .iter()
        .map(|line| {
            ListParser::parse_posix(line).unwrap_or_else(|error| panic!("{line:?}: {error:?}"))
        })
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!((files[0].name(), files[0].size()), ("big.bin", big.len()));
    let facts = ftp.mlsd(None).unwrap();
    let parsed = ListParser::parse_mlsd(&facts[0]).unwrap();
    assert_eq!(
        (parsed.name(), parsed.size(), parsed.is_file()),
        ("big.bin", big.len(), true)
    );
    ftp.mlst(Some("big.bin")).unwrap();
    assert_eq!(ftp.nlst(None).unwrap(), ["big.bin"]);

    ftp.set_mode(Mode::ExtendedPassive);
    ftp.rename("big.bin", "renamed.bin").unwrap();
    assert!(ftp.retr_as_buffer("big.bin").is_err());
    assert_eq!(
        ftp.retr_as_buffer("renamed.bin")
            .unwrap()
            .into_inner()
            .len(),
        big.len()
    );
    ftp.resume_transfer(BIG - 23).unwrap();
    assert_eq!(
        ftp.retr_as_buffer("renamed.bin").unwrap().into_inner(),
        big[BIG - 23..]
    );
    ftp.rm("renamed.bin").unwrap();
    ftp.cdup().unwrap();
    ftp.rmdir("dir with space").unwrap();
    ftp.quit().unwrap();
    assert!(std::fs::read_dir(ftpd.root.path())
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn suppaftp_active_mode() {
    let ftpd = Ftpd::start(&[]);
    let data = noise(200_000, 5);
    put(ftpd.root.path(), "a.bin", &data);
    let mut ftp = suppaftp_login(&ftpd, "ftp", "x").active_mode(Duration::from_secs(10));
    assert_eq!(
        sha256(&ftp.retr_as_buffer("a.bin").unwrap().into_inner()),
        sha256(&data)
    );
    assert_eq!(ftp.nlst(None).unwrap(), ["a.bin"]);
}

#[test]
fn users_file_logins_with_rw_ro_and_home() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("alice")).unwrap();
    put(root.path(), "alice/hello.txt", b"hi alice");
    let mut lines = String::new();
    for (name, access, home) in [("alice", "rw", "/alice"), ("bob", "ro", "")] {
        let mut passwd = Command::new(FTPD);
        passwd
            .args(["passwd", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = passwd.spawn().unwrap();
        std::io::Write::write_all(
            child.stdin.as_mut().unwrap(),
            format!("pw-{name}\n").as_bytes(),
        )
        .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        let line = String::from_utf8(output.stdout).unwrap();
        assert!(
            line.starts_with(&format!("{name}:$argon2")) && !line.contains(&format!("pw-{name}")),
            "{line}"
        );
        let (name_hash, _) = line.trim().rsplit_once(':').unwrap();
        lines.push_str(&format!("{name_hash}:{access}:{home}\n"));
    }
    let users = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(users.path(), lines).unwrap();
    let ftpd = Ftpd::start_in(root, &["--users", users.path().to_str().unwrap()]);

    let mut alice = suppaftp_login(&ftpd, "alice", "pw-alice");
    assert_eq!(
        alice.retr_as_buffer("hello.txt").unwrap().into_inner(),
        b"hi alice"
    );
    alice
        .put_file("up.txt", &mut Cursor::new(b"from alice"))
        .unwrap();
    assert_eq!(
        std::fs::read(ftpd.path("alice/up.txt")).unwrap(),
        b"from alice"
    );
    alice.cwd("..").unwrap();
    assert_eq!(alice.pwd().unwrap(), "/", "alice is jailed to her home");
    assert!(alice.retr_as_buffer("alice/hello.txt").is_err());

    let mut bob = suppaftp_login(&ftpd, "bob", "pw-bob");
    assert!(
        bob.put_file("x.txt", &mut Cursor::new(b"no")).is_err(),
        "bob is read-only"
    );
    assert_eq!(
        bob.retr_as_buffer("alice/hello.txt").unwrap().into_inner(),
        b"hi alice"
    );

    let mut wrong = FtpStream::connect(ftpd.addr()).unwrap();
    assert!(wrong.login("alice", "pw-bob").is_err());
    let mut anonymous = FtpStream::connect(ftpd.addr()).unwrap();
    assert!(
        anonymous.login("anonymous", "x").is_err(),
        "anonymous is off with --users"
    );
    let log = ftpd.server.log_lines().join("\n");
    assert!(
        !log.contains("pw-alice") && !log.contains("pw-bob"),
        "passwords logged: {log}"
    );
}

#[test]
fn stock_ftp_client_cd_ls_get_put_close() {
    require_tool("ftp", "ftp");
    let ftpd = Ftpd::start(&["--write"]);
    let big = noise(BIG, 21);
    put(ftpd.root.path(), "sub/remote.bin", &big);
    let local = tempfile::tempdir().unwrap();
    let upload = noise(1_000_000, 22);
    std::fs::write(local.path().join("up.bin"), &upload).unwrap();
    let script = format!(
        "user anonymous guest@\nbinary\ncd sub\nls\nget remote.bin {got}\nput {up} up.bin\nclose\nquit\n",
        got = local.path().join("got.bin").display(),
        up = local.path().join("up.bin").display(),
    );
    let mut command = Command::new("sh");
    command.args([
        "-c",
        &format!(
            "printf '%s' \"$SCRIPT\" | ftp -n -p -v 127.0.0.1 {}",
            ftpd.addr().port()
        ),
    ]);
    command.env("SCRIPT", script);
    let output = run_ok(command, CLIENT_LIMIT);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("remote.bin"), "ls output missing: {stdout}");
    assert_eq!(
        sha256(&std::fs::read(local.path().join("got.bin")).unwrap()),
        sha256(&big)
    );
    assert_eq!(
        sha256(&std::fs::read(ftpd.path("sub/up.bin")).unwrap()),
        sha256(&upload)
    );
}

#[test]
fn lftp_mirrors_both_ways() {
    require_tool("lftp", "lftp");
    let ftpd = Ftpd::start(&["--write"]);
    let big = noise(BIG, 31);
    put(ftpd.root.path(), "tree/big.bin", &big);
    put(ftpd.root.path(), "tree/nested/small.txt", b"small\n");
    let local = tempfile::tempdir().unwrap();
    let outgoing = local.path().join("outgoing");
    put(&outgoing, "a.bin", &noise(300_000, 32));
    put(&outgoing, "deep/b.txt", b"b\n");
    let commands = format!(
        "set net:max-retries 1; set net:timeout 10; mirror tree {down}; mirror -R {up} uploaded; quit",
        down = local.path().join("down").display(),
        up = outgoing.display(),
    );
    let mut command = Command::new("lftp");
    command
        .args(["-u", "anonymous,guest@", "-e", &commands])
        .arg(format!("ftp://127.0.0.1:{}", ftpd.addr().port()));
    run_ok(command, CLIENT_LIMIT);
    assert_eq!(
        sha256(&std::fs::read(local.path().join("down/big.bin")).unwrap()),
        sha256(&big)
    );
    assert_eq!(
        std::fs::read(local.path().join("down/nested/small.txt")).unwrap(),
        b"small\n"
    );
    assert_eq!(
        std::fs::read(ftpd.path("uploaded/a.bin")).unwrap(),
        std::fs::read(outgoing.join("a.bin")).unwrap()
    );
    assert_eq!(
        std::fs::read(ftpd.path("uploaded/deep/b.txt")).unwrap(),
        b"b\n"
    );
}

#[test]
fn curl_download_upload_active_and_ranges() {
    require_tool("curl", "curl");
    let ftpd = Ftpd::start(&["--write"]);
    let big = noise(BIG, 41);
    put(ftpd.root.path(), "big.bin", &big);
    let local = tempfile::tempdir().unwrap();
    let got = local.path().join("got.bin");

    let mut download = Command::new("curl");
    download
        .args(["-sS", "--fail", "-o"])
        .arg(&got)
        .arg(ftpd.url("big.bin"));
    run_ok(download, CLIENT_LIMIT);
    assert_eq!(sha256(&std::fs::read(&got).unwrap()), sha256(&big));

    let mut active = Command::new("curl");
    active
        .args(["-sS", "--fail", "--ftp-port", "127.0.0.1", "-o"])
        .arg(&got)
        .arg(ftpd.url("big.bin"));
    run_ok(active, CLIENT_LIMIT);
    assert_eq!(sha256(&std::fs::read(&got).unwrap()), sha256(&big));

    let mut range = Command::new("curl");
    range
        .args(["-sS", "--fail", "-r", "10-99"])
        .arg(ftpd.url("big.bin"));
    let output = run_ok(range, CLIENT_LIMIT);
    assert_eq!(output.stdout, big[10..100]);

    let upload = local.path().join("up.bin");
    let sent = noise(2_000_000, 42);
    std::fs::write(&upload, &sent).unwrap();
    let mut put_file = Command::new("curl");
    put_file
        .args(["-sS", "--fail", "--ftp-create-dirs", "-T"])
        .arg(&upload)
        .arg(ftpd.url("new/dir/"));
    run_ok(put_file, CLIENT_LIMIT);
    assert_eq!(
        sha256(&std::fs::read(ftpd.path("new/dir/up.bin")).unwrap()),
        sha256(&sent)
    );

    let mut listing = Command::new("curl");
    listing.args(["-sS", "--fail"]).arg(ftpd.url(""));
    let output = run_ok(listing, CLIENT_LIMIT);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.lines()
            .any(|line| line.starts_with('-') && line.ends_with(" big.bin")),
        "{text}"
    );
}

#[test]
fn python_ftplib_mlsd_retr_stor() {
    require_tool("python3", "python3");
    let ftpd = Ftpd::start(&["--write"]);
    let big = noise(BIG, 51);
    put(ftpd.root.path(), "big.bin", &big);
    put(ftpd.root.path(), "docs/readme.txt", b"read me\n");
    let script = r#"
import ftplib, hashlib, io, json, sys
ftp = ftplib.FTP()
ftp.connect("127.0.0.1", int(sys.argv[1]), timeout=20)
ftp.login()
facts = {name: facts for name, facts in ftp.mlsd()}
digest = hashlib.sha256()
ftp.retrbinary("RETR big.bin", digest.update)
ftp.storbinary("STOR docs/up.bin", io.BytesIO(b"x" * 100000))
lines = []
ftp.retrlines("RETR docs/readme.txt", lines.append)
ftp.quit()
print(json.dumps({"facts": facts, "sha": digest.hexdigest(), "lines": lines}))
"#;
    let mut command = Command::new("python3");
    command.args(["-c", script, &ftpd.addr().port().to_string()]);
    let output = run_ok(command, CLIENT_LIMIT);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains(&format!("\"sha\": \"{}\"", sha256(&big))),
        "{stdout}"
    );
    let big_facts = format!("\"big.bin\": {{\"type\": \"file\", \"size\": \"{BIG}\"");
    assert!(stdout.contains(&big_facts), "{stdout}");
    assert!(stdout.contains("\"docs\": {\"type\": \"dir\""), "{stdout}");
    assert!(stdout.contains("\"lines\": [\"read me\"]"), "{stdout}");
    assert_eq!(
        std::fs::read(ftpd.path("docs/up.bin")).unwrap(),
        vec![b'x'; 100_000]
    );
}

// Server-side globbing (issue 10): `mget PATTERN` in the classic clients sends `NLST PATTERN`
// and fetches every name the server lists, so a wrong match, a directory walked into or a
// mangled name shows up here as a file too many, too few or with the wrong bytes.

/// The server root the `mget *.txt` tests share: two matches, a near miss, and a match one
/// directory down that a glob in the last component must not reach. Returns name → SHA-256
/// of exactly what should arrive.
fn txt_glob_fixture(root: &Path, seed: u64) -> BTreeMap<String, String> {
    let a = noise(70_000, seed);
    let b = noise(1_234, seed + 1);
    put(root, "a.txt", &a);
    put(root, "b.txt", &b);
    put(root, "c.log", &noise(500, seed + 2));
    put(root, "sub/d.txt", &noise(600, seed + 3));
    BTreeMap::from([
        ("a.txt".to_owned(), sha256(&a)),
        ("b.txt".to_owned(), sha256(&b)),
    ])
}

/// Everything in `dir`: file name → SHA-256 of its bytes, a directory as `<dir>`, so a stray
/// entry of any kind fails the comparison.
fn local_files(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let digest = if entry.file_type().unwrap().is_dir() {
                "<dir>".to_owned()
            } else {
                sha256(&std::fs::read(entry.path()).unwrap())
            };
            (name, digest)
        })
        .collect()
}

/// Feeds `script` on stdin to `client FLAGS 127.0.0.1 PORT`, run in `local`, which must exit
/// 0; returns its stdout (the `-d` transcript included).
fn run_ftp_script(client: &str, flags: &str, script: &str, ftpd: &Ftpd, local: &Path) -> String {
    let mut command = Command::new("sh");
    command
        .args([
            "-c",
            &format!(
                "printf '%s' \"$SCRIPT\" | {client} {flags} 127.0.0.1 {}",
                ftpd.addr().port()
            ),
        ])
        .env("SCRIPT", script)
        .current_dir(local);
    let output = run_ok(command, CLIENT_LIMIT);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn tnftp_mget_glob_fetches_only_matches_issue_10() {
    require_tool("tnftp", "tnftp");
    let ftpd = Ftpd::start(&[]);
    let expected = txt_glob_fixture(ftpd.root.path(), 61);
    let local = tempfile::tempdir().unwrap();
    // `prompt off` is explicit in tnftp (a bare `prompt` toggles).
    let stdout = run_ftp_script(
        "tnftp",
        "-n -p -v -d",
        "user anonymous guest@\nbinary\nprompt off\nmget *.txt\nquit\n",
        &ftpd,
        local.path(),
    );
    assert!(
        stdout.contains("---> NLST *.txt"),
        "tnftp did not ask the server to expand the glob: {stdout}"
    );
    assert_eq!(local_files(local.path()), expected, "{stdout}");
}

#[test]
fn inetutils_ftp_mget_glob_fetches_only_matches_issue_10() {
    require_tool("inetutils-ftp", "inetutils-ftp");
    let ftpd = Ftpd::start(&[]);
    let expected = txt_glob_fixture(ftpd.root.path(), 71);
    let local = tempfile::tempdir().unwrap();
    // `-i` rather than `prompt off`: inetutils' `prompt` ignores its argument and toggles.
    // It exits 0 even when mget fetched nothing, so the files are the verdict.
    let stdout = run_ftp_script(
        "inetutils-ftp",
        "-i -n -p -v -d",
        "user anonymous guest@\nbinary\nmget *.txt\nquit\n",
        &ftpd,
        local.path(),
    );
    assert!(
        stdout.contains("---> NLST *.txt"),
        "inetutils ftp did not ask the server to expand the glob: {stdout}"
    );
    assert_eq!(local_files(local.path()), expected, "{stdout}");
}

#[test]
fn ncftpget_glob_with_directory_part_fetches_only_matches_issue_10() {
    require_tool("ncftpget", "ncftp");
    let ftpd = Ftpd::start(&[]);
    let root = ftpd.root.path();
    let x = noise(40_000, 81);
    let y = noise(777, 82);
    put(root, "logs/x.log", &x);
    put(root, "logs/y.log", &y);
    put(root, "logs/z.txt", &noise(300, 83));
    put(root, "w.log", &noise(200, 84));
    let local = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("ncftpget.log");
    // Anonymous and passive by default; -V: no progress meter; -t: its own I/O timeout.
    let mut command = Command::new("ncftpget");
    command
        .args(["-V", "-t", "20", "-d"])
        .arg(&log)
        .args(["-P", &ftpd.addr().port().to_string(), "127.0.0.1"])
        .arg(local.path())
        .arg("/logs/*.log");
    run_ok(command, CLIENT_LIMIT);
    let transcript = std::fs::read_to_string(&log).unwrap_or_default();
    // The names come back as `/logs/x.log`, which ncftpget retrieves as they are.
    assert!(
        transcript.contains("Cmd: NLST /logs/*.log"),
        "ncftpget did not ask the server to expand the glob: {transcript}"
    );
    assert_eq!(
        local_files(local.path()),
        BTreeMap::from([
            ("x.log".to_owned(), sha256(&x)),
            ("y.log".to_owned(), sha256(&y)),
        ]),
        "{transcript}"
    );
}

#[test]
fn lftp_mget_glob_fetches_only_matches_issue_10() {
    require_tool("lftp", "lftp");
    let ftpd = Ftpd::start(&[]);
    let expected = txt_glob_fixture(ftpd.root.path(), 91);
    let local = tempfile::tempdir().unwrap();
    // lftp's mget globs on the client, over MLSD; `nlist PATTERN` sends `NLST PATTERN` as is,
    // so the server's own expansion (and its order) is checked through lftp too.
    let mut command = Command::new("lftp");
    command
        .args([
            "-u",
            "anonymous,guest@",
            "-e",
            "set net:max-retries 1; set net:timeout 10; nlist *.txt; nlist /sub/*.txt; mget *.txt; quit",
        ])
        .arg(format!("ftp://127.0.0.1:{}", ftpd.addr().port()))
        .current_dir(local.path());
    let output = run_ok(command, CLIENT_LIMIT);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout, "a.txt\nb.txt\n/sub/d.txt\n");
    assert_eq!(local_files(local.path()), expected);
}
