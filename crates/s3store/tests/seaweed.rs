//! s3store against a real S3 server: SeaweedFS's `weed mini`, one for the whole file, each
//! test in a bucket of its own.

use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use s3store::{Credentials, Entry, S3Error, Store, StoreConfig, MIN_PART_SIZE};
use sha2::{Digest, Sha256};
use testkit::Seaweed;

const MIB: usize = 1024 * 1024;

fn config(endpoint: &str, bucket: &str, credentials: Credentials) -> StoreConfig {
    StoreConfig {
        endpoint: endpoint.parse().expect("endpoint url"),
        region: "us-east-1".into(),
        bucket: bucket.into(),
        prefix: "ftp/".into(),
        path_style: true,
        credentials,
        timeout: Duration::from_secs(20),
    }
}

/// A store on the shared server, in a fresh bucket named after the test.
fn store(bucket: &str) -> Store {
    let seaweed = Seaweed::shared();
    let credentials = Credentials::new(&seaweed.access_key, &seaweed.secret_key);
    let store = Store::new(config(&seaweed.endpoint, bucket, credentials)).expect("store");
    store.create_bucket().expect("create bucket");
    store
}

/// `len` reproducible pseudo-random bytes (xorshift), different for each `seed`.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut generator = Generator(seed | 1);
    while out.len() < len {
        out.extend_from_slice(&generator.next_word().to_le_bytes());
    }
    out.truncate(len);
    out
}

struct Generator(u64);

