//! ftpd on object storage (issue 13), against a real S3 server: SeaweedFS's `weed mini`, one
//! for the whole file (`Seaweed::shared`), each test in a bucket of its own, ftpd started with
//! `--storage s3://BUCKET/ftp --s3-endpoint …` and the credentials in the AWS variables.
//! Stock clients (curl, lftp, Python's ftplib) drive it; what they store is checked through
//! s3store, by SHA-256.

mod support;

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use s3store::{Credentials, S3Error, Store, StoreConfig};
use support::{noise, put, sha256, Raw};
use testkit::{require_tool, run_ok, Seaweed, Server};

const MIB: usize = 1024 * 1024;
const CLIENT_LIMIT: Duration = Duration::from_secs(60);

/// The store ftpd serves in `bucket` (prefix `ftp/`), with the bucket created.
fn store(bucket: &str) -> Store {
    let seaweed = Seaweed::shared();
    let store = Store::new(StoreConfig {
        endpoint: seaweed.endpoint.parse().expect("endpoint url"),
        region: "us-east-1".into(),
        bucket: bucket.into(),
        prefix: "ftp/".into(),
        path_style: true,
        credentials: Credentials::new(&seaweed.access_key, &seaweed.secret_key),
        timeout: Duration::from_secs(20),
    })
    .expect("store");
    store.create_bucket().expect("create bucket");
    store
}

