//! s3store against a scripted HTTP server: the replies a real server gives only when it is in
//! trouble (throttling, 5xx, a reset, a 200 carrying an error), to pin down what is retried,
//! what is sent only once, and what is cleaned up.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use s3store::{Credentials, S3Error, Store, StoreConfig, MIN_PART_SIZE};

/// What the server does with one request.
enum Reply {
    /// Answer with this status, extra headers and body.
    Status(u16, &'static [(&'static str, &'static str)], &'static str),
    /// Close the connection without answering.
    Hangup,
}

use Reply::{Hangup, Status};

const DATED: &[(&str, &str)] = &[("Last-Modified", "Tue, 02 Jan 2024 03:04:05 GMT")];

/// A server answering each request (one per connection) with the next scripted reply;
/// records `METHOD path?query` of each.
struct Canned {
    endpoint: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Canned {
    fn start(replies: Vec<Reply>) -> Canned {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        thread::Builder::new()
            .name("canned".into())
            .spawn(move || {
                for reply in replies {
                    let Ok((stream, _)) = listener.accept() else {
                        return;
                    };
                    serve(stream, reply, &record);
                }
            })
            .unwrap();
        Canned { endpoint, seen }
    }

    fn store(&self) -> Store {
        Store::new(StoreConfig {
            endpoint: self.endpoint.parse().unwrap(),
            region: "us-east-1".into(),
            bucket: "bucket".into(),
            prefix: "p".into(),
            path_style: true,
            credentials: Credentials::new("key", "secret"),
            timeout: Duration::from_secs(5),
        })
        .unwrap()
    }

    /// `METHOD path` of each request so far, the query reduced to its parameter names.
    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, reply: Reply, record: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let names: Vec<&str> = query
        .split('&')
        .map(|pair| pair.split('=').next().unwrap_or(""))
        .filter(|name| !name.starts_with("X-Amz-"))
        .collect();
    record
        .lock()
        .unwrap()
        .push(format!("{method} {path}?{}", names.join("&")));
    let mut stream = reader.into_inner();
    if let Status(status, headers, body) = reply {
        let mut head = format!("HTTP/1.1 {status} Whatever\r\nConnection: close\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = if method == "HEAD" { "" } else { body };
        if method != "HEAD" || !headers.iter().any(|(n, _)| *n == "Content-Length") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body.as_bytes());
    }
}

const SLOW_DOWN: &str = "<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>";

#[test]
fn idempotent_requests_are_retried_after_throttling_errors_and_resets() {
    let server = Canned::start(vec![
        Status(503, &[], SLOW_DOWN),
        Hangup,
        Status(
            200,
            &[
                ("Content-Length", "42"),
                ("Last-Modified", "Tue, 02 Jan 2024 03:04:05 GMT"),
            ],
            "",
        ),
    ]);
    let started = Instant::now();
    let info = server.store().head("k").unwrap();
    assert_eq!(info.size, 42);
    assert_eq!(server.seen(), vec!["HEAD /bucket/p/k?"; 3]);
    // Two waits: 100 ms, then 200 ms.
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn retries_stop_after_three_tries() {
    let server = Canned::start(vec![
        Status(500, &[], ""),
        Status(503, &[], SLOW_DOWN),
        Status(503, &[], SLOW_DOWN),
        Status(200, DATED, ""),
    ]);
    assert_eq!(
        server.store().put("k", b"x").unwrap_err(),
        S3Error::Throttled
    );
    assert_eq!(server.seen().len(), 3);
}

#[test]
fn refusals_are_not_retried() {
    let bucket_gone = "<Error><Code>NoSuchBucket</Code><Message>gone</Message></Error>";
    let server = Canned::start(vec![Status(404, &[], bucket_gone), Status(200, DATED, "")]);
    let error = server.store().get("k", 0).unwrap_err();
    assert!(
        matches!(&error, S3Error::Rejected { status: 404, code, .. } if code == "NoSuchBucket"),
        "{error:?}"
    );
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn a_server_ignoring_the_range_is_skipped_to_the_start() {
    let server = Canned::start(vec![Status(200, DATED, "0123456789abcdefghij")]);
    let mut text = String::new();
    server
        .store()
        .get("k", 10)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "abcdefghij");
}

const CREATED: &str = "<InitiateMultipartUploadResult><UploadId>u1</UploadId>\
    </InitiateMultipartUploadResult>";
const PART: &[(&str, &str)] = &[("ETag", "\"e\"")];

/// A two-part upload whose CompleteMultipartUpload gets `complete`; returns finish's result
/// and the requests seen.
fn upload_completed_with(complete: Reply) -> (Result<(), S3Error>, Vec<String>) {
    let server = Canned::start(vec![
        Status(200, &[], CREATED),
        Status(200, PART, ""),
        Status(200, PART, ""),
        complete,
        Status(204, &[], ""),
    ]);
    let mut upload = server
        .store()
        .upload("big")
        .unwrap()
        .part_size(MIN_PART_SIZE);
    upload.write_all(&vec![7; MIN_PART_SIZE + 1]).unwrap();
    let result = upload.finish();
    (result, server.seen())
}

#[test]
fn complete_multipart_upload_is_sent_once_and_a_failure_aborts() {
    let (result, seen) = upload_completed_with(Status(500, &[], ""));
    assert_eq!(result.unwrap_err(), S3Error::Server(500));
    assert_eq!(
        seen,
        vec![
            "POST /bucket/p/big?uploads",
            "PUT /bucket/p/big?partNumber&uploadId",
            "PUT /bucket/p/big?partNumber&uploadId",
            "POST /bucket/p/big?uploadId",
            "DELETE /bucket/p/big?uploadId",
        ]
    );
}

#[test]
fn a_200_carrying_an_error_fails_the_upload() {
    let error = "<?xml version=\"1.0\"?>\n<Error><Code>InternalError</Code>\
        <Message>try again</Message></Error>";
    let (result, seen) = upload_completed_with(Status(200, &[], error));
    assert_eq!(result.unwrap_err(), S3Error::Server(500));
    assert_eq!(seen.last().unwrap(), "DELETE /bucket/p/big?uploadId");
}

#[test]
fn a_successful_multipart_upload_completes_without_aborting() {
    let done =
        "<CompleteMultipartUploadResult><ETag>\"x-2\"</ETag></CompleteMultipartUploadResult>";
    let (result, seen) = upload_completed_with(Status(200, &[], done));
    result.unwrap();
    assert_eq!(seen.len(), 4, "{seen:?}");
}