impl Generator {
    fn next_word(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn sha(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

/// SHA-256 of everything `reader` yields, read in 64 KiB steps (never held whole).
fn sha_of_stream(mut reader: impl Read) -> (Vec<u8>, u64) {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 64 * 1024];
    let mut total = 0;
    loop {
        let n = reader.read(&mut buffer).expect("read object");
        if n == 0 {
            return (hasher.finalize().to_vec(), total);
        }
        hasher.update(&buffer[..n]);
        total += n as u64;
    }
}

fn read_all(reader: impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    let mut reader = reader;
    reader.read_to_end(&mut out).expect("read object");
    out
}

#[test]
fn put_head_get_round_trip_byte_for_byte() {
    let store = store("round-trip");
    let data = bytes(1, 3 * MIB + 17);
    let before = SystemTime::now() - Duration::from_secs(120);
    store.put("a/b/data.bin", &data).unwrap();
    let info = store.head("a/b/data.bin").unwrap();
    assert_eq!(info.size, data.len() as u64);
    assert!(info.modified > before, "{info:?}");
    let (digest, len) = sha_of_stream(store.get("a/b/data.bin", 0).unwrap());
    assert_eq!((digest, len), (sha(&data), data.len() as u64));

    // Empty objects and awkward names survive too.
    store.put("empty", &[]).unwrap();
    assert_eq!(store.head("empty").unwrap().size, 0);
    assert!(read_all(store.get("empty", 0).unwrap()).is_empty());
    let odd = "dir with space/ümlaut+plus&amp=%25.txt";
    store.put(odd, b"odd").unwrap();
    assert_eq!(read_all(store.get(odd, 0).unwrap()), b"odd");
}

#[test]
fn get_from_an_offset_reads_the_tail() {
    let store = store("offset");
    let data = bytes(2, 200_000);
    store.put("f", &data).unwrap();
    assert_eq!(read_all(store.get("f", 123_456).unwrap()), &data[123_456..]);
    assert_eq!(read_all(store.get("f", 199_999).unwrap()), &data[199_999..]);
    // At or past the end: nothing, as a file read there gives.
    assert!(read_all(store.get("f", 200_000).unwrap()).is_empty());
    assert!(read_all(store.get("f", 500_000).unwrap()).is_empty());
}

#[test]
fn a_missing_key_is_not_found() {
    let store = store("missing");
    assert_eq!(store.head("nope").unwrap_err(), S3Error::NotFound);
    assert_eq!(store.get("nope", 0).unwrap_err(), S3Error::NotFound);
    assert_eq!(store.get("nope", 10).unwrap_err(), S3Error::NotFound);
    assert_eq!(store.copy("nope", "x").unwrap_err(), S3Error::NotFound);
}

#[test]
fn a_40_mib_stream_goes_up_in_parts_and_comes_back_identical() {
    let store = store("multipart");
    let total = 40 * MIB;
    let mut upload = store.upload("big.bin").unwrap().part_size(MIN_PART_SIZE);
    let mut hasher = Sha256::new();
    let mut generator = Generator(3);
    let mut written = 0;
    let mut chunk = vec![0u8; 64 * 1024 + 3];
    while written < total {
        let n = chunk.len().min(total - written);
        for byte in &mut chunk[..n] {
            *byte = generator.next_word() as u8;
        }
        upload.write_all(&chunk[..n]).unwrap();
        hasher.update(&chunk[..n]);
        written += n;
        if written >= 20 * MIB && written - n < 20 * MIB {
            // Parts are up, but nothing is visible before finish.
            assert_eq!(store.head("big.bin").unwrap_err(), S3Error::NotFound);
            let pending = store.list_multipart_uploads("").unwrap();
            assert_eq!(pending.len(), 1, "{pending:?}");
            assert_eq!(pending[0].key, "big.bin");
        }
    }
    upload.finish().unwrap();
    assert_eq!(store.head("big.bin").unwrap().size, total as u64);
    let (digest, len) = sha_of_stream(store.get("big.bin", 0).unwrap());
    assert_eq!(len, total as u64);
    assert_eq!(digest, hasher.finalize().to_vec());
    assert!(store.list_multipart_uploads("").unwrap().is_empty());
}

#[test]
fn a_small_upload_is_one_put_at_finish() {
    let store = store("small-upload");
    let data = bytes(4, MIN_PART_SIZE); // exactly one part: still no multipart upload
    let mut upload = store.upload("small").unwrap().part_size(MIN_PART_SIZE);
    upload.write_all(&data).unwrap();
    assert!(store.list_multipart_uploads("").unwrap().is_empty());
    assert_eq!(store.head("small").unwrap_err(), S3Error::NotFound);
    upload.finish().unwrap();
    assert_eq!(sha(&read_all(store.get("small", 0).unwrap())), sha(&data));

    let empty = store.upload("zero").unwrap();
    empty.finish().unwrap();
    assert_eq!(store.head("zero").unwrap().size, 0);
}

#[test]
fn an_upload_dropped_or_aborted_midway_leaves_nothing() {
    let store = store("dropped");
    for abort_explicitly in [false, true] {
        let mut upload = store.upload("partial").unwrap().part_size(MIN_PART_SIZE);
        upload.write_all(&bytes(5, 2 * MIN_PART_SIZE + 1)).unwrap();
        assert_eq!(store.list_multipart_uploads("").unwrap().len(), 1);
        if abort_explicitly {
            upload.abort().unwrap();
        } else {
            drop(upload);
        }
        assert_eq!(store.head("partial").unwrap_err(), S3Error::NotFound);
        let pending = store.list_multipart_uploads("").unwrap();
        assert!(pending.is_empty(), "abort={abort_explicitly}: {pending:?}");
    }
}

#[test]
fn a_listing_of_more_than_1000_objects_pages_through_all() {
    let store = store("listing");
    const OBJECTS: usize = 1_100;
    const THREADS: usize = 10;
    thread::scope(|scope| {
        for t in 0..THREADS {
            let store = &store;
            scope.spawn(move || {
                for i in (t..OBJECTS).step_by(THREADS) {
                    store.put(&format!("many/f{i:05}"), b"x").unwrap();
                }
            });
        }
    });
    store.put("many/dir/nested", b"n").unwrap();
    store.put_dir_marker("many/empty").unwrap();
    store.put("outside", b"o").unwrap();

    let mut objects = Vec::new();
    let mut directories = Vec::new();
    for entry in store.list("many").unwrap() {
        match entry.unwrap() {
            Entry::Object { name, size, .. } => {
                assert_eq!(size, 1, "{name}");
                objects.push(name);
            }
            Entry::Directory { name } => directories.push(name),
        }
    }
    assert_eq!(objects.len(), OBJECTS);
    let mut sorted = objects.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, objects, "names come once each, in key order");
    assert_eq!(objects[0], "f00000");
    assert_eq!(directories, vec!["dir".to_owned(), "empty".to_owned()]);

    // The empty directory lists as empty (its own marker is not an entry of it).
    assert_eq!(store.list("many/empty/").unwrap().count(), 0);
    let root: Vec<String> = store
        .list("")
        .unwrap()
        .map(|entry| entry.unwrap().name().to_owned())
        .collect();
    assert_eq!(root, vec!["many".to_owned(), "outside".to_owned()]);
}

#[test]
fn delete_removes_and_is_idempotent() {
    let store = store("delete");
    store.put("gone", b"bye").unwrap();
    store.delete("gone").unwrap();
    assert_eq!(store.head("gone").unwrap_err(), S3Error::NotFound);
    store.delete("gone").unwrap();
}

#[test]
fn copy_duplicates_on_the_server() {
    let store = store("copy");
    let data = bytes(6, 300_000);
    store.put("src/one", &data).unwrap();
    store.copy("src/one", "dst/one copy").unwrap();
    assert_eq!(read_all(store.get("dst/one copy", 0).unwrap()), data);
    assert_eq!(read_all(store.get("src/one", 0).unwrap()), data);

    // The UploadPartCopy path, with limits made small: 12 MiB in 5 MiB parts.
    let big = bytes(7, 12 * MIB);
    store.put("src/big", &big).unwrap();
    s3store::copy_with_limits(
        &store,
        "src/big",
        "dst/big",
        MIB as u64,
        MIN_PART_SIZE as u64,
    )
    .unwrap();
    assert_eq!(store.head("dst/big").unwrap().size, big.len() as u64);
    assert_eq!(sha(&read_all(store.get("dst/big", 0).unwrap())), sha(&big));
    assert!(store.list_multipart_uploads("").unwrap().is_empty());
}

#[test]
fn wrong_credentials_are_access_denied() {
    let seaweed = Seaweed::shared();
    store("denied").put("x", b"x").unwrap();
    let wrong = Credentials::new(&seaweed.access_key, "not-the-secret");
    let store = Store::new(config(&seaweed.endpoint, "denied", wrong)).unwrap();
    assert_eq!(store.head("x").unwrap_err(), S3Error::AccessDenied);
    assert_eq!(store.put("y", b"y").unwrap_err(), S3Error::AccessDenied);
}

#[test]
fn a_server_that_never_answers_times_out_instead_of_hanging() {
    // The kernel completes the handshake into the backlog; nobody ever reads or answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let mut config = config(&endpoint, "silent", Credentials::new("k", "s"));
    config.timeout = Duration::from_secs(1);
    let store = Store::new(config).unwrap();
    for operation in ["head", "get", "list"] {
        let started = Instant::now();
        let result = match operation {
            "head" => store.head("x").map(drop),
            "get" => store.get("x", 5).map(drop),
            _ => store.list("").unwrap().next().unwrap().map(drop),
        };
        let took = started.elapsed();
        assert_eq!(result.unwrap_err(), S3Error::Timeout, "{operation}");
        assert!(
            took < Duration::from_secs(3),
            "{operation} took {took:?} with a 1 s timeout"
        );
    }
    // An upload into the silent server fails too, without hanging in write or drop.
    let started = Instant::now();
    let mut upload = store.upload("u").unwrap().part_size(MIN_PART_SIZE);
    let error = upload.write_all(&bytes(8, MIN_PART_SIZE + 1)).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
    drop(upload);
    assert!(started.elapsed() < Duration::from_secs(6));
}