/// `ftpd --write --storage s3://BUCKET/ftp` on the shared weed, plus `args`.
fn ftpd(bucket: &str, args: &[&str]) -> Server {
    let seaweed = Seaweed::shared();
    let mut command = Command::new(support::FTPD);
    command
        .args(["--host", "127.0.0.1", "--port", "0", "--write"])
        .args(["--storage", &format!("s3://{bucket}/ftp")])
        .args(["--s3-endpoint", &seaweed.endpoint, "--s3-timeout", "20"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", &seaweed.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &seaweed.secret_key)
        .env_remove("AWS_SESSION_TOKEN");
    Server::spawn(command)
}

fn url(server: &Server, path: &str) -> String {
    format!("ftp://127.0.0.1:{}/{path}", server.addr.port())
}

fn anonymous(server: &Server) -> Raw {
    let mut raw = Raw::connect(server.addr);
    raw.expect("USER anonymous", 331);
    raw.expect("PASS guest@", 230);
    raw.expect("TYPE I", 200);
    raw
}

fn object(store: &Store, key: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    store
        .get(key, 0)
        .expect("get")
        .read_to_end(&mut bytes)
        .expect("read object");
    bytes
}

fn python(script: &str, port: u16) -> std::process::Output {
    require_tool("python3", "python3");
    let mut command = Command::new("python3");
    command.args(["-c", script, &port.to_string()]);
    testkit::run_with_timeout(command, CLIENT_LIMIT)
}

#[test]
fn curl_uploads_and_downloads_byte_exact_in_one_put_and_in_parts_issue_13() {
    require_tool("curl", "curl");
    let store = store("ftpd-curl");
    let server = ftpd("ftpd-curl", &[]);
    let local = tempfile::tempdir().unwrap();
    // 5 MiB goes up in one PUT; 20 MiB as a multipart upload of 8 + 8 + 4 MiB.
    for (name, size, seed) in [("five.bin", 5 * MIB, 1), ("twenty.bin", 20 * MIB, 2)] {
        let original = noise(size, seed);
        let source = local.path().join(name);
        std::fs::write(&source, &original).unwrap();
        let mut upload = Command::new("curl");
        upload
            .args(["-sS", "--fail", "--ftp-create-dirs", "-T"])
            .arg(&source)
            .arg(url(&server, &format!("in/{name}")));
        run_ok(upload, CLIENT_LIMIT);
        let key = format!("in/{name}");
        assert_eq!(store.head(&key).expect("head").size, size as u64);
        assert_eq!(sha256(&object(&store, &key)), sha256(&original));
        let got = local.path().join(format!("got-{name}"));
        let mut download = Command::new("curl");
        download
            .args(["-sS", "--fail", "-o"])
            .arg(&got)
            .arg(url(&server, &key));
        run_ok(download, CLIENT_LIMIT);
        assert_eq!(sha256(&std::fs::read(&got).unwrap()), sha256(&original));
    }
    assert_eq!(store.list_multipart_uploads("").expect("pending"), []);
}

#[test]
fn rest_resumes_a_download_as_a_range_request_issue_13() {
    require_tool("curl", "curl");
    let store = store("ftpd-resume");
    let server = ftpd("ftpd-resume", &[]);
    let original = noise(3 * MIB, 3);
    store.put("big.bin", &original).unwrap();
    let local = tempfile::tempdir().unwrap();
    let part = local.path().join("part.bin");
    let mut range = Command::new("curl");
    range
        .args(["-sS", "-r", "1000-200999", "-o"])
        .arg(&part)
        .arg(url(&server, "big.bin"));
    let _ = testkit::run_with_timeout(range, CLIENT_LIMIT);
    assert_eq!(std::fs::read(&part).unwrap(), &original[1000..201_000]);
    // A download cut off after 1 MiB, resumed with `-C -` (REST 1048576 + RETR).
    let resumed = local.path().join("resumed.bin");
    std::fs::write(&resumed, &original[..MIB]).unwrap();
    let mut resume = Command::new("curl");
    resume
        .args(["-sS", "--fail", "-C", "-", "-o"])
        .arg(&resumed)
        .arg(url(&server, "big.bin"));
    run_ok(resume, CLIENT_LIMIT);
    assert_eq!(sha256(&std::fs::read(&resumed).unwrap()), sha256(&original));
    let mut raw = anonymous(&server);
    raw.expect("REST 3145000", 350);
    let (tail, done) = raw.fetch("RETR big.bin");
    assert_eq!(done.code, 226, "{done:?}");
    assert_eq!(tail, &original[3_145_000..]);
    let size = raw.expect("SIZE big.bin", 213);
    assert_eq!(size.text(), format!("213 {}", 3 * MIB));
    raw.expect("MDTM big.bin", 213);
}

#[test]
fn lftp_mirrors_a_tree_both_ways_issue_13() {
    require_tool("lftp", "lftp");
    let store = store("ftpd-mirror");
    let server = ftpd("ftpd-mirror", &[]);
    let local = tempfile::tempdir().unwrap();
    let outgoing = local.path().join("outgoing");
    let files: [(&str, Vec<u8>); 4] = [
        ("a.bin", noise(300_000, 4)),
        ("deep/b.txt", b"b\n".to_vec()),
        ("deep/deeper/c.bin", noise(9 * MIB, 5)),
        ("empty.txt", Vec::new()),
    ];
    for (name, bytes) in &files {
        put(&outgoing, name, bytes);
    }
    let commands = format!(
        "set net:max-retries 1; set net:timeout 20; mirror -R {up} tree; mirror tree {down}; quit",
        up = outgoing.display(),
        down = local.path().join("down").display(),
    );
    let mut command = Command::new("lftp");
    command
        .args(["-u", "anonymous,guest@", "-e", &commands])
        .arg(format!("ftp://127.0.0.1:{}", server.addr.port()));
    run_ok(command, CLIENT_LIMIT);
    for (name, bytes) in &files {
        assert_eq!(
            sha256(&object(&store, &format!("tree/{name}"))),
            sha256(bytes),
            "{name} on the server"
        );
        let got = std::fs::read(local.path().join("down").join(name)).unwrap();
        assert_eq!(sha256(&got), sha256(bytes), "{name} mirrored back");
    }
}

#[test]
fn ftplib_lists_renames_deletes_and_makes_directories_issue_13() {
    let store = store("ftpd-ftplib");
    let server = ftpd("ftpd-ftplib", &[]);
    store.put("docs/readme.txt", b"read me\n").unwrap();
    let script = r#"
import ftplib, io, sys
ftp = ftplib.FTP()
ftp.connect("127.0.0.1", int(sys.argv[1]), timeout=20)
ftp.login()
print("mkd", ftp.mkd("new"))
ftp.storbinary("STOR new/one.txt", io.BytesIO(b"one\n"))
ftp.storbinary("STOR new/two.txt", io.BytesIO(b"two two\n"))
print("mlsd", sorted((name, facts["type"], facts.get("size")) for name, facts in ftp.mlsd("new")))
print("nlst", sorted(ftp.nlst("new")))
print("root", sorted(ftp.nlst()))
print("rename", ftp.rename("new/one.txt", "docs/uno.txt"))
print("delete", ftp.delete("new/two.txt"))
print("after", sorted(ftp.nlst("new")), sorted(ftp.nlst("docs")))
print("rmd", ftp.rmd("new"))
print("cwd", ftp.cwd("docs"), ftp.pwd())
try:
    ftp.cwd("/nowhere")
except ftplib.error_perm as error:
    print("nowhere", error)
ftp.quit()
"#;
    let output = python(script, server.addr.port());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} line in {stdout}"))
            .to_owned()
    };
    assert_eq!(line("mkd "), "mkd /new");
    assert_eq!(
        line("mlsd "),
        "mlsd [('one.txt', 'file', '4'), ('two.txt', 'file', '8')]"
    );
    assert_eq!(line("nlst "), "nlst ['one.txt', 'two.txt']");
    assert_eq!(line("root "), "root ['docs', 'new']");
    assert!(line("rename ").starts_with("rename 250"), "{stdout}");
    assert!(line("delete ").starts_with("delete 250"), "{stdout}");
    assert_eq!(line("after "), "after [] ['readme.txt', 'uno.txt']");
    assert!(line("rmd ").starts_with("rmd 250"), "{stdout}");
    assert!(line("cwd ").ends_with("/docs"), "{stdout}");
    assert!(line("nowhere ").starts_with("nowhere 550"), "{stdout}");
    assert_eq!(object(&store, "docs/uno.txt"), b"one\n");
    assert_eq!(store.head("new/one.txt"), Err(S3Error::NotFound));
    assert_eq!(
        store.head("new/"),
        Err(S3Error::NotFound),
        "the marker is gone"
    );
}

