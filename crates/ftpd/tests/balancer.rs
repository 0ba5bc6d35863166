//! Several ftpd nodes behind a real HAProxy (issue 14), run from `packaging/haproxy.cfg` with
//! loopback addresses: two nodes on 127.0.0.2 and 127.0.0.3 share one root, HAProxy listens
//! on 127.0.0.1, and clients connect only to HAProxy, from chosen source addresses.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{connect_from, noise, put, sha256, Raw, FTPD};
use testkit::{require_tool, run_ok, LineClient, Server};

const CLIENT_LIMIT: Duration = Duration::from_secs(60);
/// Passive ports per node.
const RANGE: u16 = 8;

/// HAProxy and two ftpd nodes over one shared root.
struct Cluster {
    root: tempfile::TempDir,
    /// Each node's transfer log (outside the shared root).
    logs: tempfile::TempDir,
    nodes: Vec<Server>,
    /// HAProxy's control port on 127.0.0.1.
    front: SocketAddr,
    _haproxy: LineClient,
}

impl Cluster {
    fn start(extra: &[&str]) -> Cluster {
        let haproxy = haproxy_binary();
        let root = tempfile::tempdir().unwrap();
        let logs = tempfile::tempdir().unwrap();
        let ranges = free_ranges();
        let nodes: Vec<Server> = ["127.0.0.2", "127.0.0.3"]
            .iter()
            .zip(&ranges)
            .map(|(host, range)| {
                let mut command = Command::new(FTPD);
                command
                    .args(["--host", host, "--port", "0", "--root"])
                    .arg(root.path())
                    .args(["--proxy-from", "127.0.0.1", "--write"])
                    .arg("--passive-ports")
                    .arg(format!("{}-{}", range, range + RANGE - 1))
                    .arg("--xferlog")
                    .arg(logs.path().join(format!("{host}.xferlog")))
                    .args(extra);
                Server::spawn(command)
            })
            .collect();
        let front = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = loopback_config(front, &nodes, &ranges);
        let config_path = logs.path().join("haproxy.cfg");
        std::fs::write(&config_path, config).unwrap();
        let mut command = Command::new(haproxy);
        command.arg("-db").arg("-f").arg(&config_path);
        let haproxy = LineClient::spawn_stderr(command);
        let cluster = Cluster {
            root,
            logs,
            nodes,
            front,
            _haproxy: haproxy,
        };
        cluster.wait_until_serving();
        cluster
    }

    /// Bounded wait for HAProxy to listen and pass a greeting through.
    fn wait_until_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(stream) = std::net::TcpStream::connect(self.front) {
                let answer = Raw::answer_of(stream);
                if answer.code == 220 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("haproxy did not pass a greeting through within 20 s");
    }

    /// A logged-in raw session through HAProxy from `source`.
    fn session_from(&self, source: &str) -> Raw {
        let mut raw = Raw::over(connect_from(source, self.front));
        raw.expect("USER anonymous", 331);
        raw.expect("PASS guest@", 230);
        raw
    }

