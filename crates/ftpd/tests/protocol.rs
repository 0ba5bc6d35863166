//! ftpd's replies checked byte for byte over a raw control connection: codes, quoting,
//! pipelining, REST ordering, ABOR, TYPE A and the jail.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use support::{connect_from, names_in, noise, put, Ftpd, Raw};

#[test]
fn greeting_login_and_codes_before_login() {
    let ftpd = Ftpd::start(&[]);
    let mut raw = Raw::connect(ftpd.addr());
    raw.expect("PWD", 530);
    raw.expect("LIST", 530);
    raw.expect("SYST", 215);
    raw.expect("PASS x", 503);
    raw.expect("USER nobody-in-particular", 331);
    raw.expect("USER anonymous", 331);
    raw.expect("PASS me@example.org", 230);
    raw.expect("ACCT x", 202);
    raw.expect("QUIT", 221);
}

#[test]
fn syst_feat_help_and_opts() {
    let ftpd = Ftpd::start(&[]);
    let mut raw = ftpd.anonymous();
    assert_eq!(raw.expect("SYST", 215).lines, ["215 UNIX Type: L8"]);
    let feat = raw.expect("FEAT", 211);
    for feature in [
        "EPSV",
        "EPRT",
        "MLST type*;size*;modify*;perm*;unique*;",
        "REST STREAM",
        "SIZE",
        "MDTM",
        "UTF8",
    ] {
        assert!(
            feat.lines.iter().any(|line| line.trim() == feature),
            "{feature} missing: {feat:?}"
        );
    }
    assert!(feat.lines[1..feat.lines.len() - 1]
        .iter()
        .all(|line| line.starts_with(' ')));
    raw.expect("HELP", 214);
    raw.expect("OPTS UTF8 ON", 200);
    raw.expect("OPTS NONSENSE", 501);
    raw.expect("NOOP", 200);
    raw.expect("STAT", 211);
}

#[test]
fn unknown_verbs_bad_arguments_and_sequence_errors() {
    let ftpd = Ftpd::start(&["--write"]);
    let mut raw = ftpd.anonymous();
    raw.expect("SITE CHMOD 755 x", 502);
    raw.expect("XYZZY", 502);
    raw.expect("RETR", 501);
    raw.expect("PORT 1,2,3", 501);
    raw.expect("REST abc", 501);
    raw.expect("TYPE E", 504);
    raw.expect("MODE B", 504);
    raw.expect("STRU R", 504);
    raw.expect("EPRT |7|x|1|", 522);
    raw.expect("RNTO somewhere", 503);
    raw.expect("TYPE L 8", 200);
    raw.expect("MODE S", 200);
    raw.expect("STRU F", 200);
    raw.expect("ALLO 100", 202);
}