#[test]
fn a_listing_of_1500_objects_pages_through_every_one_issue_13() {
    let store = store("ftpd-many");
    let server = ftpd("ftpd-many", &[]);
    let count = 1500;
    std::thread::scope(|scope| {
        for worker in 0..8 {
            let store = &store;
            scope.spawn(move || {
                for n in (worker..count).step_by(8) {
                    store.put(&format!("many/f{n:05}"), b"x").expect("put");
                }
            });
        }
    });
    let mut raw = anonymous(&server);
    let (names, done) = raw.fetch("NLST many");
    assert_eq!(done.code, 226, "{done:?}");
    let names = String::from_utf8(names).unwrap();
    let names: Vec<&str> = names.lines().collect();
    assert_eq!(names.len(), count);
    assert_eq!(names[0], "f00000");
    assert_eq!(names[count - 1], "f01499");
    let (facts, done) = raw.fetch("MLSD many");
    assert_eq!(done.code, 226, "{done:?}");
    let facts = String::from_utf8(facts).unwrap();
    assert_eq!(facts.lines().count(), count);
    assert!(facts
        .lines()
        .all(|line| line.starts_with("type=file;size=1;")));
    let (matched, done) = raw.fetch("NLST many/f0149*");
    assert_eq!(done.code, 226, "{done:?}");
    assert_eq!(String::from_utf8(matched).unwrap().lines().count(), 10);
}

#[test]
fn what_object_storage_cannot_do_gets_its_documented_reply_issue_13() {
    let store = store("ftpd-refused");
    let server = ftpd("ftpd-refused", &[]);
    store.put("file.txt", b"content").unwrap();
    store.put("full/inside.txt", b"inside").unwrap();
    let mut raw = anonymous(&server);
    let append = raw.expect("APPE file.txt", 550);
    assert!(append.text().contains("cannot append"), "{append:?}");
    raw.expect("REST 3", 350);
    let resume = raw.expect("STOR file.txt", 504);
    assert!(resume.text().contains("cannot resume"), "{resume:?}");
    let mfmt = raw.expect("MFMT 20200101000000 file.txt", 550);
    assert!(mfmt.text().contains("modification times"), "{mfmt:?}");
    raw.expect("RNFR full", 350);
    let rename = raw.expect("RNTO elsewhere", 550);
    assert!(
        rename.text().contains("cannot rename a directory"),
        "{rename:?}"
    );
    let rmd = raw.expect("RMD full", 550);
    assert!(rmd.text().contains("not empty"), "{rmd:?}");
    raw.expect("DELE missing.txt", 550);
    raw.expect("CWD missing", 550);
    raw.expect("RETR missing.txt", 550);
    raw.expect("EPSV", 229);
    raw.expect("STOR missing/file.txt", 550);
    // An empty directory (its marker only) can be renamed, and the object is untouched.
    raw.expect("MKD empty", 257);
    raw.expect("RNFR empty", 350);
    raw.expect("RNTO moved", 250);
    raw.expect("CWD moved", 250);
    assert_eq!(object(&store, "file.txt"), b"content");
    assert_eq!(store.head("moved/").map(|info| info.size), Ok(0));
}