    /// Which node (0 or 1) logged a session from `source`; waits a little for the line.
    fn node_of(&self, source: &str) -> Option<usize> {
        let needle = format!("session start {source}:");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let found = self
                .nodes
                .iter()
                .position(|node| node.log_lines().iter().any(|line| line.contains(&needle)));
            if found.is_some() {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn xferlog(&self, node: usize) -> String {
        let host = ["127.0.0.2", "127.0.0.3"][node];
        std::fs::read_to_string(self.logs.path().join(format!("{host}.xferlog")))
            .unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("ftp://127.0.0.1:{}/{path}", self.front.port())
    }
}

/// The shipped example with its documentation addresses replaced by loopback ones, line by
/// line outside comments; every replaced value must be there, so the test follows the file.
fn loopback_config(front: SocketAddr, nodes: &[Server], ranges: &[u16]) -> String {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/haproxy.cfg"),
    )
    .unwrap();
    let range = |start: u16| format!("127.0.0.1:{}-{}", start, start + RANGE - 1);
    let replacements = [
        ("203.0.113.10:21", front.to_string()),
        ("203.0.113.10:50000-50099", range(ranges[0])),
        ("203.0.113.10:50100-50199", range(ranges[1])),
        ("10.0.0.2:21", nodes[0].addr.to_string()),
        ("10.0.0.3:21", nodes[1].addr.to_string()),
        (
            "node1 10.0.0.2 send-proxy-v2",
            "node1 127.0.0.2 send-proxy-v2".into(),
        ),
        (
            "node2 10.0.0.3 send-proxy-v2",
            "node2 127.0.0.3 send-proxy-v2".into(),
        ),
    ];
    let mut used = vec![false; replacements.len()];
    let config: Vec<String> = example
        .lines()
        .map(|line| {
            if line.trim_start().starts_with('#') {
                return line.to_owned();
            }
            let mut line = line.to_owned();
            for (index, (from, to)) in replacements.iter().enumerate() {
                if line.contains(from) {
                    line = line.replace(from, to);
                    used[index] = true;
                }
            }
            line
        })
        .collect();
    for ((from, _), used) in replacements.iter().zip(used) {
        assert!(used, "packaging/haproxy.cfg no longer has {from}");
    }
    config.join("\n") + "\n"
}

/// Debian's HAProxy lives in /usr/sbin, which is not on a normal user's PATH.
fn haproxy_binary() -> &'static str {
    const SBIN: &str = "/usr/sbin/haproxy";
    if Path::new(SBIN).exists() {
        return SBIN;
    }
    require_tool("haproxy", "haproxy");
    "haproxy"
}

/// A port free on 127.0.0.1 now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Two runs of `RANGE` ports, free on HAProxy's and the nodes' addresses, below the kernel's
/// ephemeral range so no outgoing connection takes one meanwhile.
fn free_ranges() -> Vec<u16> {
    let mut ranges: Vec<u16> = Vec::new();
    let seed = u64::from(std::process::id()) * 7919
        + Instant::now().elapsed().subsec_nanos() as u64
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
    for attempt in 0..200u64 {
        let start = 20_000 + ((seed + attempt * 104_729) % 1_200) as u16 * RANGE;
        let free = (start..start + RANGE).all(|port| {
            ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
                .iter()
                .all(|host| std::net::TcpListener::bind((*host, port)).is_ok())
        });
        let overlaps = ranges
            .iter()
            .any(|other| start < other + RANGE && *other < start + RANGE);
        if free && !overlaps {
            ranges.push(start);
            if ranges.len() == 2 {
                return ranges;
            }
        }
    }
    panic!("no free passive port ranges");
}

/// The first source address after 127.0.0.9 that HAProxy sends to the other node than
/// 127.0.0.9's, and that node.
fn source_on_other_node(cluster: &Cluster, node_of_nine: usize) -> (String, usize) {
    for last in 10..60 {
        let source = format!("127.0.0.{last}");
        let mut raw = cluster.session_from(&source);
        raw.expect("QUIT", 221);
        let node = cluster.node_of(&source).expect("a node logs the session");
        if node != node_of_nine {
            return (source, node);
        }
    }
    panic!("balance source sent 50 addresses to one node");
}

