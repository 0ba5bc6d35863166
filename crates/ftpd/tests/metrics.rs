//! The metrics page (issue 11): `--metrics ADDR` serves Prometheus text that the official
//! Python client's OpenMetrics parser accepts, and its counters move with a scripted session
//! of curl logins, uploads, downloads and a refused connection.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{noise, put, Ftpd, Raw};
use testkit::{require_tool, run_ok};

const LIMIT: Duration = Duration::from_secs(30);

/// Parses `page` with prometheus_client's OpenMetrics parser; every sample as
/// `name{label="value",…}` → value. A page the parser rejects fails the test.
fn parse(page: &str) -> BTreeMap<String, f64> {
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
samples = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
        samples[f"{sample.name}{{{labels}}}"] = sample.value
print(json.dumps(samples))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the OpenMetrics parser rejected the page: {}\n{page}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    // A flat JSON object of numbers: split it without a JSON crate.
    text.trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .split(", \"")
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.rsplit_once(": ").unwrap();
            let key = key.trim_matches('"').replace("\\\"", "\"");
            (key, value.parse().unwrap())
        })
        .collect()
}

fn scrape(url: &str) -> BTreeMap<String, f64> {
    let mut curl = Command::new("curl");
    curl.args(["-sS", "--fail", url]);
    let output = run_ok(curl, LIMIT);
    parse(&String::from_utf8(output.stdout).unwrap())
}

#[test]
fn the_metrics_page_parses_and_its_counters_follow_a_session_issue_11() {
    require_tool("curl", "curl");
    require_tool("python3", "python3");
    let ftpd = Ftpd::start(&["--write", "--metrics", "127.0.0.1:0", "--max-per-ip", "2"]);
    let url = ftpd.metrics_url();
    let before = scrape(&url);
    assert_eq!(before.get("ftpd_sessions_open{}"), Some(&0.0), "{before:?}");

    let payload = noise(100_000, 81);
    put(ftpd.root.path(), "down.bin", &payload);
    let local = tempfile::tempdir().unwrap();
    let upload = local.path().join("up.bin");
    std::fs::write(&upload, noise(12_345, 82)).unwrap();
    let mut put_file = Command::new("curl");
    put_file
        .args(["-sS", "--fail", "-T"])
        .arg(&upload)
        .arg(ftpd.url("up.bin"));
    run_ok(put_file, LIMIT);
    let mut get = Command::new("curl");
    get.args(["-sS", "--fail", "-o"])
        .arg(local.path().join("down.bin"))
        .arg(ftpd.url("down.bin"));
    run_ok(get, LIMIT);
    // curl's sessions end just after it exits: wait for that, then hold two sessions open
    // and have a third refused by the per-address limit.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while scrape(&url).get("ftpd_sessions_open{}") != Some(&0.0) {
        assert!(std::time::Instant::now() < deadline, "sessions never ended");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _one = ftpd.anonymous();
    let _two = Raw::connect(ftpd.addr());
    let mut third = std::net::TcpStream::connect(ftpd.addr()).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut refused = String::new();
    let _ = std::io::Read::read_to_string(&mut third, &mut refused);
    assert!(refused.starts_with("421"), "{refused}");

    let after = scrape(&url);
    let value = |key: &str| after.get(key).copied().unwrap_or(0.0);
    assert_eq!(value("ftpd_sessions_open{}"), 2.0, "{after:?}");
    assert!(
        value("ftpd_logins_total{result=\"accepted\"}") >= 3.0,
        "{after:?}"
    );
    assert_eq!(
        value("ftpd_files_total{direction=\"received\"}"),
        1.0,
        "{after:?}"
    );
    assert_eq!(
        value("ftpd_files_total{direction=\"sent\"}"),
        1.0,
        "{after:?}"
    );
    assert_eq!(
        value("ftpd_transfer_bytes_total{direction=\"received\"}"),
        12_345.0,
        "{after:?}"
    );
    assert!(
        value("ftpd_transfer_bytes_total{direction=\"sent\"}") >= 100_000.0,
        "{after:?}"
    );
    assert_eq!(
        value("ftpd_transfers_total{outcome=\"complete\",verb=\"STOR\"}"),
        1.0,
        "{after:?}"
    );
    assert_eq!(
        value("ftpd_connections_refused_total{reason=\"per_address\"}"),
        1.0,
        "{after:?}"
    );
    // Anything but GET /metrics is refused.
    let mut other = Command::new("curl");
    other.args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &url.replace("/metrics", "/"),
    ]);
    let code = run_ok(other, LIMIT).stdout;
    assert_eq!(code, b"404");
}