#[test]
fn a_client_killed_mid_upload_leaves_no_object_and_no_pending_upload_issue_13() {
    let store = store("ftpd-killed");
    let server = ftpd("ftpd-killed", &[]);
    // Twelve MiB sent, so the first 8 MiB part is under way, then SIGKILL.
    let script = r#"
import ftplib, os, signal, sys
ftp = ftplib.FTP()
ftp.connect("127.0.0.1", int(sys.argv[1]), timeout=20)
ftp.login()
ftp.voidcmd("TYPE I")
data = ftp.transfercmd("STOR killed.bin")
chunk = os.urandom(1024 * 1024)
for _ in range(12):
    data.sendall(chunk)
os.kill(os.getpid(), signal.SIGKILL)
"#;
    let output = python(script, server.addr.port());
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&output.status),
        Some(9),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        server.wait_for_log("STOR /killed.bin", Duration::from_secs(30)),
        "{:?}",
        server.log_lines()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store
        .list_multipart_uploads("")
        .expect("pending")
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "a multipart upload stays pending"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(store.head("killed.bin"), Err(S3Error::NotFound));
    let log = server.log_lines().join("\n");
    let ended = log
        .lines()
        .find(|line| line.contains("STOR /killed.bin"))
        .unwrap_or_default();
    assert!(
        ended.contains(" 0 bytes") && ended.contains("broken"),
        "{log}"
    );
}

#[test]
fn two_servers_on_one_bucket_see_each_others_files_at_once_issue_13() {
    let _store = store("ftpd-two");
    let first = ftpd("ftpd-two", &[]);
    let second = ftpd("ftpd-two", &[]);
    let mut one = anonymous(&first);
    let mut two = anonymous(&second);
    let from_first = noise(100_000, 6);
    one.expect("MKD shared", 257);
    let done = one.upload("STOR shared/from-first.bin", &from_first);
    assert_eq!(done.code, 226, "{done:?}");
    let (got, done) = two.fetch("RETR shared/from-first.bin");
    assert_eq!(done.code, 226, "{done:?}");
    assert_eq!(sha256(&got), sha256(&from_first));
    let done = two.upload("STOR shared/from-second.bin", b"second");
    assert_eq!(done.code, 226, "{done:?}");
    let (names, _) = one.fetch("NLST shared");
    assert_eq!(
        String::from_utf8(names).unwrap(),
        "from-first.bin\r\nfrom-second.bin\r\n"
    );
    one.expect("DELE shared/from-second.bin", 250);
    two.expect("SIZE shared/from-second.bin", 550);
}

#[test]
fn check_config_never_shows_the_secret_key_issue_13() {
    let _store = store("ftpd-config");
    let seaweed = Seaweed::shared();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ftpd.toml");
    let mut text = std::fs::File::create(&file).unwrap();
    write!(
        text,
        "storage = \"s3://ftpd-config/ftp\"\ns3-endpoint = \"{}\"\n\
         s3-access-key-id = \"{}\"\ns3-secret-access-key = \"{}\"\n",
        seaweed.endpoint, seaweed.access_key, seaweed.secret_key
    )
    .unwrap();
    drop(text);
    let mut command = Command::new(support::FTPD);
    command
        .arg("check-config")
        .arg(&file)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    let output = run_ok(command, CLIENT_LIMIT);
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(shown.contains("s3-path-style = true"), "{shown}");
    assert!(shown.contains(&seaweed.access_key), "{shown}");
    assert!(!shown.contains(&seaweed.secret_key), "{shown}");
}