#[test]
fn clients_through_haproxy_share_files_across_nodes_issue_14() {
    require_tool("curl", "curl");
    require_tool("lftp", "lftp");
    require_tool("python3", "python3");
    let cluster = Cluster::start(&[]);
    let mut probe = cluster.session_from("127.0.0.9");
    probe.expect("QUIT", 221);
    let nine = cluster
        .node_of("127.0.0.9")
        .expect("a node serves 127.0.0.9");
    let (other, other_node) = source_on_other_node(&cluster, nine);

    // ftplib from 127.0.0.9 uploads over PASV on its node.
    let first = noise(5 << 20, 14);
    let script = r#"
import ftplib, io, sys
ftp = ftplib.FTP(source_address=("127.0.0.9", 0), timeout=20)
ftp.connect("127.0.0.1", int(sys.argv[1]))
ftp.login()
ftp.storbinary("STOR first.bin", io.BytesIO(open(sys.argv[2], "rb").read()))
ftp.quit()
"#;
    let upload = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(upload.path(), &first).unwrap();
    let mut python = Command::new("python3");
    python
        .args(["-c", script, &cluster.front.port().to_string()])
        .arg(upload.path());
    run_ok(python, CLIENT_LIMIT);

    // curl from the other node's client downloads it over EPSV and uploads over PASV.
    let fetched = tempfile::NamedTempFile::new().unwrap();
    let mut curl = Command::new("curl");
    curl.args(["-sS", "--fail", "--interface", &other, "-o"])
        .arg(fetched.path())
        .arg(cluster.url("first.bin"));
    run_ok(curl, CLIENT_LIMIT);
    assert_eq!(
        sha256(&std::fs::read(fetched.path()).unwrap()),
        sha256(&first)
    );
    let second = noise(3 << 20, 15);
    put(cluster.logs.path(), "second.bin", &second);
    let mut curl = Command::new("curl");
    curl.args([
        "-sS",
        "--fail",
        "--disable-epsv",
        "--interface",
        &other,
        "-T",
    ])
    .arg(cluster.logs.path().join("second.bin"))
    .arg(cluster.url("second.bin"));
    run_ok(curl, CLIENT_LIMIT);

    // lftp from 127.0.0.9 fetches what the other node stored, over EPSV.
    let into = tempfile::tempdir().unwrap();
    let mut lftp = Command::new("lftp");
    lftp.arg("-c").arg(format!(
        "set net:socket-bind-ipv4 127.0.0.9; set ftp:prefer-epsv yes; \
         set net:max-retries 1; open {}; lcd {}; get second.bin; bye",
        cluster.url(""),
        into.path().display()
    ));
    run_ok(lftp, CLIENT_LIMIT);
    assert_eq!(
        sha256(&std::fs::read(into.path().join("second.bin")).unwrap()),
        sha256(&second)
    );
    assert_eq!(
        sha256(&std::fs::read(cluster.root.path().join("first.bin")).unwrap()),
        sha256(&first)
    );

    // Each node logged and recorded the clients, never the balancer.
    let nine_log = cluster.xferlog(nine);
    assert!(nine_log.contains(" 127.0.0.9 "), "{nine_log}");
    let other_log = cluster.xferlog(other_node);
    assert!(other_log.contains(&format!(" {other} ")), "{other_log}");
    for log in [&nine_log, &other_log] {
        assert!(!log.contains(" 127.0.0.1 "), "{log}");
    }
    assert!(cluster.nodes[nine]
        .log_lines()
        .iter()
        .any(|line| line.contains("session start 127.0.0.9:") && line.contains("via 127.0.0.1:")));
}

#[test]
fn per_address_limits_and_port_checks_judge_the_client_behind_haproxy_issue_14() {
    let cluster = Cluster::start(&["--max-per-ip", "2"]);
    let mut first = cluster.session_from("127.0.0.9");
    let mut second = cluster.session_from("127.0.0.9");
    let third = Raw::answer_of(connect_from("127.0.0.9", cluster.front));
    assert_eq!(third.code, 421, "{third:?}");
    let mut elsewhere = cluster.session_from("127.0.0.10");
    // PORT to the balancer, or to anyone but the client, is a bounce: refused.
    first.expect("PORT 127,0,0,1,200,10", 504);
    first.expect("PORT 127,0,0,10,200,10", 504);
    first.expect("PORT 127,0,0,9,200,10", 200);
    for raw in [&mut first, &mut second, &mut elsewhere] {
        raw.expect("QUIT", 221);
    }
}

#[test]
fn a_killed_node_hands_new_sessions_to_the_other_issue_14() {
    require_tool("curl", "curl");
    let mut cluster = Cluster::start(&[]);
    put(cluster.root.path(), "shared.txt", b"on the shared root\n");
    let mut probe = cluster.session_from("127.0.0.9");
    probe.expect("QUIT", 221);
    let nine = cluster
        .node_of("127.0.0.9")
        .expect("a node serves 127.0.0.9");
    cluster.nodes[nine].kill();
    let survivor = 1 - nine;
    let mut curl = Command::new("curl");
    curl.args(["-sS", "--fail", "--interface", "127.0.0.9"])
        .arg(cluster.url("shared.txt"));
    let output = run_ok(curl, CLIENT_LIMIT);
    assert_eq!(output.stdout, b"on the shared root\n");
    assert!(
        cluster.nodes[survivor].wait_for_log("session start 127.0.0.9:", Duration::from_secs(5))
    );
}