#[test]
fn pwd_quotes_and_cwd_cdup_aliases() {
    let ftpd = Ftpd::start(&[]);
    std::fs::create_dir_all(ftpd.path("a \"b\"/c")).unwrap();
    let mut raw = ftpd.anonymous();
    raw.expect("CWD a \"b\"", 250);
    assert_eq!(
        raw.expect("PWD", 257).lines,
        [r#"257 "/a ""b""" is the current directory"#]
    );
    raw.expect("XCWD c", 250);
    assert!(raw.expect("XPWD", 257).lines[0].starts_with(r#"257 "/a ""b""/c""#));
    raw.expect("XCUP", 250);
    raw.expect("CDUP", 250);
    assert!(raw.expect("PWD", 257).lines[0].starts_with(r#"257 "/""#));
    raw.expect("CWD nowhere", 550);
}

#[test]
fn pipelined_commands_and_bare_lf_are_each_answered_in_order() {
    let ftpd = Ftpd::start(&[]);
    let mut raw = Raw::connect(ftpd.addr());
    raw.send_raw(b"USER anonymous\r\nPASS x\r\nsyst\nNOOP\r\nPWD\n");
    let codes: Vec<u16> = (0..5).map(|_| raw.answer().code).collect();
    assert_eq!(codes, [331, 230, 215, 200, 257]);
}

#[test]
fn retr_is_byte_exact_and_type_a_converts_line_ends() {
    let ftpd = Ftpd::start(&[]);
    let binary = noise(300_000, 7);
    put(ftpd.root.path(), "blob.bin", &binary);
    put(ftpd.root.path(), "text.txt", b"one\ntwo\r\nthree\n");
    let mut raw = ftpd.anonymous();
    raw.expect("TYPE I", 200);
    let (bytes, done) = raw.fetch("RETR blob.bin");
    assert_eq!(done.code, 226);
    assert_eq!(bytes, binary);
    assert_eq!(raw.expect("SIZE text.txt", 213).lines, ["213 15"]);
    raw.expect("TYPE A", 200);
    let (bytes, done) = raw.fetch("RETR text.txt");
    assert_eq!(done.code, 226);
    assert_eq!(bytes, b"one\r\ntwo\r\nthree\r\n");
    assert_eq!(
        raw.expect("SIZE text.txt", 213).lines,
        ["213 17"],
        "TYPE A size is the converted size"
    );
}

#[test]
fn stor_in_type_a_stores_lf_line_ends() {
    let ftpd = Ftpd::start(&["--write"]);
    let mut raw = ftpd.anonymous();
    raw.expect("TYPE A", 200);
    assert_eq!(raw.upload("STOR notes.txt", b"a\r\nb\r\n").code, 226);
    assert_eq!(std::fs::read(ftpd.path("notes.txt")).unwrap(), b"a\nb\n");
}

#[test]
fn rest_applies_to_the_next_transfer_only_whatever_comes_between() {
    let ftpd = Ftpd::start(&[]);
    put(ftpd.root.path(), "digits", b"0123456789");
    let mut raw = ftpd.anonymous();
    raw.expect("REST 4", 350);
    raw.expect("TYPE I", 200);
    let (bytes, done) = raw.fetch("RETR digits");
    assert_eq!((bytes.as_slice(), done.code), (&b"456789"[..], 226));
    let (bytes, _) = raw.fetch("RETR digits");
    assert_eq!(bytes, b"0123456789", "REST must not stick");
}

#[test]
fn rest_then_stor_resumes_in_place() {
    let ftpd = Ftpd::start(&["--write"]);
    put(ftpd.root.path(), "partial", b"01234xxxxx");
    let mut raw = ftpd.anonymous();
    raw.expect("TYPE I", 200);
    raw.expect("REST 5", 350);
    assert_eq!(raw.upload("STOR partial", b"56789").code, 226);
    assert_eq!(std::fs::read(ftpd.path("partial")).unwrap(), b"0123456789");
    assert_eq!(raw.upload("APPE partial", b"ab").code, 226);
    assert_eq!(
        std::fs::read(ftpd.path("partial")).unwrap(),
        b"0123456789ab"
    );
}

#[test]
fn stou_creates_a_unique_name_and_says_it() {
    let ftpd = Ftpd::start(&["--write"]);
    let mut raw = ftpd.anonymous();
    let mut data = raw.passive();
    let opening = raw.expect("STOU", 150);
    let name = opening.lines[0]
        .split("FILE: ")
        .nth(1)
        .expect("FILE: name")
        .trim()
        .to_owned();
    data.write_all(b"unique").unwrap();
    drop(data);
    assert_eq!(raw.answer().code, 226);
    assert_eq!(std::fs::read(ftpd.path(&name)).unwrap(), b"unique");
}

#[test]
fn abor_mid_transfer_gives_426_then_226() {
    let ftpd = Ftpd::start(&[]);
    put(ftpd.root.path(), "big", &noise(64 * 1024 * 1024, 3));
    let mut raw = ftpd.anonymous();
    raw.expect("TYPE I", 200);
    let mut data = raw.passive();
    raw.expect("RETR big", 150);
    let mut some = [0u8; 1024];
    data.read_exact(&mut some).unwrap();
    // Telnet IP and Synch, as clients send before ABOR.
    raw.send_raw(b"\xFF\xF4\xFF\xF2ABOR\r\n");
    assert_eq!(raw.answer().code, 426);
    assert_eq!(raw.answer().code, 226);
    raw.expect("ABOR", 225);
    raw.expect("NOOP", 200);
}

#[test]
fn stat_lists_over_the_control_connection() {
    let ftpd = Ftpd::start(&[]);
    put(ftpd.root.path(), "dir/file one", b"x");
    let mut raw = ftpd.anonymous();
    let answer = raw.expect("STAT dir", 213);
    assert!(
        answer
            .lines
            .iter()
            .any(|line| line.ends_with(" file one") && line.starts_with("-rw")),
        "{answer:?}"
    );
}

#[test]
fn list_options_are_ignored_and_spaces_are_names() {
    let ftpd = Ftpd::start(&[]);
    put(ftpd.root.path(), "my dir/inner.txt", b"x");
    let mut raw = ftpd.anonymous();
    let (listing, done) = raw.fetch("LIST -la");
    assert_eq!(done.code, 226);
    let listing = String::from_utf8(listing).unwrap();
    assert!(
        listing
            .lines()
            .any(|line| line.starts_with('d') && line.ends_with(" my dir")),
        "{listing}"
    );
    let (listing, _) = raw.fetch("LIST -al my dir");
    assert!(String::from_utf8(listing)
        .unwrap()
        .contains(" inner.txt\r\n"));
    let (names, _) = raw.fetch("NLST my dir");
    assert_eq!(names, b"inner.txt\r\n");
}

#[test]
fn mlst_and_mlsd_facts() {
    let ftpd = Ftpd::start(&[]);
    put(ftpd.root.path(), "f.txt", b"hello");
    let mut raw = ftpd.anonymous();
    let answer = raw.expect("MLST f.txt", 250);
    assert_eq!(answer.lines.len(), 3, "{answer:?}");
    let facts = &answer.lines[1];
    assert!(facts.starts_with(" type=file;size=5;modify="), "{facts}");
    assert!(
        facts.contains(";perm=r;unique=") && facts.ends_with("; /f.txt"),
        "{facts}"
    );
    let (listing, _) = raw.fetch("MLSD");
    let listing = String::from_utf8(listing).unwrap();
    assert!(
        listing.contains("type=file;size=5;") && listing.contains("; f.txt\r\n"),
        "{listing}"
    );
    raw.expect("MDTM f.txt", 213);
    raw.expect("MDTM missing", 550);
    raw.expect("SIZE missing", 550);
}

#[test]
fn read_only_logins_cannot_write() {
    let ftpd = Ftpd::start(&[]);
    put(ftpd.root.path(), "keep.txt", b"keep");
    let mut raw = ftpd.anonymous();
    for command in [
        "MKD new",
        "XMKD new",
        "RMD x",
        "XRMD x",
        "DELE keep.txt",
        "RNFR keep.txt",
        "MFMT 20200101000000 keep.txt",
    ] {
        let answer = raw.expect(command, 550);
        assert!(answer.text().contains("read-only"), "{answer:?}");
    }
    raw.passive();
    raw.expect("STOR keep.txt", 550);
    assert_eq!(std::fs::read(ftpd.path("keep.txt")).unwrap(), b"keep");
}

#[test]
fn writable_sessions_make_rename_and_remove() {
    let ftpd = Ftpd::start(&["--write"]);
    let mut raw = ftpd.anonymous();
    assert_eq!(raw.expect("MKD d", 257).lines, [r#"257 "/d" created"#]);
    raw.expect("XMKD d", 550);
    assert_eq!(raw.upload("STOR d/f", b"data").code, 226);
    raw.expect("RNFR d/f", 350);
    raw.expect("RNTO d/g", 250);
    assert!(ftpd.path("d/g").exists() && !ftpd.path("d/f").exists());
    raw.expect("MFMT 20200102030405 d/g", 213);
    assert_eq!(raw.expect("MDTM d/g", 213).lines, ["213 20200102030405"]);
    raw.expect("RMD d", 550);
    raw.expect("DELE d/g", 250);
    raw.expect("XRMD d", 250);
    raw.expect("RMD /", 550);
}

#[test]
fn the_jail_holds() {
    let outside = tempfile::tempdir().unwrap();
    put(outside.path(), "secret", b"secret");
    let ftpd = Ftpd::start(&[]);
    put(ftpd.root.path(), "inside/file", b"inside");
    std::os::unix::fs::symlink(outside.path(), ftpd.path("escape")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), ftpd.path("escape-file")).unwrap();
    std::os::unix::fs::symlink("inside", ftpd.path("shortcut")).unwrap();
    let mut raw = ftpd.anonymous();
    raw.expect("CWD ..", 250);
    assert!(raw.expect("PWD", 257).lines[0].starts_with(r#"257 "/""#));
    raw.expect("CWD /../..", 250);
    assert!(raw.expect("PWD", 257).lines[0].starts_with(r#"257 "/""#));
    raw.expect("SIZE ../../../../etc/passwd", 550);
    raw.expect("CWD escape", 550);
    raw.expect("SIZE escape/secret", 550);
    raw.passive();
    raw.expect("RETR escape-file", 550);
    let (bytes, done) = raw.fetch("RETR shortcut/file");
    assert_eq!((bytes.as_slice(), done.code), (&b"inside"[..], 226));
    raw.expect("CWD shortcut", 250);
}

#[test]
fn odd_names_utf8_and_line_breaks() {
    let ftpd = Ftpd::start(&[]);
    put(ftpd.root.path(), "café ☕.txt", b"utf8");
    put(ftpd.root.path(), "evil\r\n226 fake", b"x");
    put(ftpd.root.path(), "plain", b"p");
    let mut raw = ftpd.anonymous();
    let (listing, _) = raw.fetch("NLST");
    let listing = String::from_utf8(listing).unwrap();
    assert!(listing.contains("café ☕.txt\r\n"), "{listing:?}");
    assert!(listing.contains("plain\r\n"), "{listing:?}");
    assert!(
        !listing.contains("evil"),
        "names with CR/LF must be left out: {listing:?}"
    );
    let (bytes, _) = raw.fetch("RETR café ☕.txt");
    assert_eq!(bytes, b"utf8");
}

#[test]
fn non_utf8_names_do_not_crash_anything() {
    use std::os::unix::ffi::OsStrExt;
    let ftpd = Ftpd::start(&[]);
    let name = std::ffi::OsStr::from_bytes(b"caf\xE9");
    std::fs::write(ftpd.root.path().join(name), b"latin1").unwrap();
    let mut raw = ftpd.anonymous();
    let mut data = raw.passive();
    raw.expect("NLST", 150);
    let mut listing = Vec::new();
    data.read_to_end(&mut listing).unwrap();
    assert_eq!(raw.answer().code, 226);
    assert_eq!(listing, b"caf\xE9\r\n");
    let mut data = raw.passive();
    raw.send_raw(b"RETR caf\xE9\r\n");
    assert_eq!(raw.answer().code, 150);
    let mut bytes = Vec::new();
    data.read_to_end(&mut bytes).unwrap();
    assert_eq!((bytes.as_slice(), raw.answer().code), (&b"latin1"[..], 226));
}

#[test]
fn pasv_carries_the_control_connections_address() {
    let ftpd = Ftpd::start(&[]);
    let mut raw = ftpd.anonymous();
    let answer = raw.expect("PASV", 227);
    assert!(answer.lines[0].contains("(127,0,0,1,"), "{answer:?}");
}

#[test]
fn active_mode_connects_back_and_refuses_other_hosts() {
    let ftpd = Ftpd::start(&[]);
    put(ftpd.root.path(), "a.txt", b"active");
    let mut raw = ftpd.anonymous();
    raw.expect("PORT 10,0,0,1,200,10", 504);
    raw.expect("EPRT |1|127.0.0.1|80|", 504);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    raw.expect(&format!("EPRT |1|127.0.0.1|{port}|"), 200);
    raw.send("RETR a.txt");
    let (mut data, _) = listener.accept().unwrap();
    assert_eq!(raw.answer().code, 150);
    let mut bytes = Vec::new();
    data.read_to_end(&mut bytes).unwrap();
    assert_eq!((bytes.as_slice(), raw.answer().code), (&b"active"[..], 226));
    raw.expect("EPSV ALL", 200);
    raw.expect("PORT 127,0,0,1,4,1", 503);
}

#[test]
fn retr_without_a_data_connection_is_425() {
    let ftpd = Ftpd::start(&[]);
    put(ftpd.root.path(), "a", b"a");
    let mut raw = ftpd.anonymous();
    raw.expect("RETR a", 425);
}

#[test]
fn a_broken_upload_leaves_the_old_file_and_no_temporary() {
    let ftpd = Ftpd::start(&["--write"]);
    put(ftpd.root.path(), "precious", b"old content");
    let mut raw = ftpd.anonymous();
    raw.expect("TYPE I", 200);
    let mut data = raw.passive();
    raw.expect("STOR precious", 150);
    data.write_all(b"half of the new").unwrap();
    // The client dies: both connections close, the control connection first, as the kernel
    // closes a dying process's descriptors lowest first and the control one is opened first.
    // (The other order is indistinguishable from a client that finished its upload and then
    // quit without waiting for 226; a real kill is tested below.)
    drop(raw);
    std::thread::sleep(Duration::from_millis(50));
    drop(data);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        std::fs::read(ftpd.path("precious")).unwrap(),
        b"old content"
    );
    assert_eq!(names_in(ftpd.root.path()), ["precious"]);
}

#[test]
fn a_client_process_killed_mid_stor_leaves_the_old_file() {
    testkit::require_tool("python3", "python3");
    let ftpd = Ftpd::start(&["--write"]);
    put(ftpd.root.path(), "precious", b"old content");
    // A real client that sends half a file and is then killed by SIGKILL: no close of ours
    // decides the order in which its connections end, the kernel does.
    let script = r#"
import ftplib, os, signal, sys
ftp = ftplib.FTP()
ftp.connect("127.0.0.1", int(sys.argv[1]), timeout=20)
ftp.login()
ftp.voidcmd("TYPE I")
data = ftp.transfercmd("STOR precious")
data.sendall(b"half of the new")
os.kill(os.getpid(), signal.SIGKILL)
"#;
    let mut command = std::process::Command::new("python3");
    command.args(["-c", script, &ftpd.addr().port().to_string()]);
    let output = testkit::run_with_timeout(command, Duration::from_secs(20));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&output.status),
        Some(9),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::fs::read_dir(ftpd.root.path()).unwrap().count() > 1
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        std::fs::read(ftpd.path("precious")).unwrap(),
        b"old content"
    );
    assert_eq!(names_in(ftpd.root.path()), ["precious"]);
}

#[test]
fn http_requests_close_the_session() {
    let ftpd = Ftpd::start(&[]);
    let mut raw = Raw::connect(ftpd.addr());
    raw.send("GET / HTTP/1.1");
    let mut rest = Vec::new();
    let _ = raw.reader.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

#[test]
fn an_over_long_line_gets_500_and_the_session_goes_on() {
    let ftpd = Ftpd::start(&[]);
    let mut raw = ftpd.anonymous();
    let long = vec![b'A'; 100_000];
    raw.send_raw(&long);
    raw.send_raw(b"\r\n");
    assert_eq!(raw.answer().code, 500);
    raw.expect("NOOP", 200);
    // Other clients are still greeted (Raw::connect checks the 220).
    Raw::connect(ftpd.addr());
}

#[test]
fn stat_is_answered_mid_transfer_and_quit_waits_for_the_transfer() {
    let ftpd = Ftpd::start(&[]);
    let big = noise(16 * 1024 * 1024, 9);
    put(ftpd.root.path(), "big", &big);
    let mut raw = ftpd.anonymous();
    raw.expect("TYPE I", 200);
    let mut data = raw.passive();
    raw.expect("RETR big", 150);
    let mut first = vec![0u8; 4096];
    data.read_exact(&mut first).unwrap();
    let status = raw.expect("STAT", 211);
    assert!(
        status.text().contains("transfer in progress: RETR /big"),
        "{status:?}"
    );
    raw.send("QUIT");
    let mut rest = Vec::new();
    data.read_to_end(&mut rest).unwrap();
    assert_eq!(
        first.len() + rest.len(),
        big.len(),
        "QUIT must let the transfer finish"
    );
    assert_eq!(raw.answer().code, 226);
    assert_eq!(raw.answer().code, 221);
}

#[test]
fn ipv6_eprt_and_epsv() {
    let Ok(probe) = std::net::TcpListener::bind("[::1]:0") else {
        panic!("this test needs IPv6 loopback (::1)");
    };
    drop(probe);
    let root = tempfile::tempdir().unwrap();
    put(root.path(), "six.txt", b"over ipv6");
    let mut command = std::process::Command::new(support::FTPD);
    command
        .args(["--host", "::1", "--port", "0", "--root"])
        .arg(root.path());
    let server = testkit::Server::spawn(command);
    let mut raw = Raw::connect(server.addr);
    raw.expect("USER anonymous", 331);
    raw.expect("PASS x", 230);
    raw.expect("PASV", 425);
    raw.expect("EPSV 1", 522);
    let answer = raw.expect("EPSV 2", 229);
    let port: u16 = answer.lines[0].split('|').nth(3).unwrap().parse().unwrap();
    let mut data = TcpStream::connect(("::1", port)).unwrap();
    raw.expect("RETR six.txt", 150);
    let mut bytes = Vec::new();
    data.read_to_end(&mut bytes).unwrap();
    assert_eq!(
        (bytes.as_slice(), raw.answer().code),
        (&b"over ipv6"[..], 226)
    );
    let listener = std::net::TcpListener::bind("[::1]:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    raw.expect(&format!("EPRT |2|::1|{port}|"), 200);
    raw.send("RETR six.txt");
    let (mut data, _) = listener.accept().unwrap();
    assert_eq!(raw.answer().code, 150);
    let mut bytes = Vec::new();
    data.read_to_end(&mut bytes).unwrap();
    assert_eq!(
        (bytes.as_slice(), raw.answer().code),
        (&b"over ipv6"[..], 226)
    );
}

#[test]
fn a_data_connection_from_another_address_is_dropped() {
    let ftpd = Ftpd::start(&[]);
    put(ftpd.root.path(), "mine", b"only for the client");
    let mut raw = ftpd.anonymous();
    let answer = raw.expect("EPSV", 229);
    let port: u16 = answer.lines[0].split('|').nth(3).unwrap().parse().unwrap();
    // An intruder on 127.0.0.2 gets there first.
    let intruder = connect_from("127.0.0.2", SocketAddr::from(([127, 0, 0, 1], port)));
    std::thread::sleep(Duration::from_millis(100));
    let mut data = TcpStream::connect(("127.0.0.1", port)).unwrap();
    raw.expect("RETR mine", 150);
    let mut bytes = Vec::new();
    data.read_to_end(&mut bytes).unwrap();
    assert_eq!(
        (bytes.as_slice(), raw.answer().code),
        (&b"only for the client"[..], 226)
    );
    let mut stolen = Vec::new();
    let mut intruder = intruder;
    let _ = intruder.read_to_end(&mut stolen);
    assert!(stolen.is_empty());
}

#[test]
fn pasv_on_a_dual_stack_listener_strips_the_mapped_prefix() {
    let root = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(support::FTPD);
    command
        .args(["--host", "::", "--port", "0", "--root"])
        .arg(root.path());
    let server = testkit::Server::spawn(command);
    // An IPv4 client on a [::] listener: the server's side of the connection is ::ffff:127.0.0.1.
    let mut raw = Raw::connect(std::net::SocketAddr::from((
        [127, 0, 0, 1],
        server.addr.port(),
    )));
    raw.expect("USER anonymous", 331);
    raw.expect("PASS x", 230);
    let answer = raw.expect("PASV", 227);
    assert!(answer.lines[0].contains("(127,0,0,1,"), "{answer:?}");
}

#[test]
fn a_command_split_across_slow_packets_mid_transfer_is_not_lost() {
    let ftpd = Ftpd::start(&[]);
    put(ftpd.root.path(), "big", &noise(32 * 1024 * 1024, 12));
    let mut raw = ftpd.anonymous();
    raw.expect("TYPE I", 200);
    let mut data = raw.passive();
    raw.expect("RETR big", 150);
    let mut some = [0u8; 4096];
    data.read_exact(&mut some).unwrap();
    // The session wakes every second while a transfer runs; half a command must survive it.
    raw.send_raw(b"ST");
    std::thread::sleep(Duration::from_millis(1500));
    raw.send_raw(b"AT\r\n");
    let status = raw.answer();
    assert_eq!(status.code, 211, "{status:?}");
    raw.send("ABOR");
    assert_eq!(raw.answer().code, 426);
    assert_eq!(raw.answer().code, 226);
}