#[test]
fn a_1_gib_upload_holds_about_one_part_in_memory_issue_13() {
    require_tool("curl", "curl");
    let store = store("ftpd-memory");
    let server = ftpd("ftpd-memory", &[]);
    let before = testkit::process_status(server.pid(), "VmHWM:");
    let local = tempfile::tempdir().unwrap();
    let source = local.path().join("big.bin");
    // 1 GiB written a MiB at a time (each MiB different), never held in memory here either.
    let mut file = std::io::BufWriter::new(std::fs::File::create(&source).unwrap());
    let block = noise(MIB, 7);
    for index in 0..1024u32 {
        std::io::Write::write_all(&mut file, &index.to_le_bytes()).unwrap();
        std::io::Write::write_all(&mut file, &block[4..]).unwrap();
    }
    std::io::Write::flush(&mut file).unwrap();
    drop(file);
    let mut upload = Command::new("curl");
    upload
        .args(["-sS", "--fail", "-T"])
        .arg(&source)
        .arg(url(&server, "big.bin"));
    run_ok(upload, Duration::from_secs(300));
    let peak = testkit::process_status(server.pid(), "VmHWM:");
    println!("ftpd peak RSS: {before} kB before, {peak} kB after a 1 GiB STOR");
    // One 8 MiB part buffered, plus the copy buffer and the HTTP client's: far below 1 GiB.
    assert!(peak < before + 24 * 1024, "{before} kB -> {peak} kB");
    assert_eq!(store.head("big.bin").expect("head").size, 1024 * MIB as u64);
    assert!(store
        .list_multipart_uploads("")
        .expect("list uploads")
        .is_empty());
}

#[test]
fn each_users_home_is_a_key_prefix_issue_13() {
    let store = store("ftpd-homes");
    store.put("alice/hello.txt", b"hi alice").unwrap();
    store.put("secret.txt", b"not for alice").unwrap();
    let mut child = Command::new(support::FTPD)
        .args(["passwd", "alice"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"pw-alice\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let line = String::from_utf8(output.stdout).unwrap();
    let (name_hash, _) = line.trim().rsplit_once(':').unwrap();
    let users = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(users.path(), format!("{name_hash}:rw:/alice\n")).unwrap();
    let server = ftpd(
        "ftpd-homes",
        &["--users", users.path().to_str().unwrap(), "--no-anonymous"],
    );
    let mut raw = Raw::connect(server.addr);
    raw.expect("USER alice", 331);
    raw.expect("PASS pw-alice", 230);
    let (got, _) = raw.fetch("RETR hello.txt");
    assert_eq!(got, b"hi alice");
    let done = raw.upload("STOR up.txt", b"from alice");
    assert_eq!(done.code, 226, "{done:?}");
    raw.expect("CWD ..", 250);
    raw.expect("PWD", 257);
    raw.expect("RETR /secret.txt", 550);
    let (names, _) = raw.fetch("NLST");
    assert_eq!(String::from_utf8(names).unwrap(), "hello.txt\r\nup.txt\r\n");
    assert_eq!(object(&store, "alice/up.txt"), b"from alice");
}

/// An S3 endpoint that answers the start-up listing, then takes every later request and
/// never answers it: the storage side hanging.
fn silent_endpoint() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let answered = std::sync::Arc::clone(&answered);
            held.push(std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match std::io::BufRead::read_line(&mut reader, &mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    if answered.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        // Hold the connection open and say nothing.
                        std::thread::sleep(Duration::from_secs(60));
                        return;
                    }
                    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult>\
                                <IsTruncated>false</IsTruncated></ListBucketResult>";
                    let _ = write!(
                        writer,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\n\
                         Content-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                }
            }));
        }
    });
    addr
}

#[test]
fn a_storage_service_that_stops_answering_gets_451_not_a_hung_session_issue_13() {
    let endpoint = silent_endpoint();
    let mut command = Command::new(support::FTPD);
    command
        .args(["--host", "127.0.0.1", "--port", "0", "--write"])
        .args(["--storage", "s3://silent/ftp"])
        .args(["--s3-endpoint", &format!("http://{endpoint}")])
        .args(["--s3-timeout", "1"])
        .env("AWS_ACCESS_KEY_ID", "key")
        .env("AWS_SECRET_ACCESS_KEY", "secret");
    let server = Server::spawn(command);
    let mut raw = anonymous(&server);
    let started = Instant::now();
    let size = raw.expect("SIZE file.txt", 451);
    assert!(size.text().contains("object storage failed"), "{size:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let mut data = raw.passive();
    raw.expect("LIST", 150);
    let mut listing = Vec::new();
    let _ = data.read_to_end(&mut listing);
    let end = raw.answer();
    assert_eq!(end.code, 451, "{end:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    raw.expect("NOOP", 200);
}
