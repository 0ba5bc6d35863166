//! `Store`: a tree of objects under one bucket and prefix, and the operations ftpd needs on
//! it (metadata, ranged reads, whole writes, listing, delete, copy, directory markers).

use std::io::{self, Read};
use std::sync::Arc;
use std::time::SystemTime;

use rusty_s3::Method;

use crate::config::{normalize_prefix, StoreConfig};
use crate::error::S3Error;
use crate::list::Listing;
use crate::request::{header, Bound, Call, Client};
use crate::upload::Upload;
use crate::xml::{self, PendingUpload};

/// The largest object one CopyObject may copy (5 GiB); larger ones are copied in parts.
pub const COPY_OBJECT_LIMIT: u64 = 5 * 1024 * 1024 * 1024;
/// The size of each UploadPartCopy part when a copy is larger than [`COPY_OBJECT_LIMIT`].
const COPY_PART_SIZE: u64 = 1024 * 1024 * 1024;
/// S3 accepts at most this many parts in one multipart upload.
pub(crate) const MAX_PARTS: u64 = 10_000;

/// An object's metadata, from HEAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its length in bytes.
    pub size: u64,
    /// When it was last written (S3 keeps whole seconds).
    pub modified: SystemTime,
}

/// A handle on one bucket and prefix; cheap to clone and share between threads.
#[derive(Clone)]
pub struct Store {
    pub(crate) client: Arc<Client>,
    prefix: Arc<str>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("bucket", &self.client.bucket_name())
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Store {
    /// Checks the configuration (endpoint scheme, bucket name, prefix) and builds the HTTP
    /// agent; sends nothing, so a store can be built before the network is up.
    pub fn new(config: StoreConfig) -> Result<Store, S3Error> {
        let prefix = normalize_prefix(&config.prefix).ok_or_else(|| {
            S3Error::Unsupported(format!("'{}' is not a usable key prefix", config.prefix))
        })?;
        Ok(Store {
            client: Arc::new(Client::new(&config)?),
            prefix: prefix.into(),
        })
    }

    /// The full key of `key` (relative to the store's prefix; leading `/` ignored).
    pub(crate) fn full_key(&self, key: &str) -> Result<String, S3Error> {
        let key = key.trim_start_matches('/');
        if key.is_empty() {
            return Err(S3Error::Unsupported("an empty key names no object".into()));
        }
        Ok(format!("{}{key}", self.prefix))
    }

    /// The full prefix of directory `dir` (relative, `""` for the store's root), ending in `/`.
    pub(crate) fn dir_prefix(&self, dir: &str) -> Result<String, S3Error> {
        let dir = normalize_prefix(dir)
            .ok_or_else(|| S3Error::Unsupported(format!("'{dir}' is not a usable directory")))?;
        Ok(format!("{}{dir}", self.prefix))
    }

    /// Strips the store's prefix from a full key the server sent back.
    pub(crate) fn relative<'k>(&self, full: &'k str) -> &'k str {
        full.strip_prefix(&*self.prefix).unwrap_or(full)
    }

    /// Creates the bucket (a test server starts empty); one that we already own is fine.
    pub fn create_bucket(&self) -> Result<(), S3Error> {
        let mut call = Call::new(Method::Put, None);
        call.body = Some(&[]);
        match self.client.send(&call) {
            Ok(_) => Ok(()),
            Err(S3Error::Rejected { code, .. }) if code == "BucketAlreadyOwnedByYou" => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Size and modification time of `key`, or `NotFound`.
    pub fn head(&self, key: &str) -> Result<ObjectInfo, S3Error> {
        let full = self.full_key(key)?;
        let response = self.client.send(&Call::new(Method::Head, Some(&full)))?;
        let size = header(&response, "content-length")
            .and_then(|value| value.parse().ok())
            .ok_or_else(|| S3Error::Protocol("HEAD reply without a Content-Length".into()))?;
        let modified = header(&response, "last-modified")
            .ok_or_else(|| S3Error::Protocol("HEAD reply without a Last-Modified".into()))
            .and_then(xml::parse_http_date)?;
        Ok(ObjectInfo { size, modified })
    }

    /// A stream of `key`'s bytes from offset `start` on, read from the network as the caller
    /// reads (never buffered whole). A start at or past the end reads nothing, as a file would.
    /// Only the request is retried; a connection that breaks mid-body is the caller's error.
    pub fn get(&self, key: &str, start: u64) -> Result<ObjectReader, S3Error> {
        let full = self.full_key(key)?;
        let mut call = Call::new(Method::Get, Some(&full));
        call.bound = Bound::Stall;
        if start > 0 {
            call.headers.push(("range", format!("bytes={start}-")));
        }
        let response = match self.client.send(&call) {
            Ok(response) => response,
            Err(S3Error::Rejected { status: 416, .. }) => return Ok(ObjectReader::empty()),
            Err(error) => return Err(error),
        };
        let ranged = response.status().as_u16() == 206;
        let mut reader = ObjectReader {
            body: Some(response.into_body().into_reader()),
        };
        if start > 0 && !ranged {
            // The server sent the whole object: skip to `start` ourselves.
            let skipped = io::copy(&mut (&mut reader).take(start), &mut io::sink())
                .map_err(|error| S3Error::from_io(&error))?;
            if skipped < start {
                return Ok(ObjectReader::empty());
            }
        }
        Ok(reader)
    }

    /// Writes `bytes` as `key` with one PUT, replacing any object there; for small objects
    /// (up to 5 GiB, but the whole body is in memory: use [`Store::upload`] for streams).
    pub fn put(&self, key: &str, bytes: &[u8]) -> Result<(), S3Error> {
        let full = self.full_key(key)?;
        self.put_full(&full, bytes)
    }

    pub(crate) fn put_full(&self, full: &str, bytes: &[u8]) -> Result<(), S3Error> {
        let mut call = Call::new(Method::Put, Some(full));
        call.bound = Bound::Stall;
        call.body = Some(bytes);
        self.client.send(&call).map(drop)
    }

    /// A writer that streams into `key`; the object appears only when
    /// [`Upload::finish`] succeeds.
    pub fn upload(&self, key: &str) -> Result<Upload, S3Error> {
        Ok(Upload::new(self.clone(), self.full_key(key)?))
    }

    /// The entries directly inside directory `dir` (`""` for the store's root): objects and
    /// subdirectories, in key order, fetched one page (at most 1,000 entries) at a time.
    pub fn list(&self, dir: &str) -> Result<Listing, S3Error> {
        Ok(Listing::new(self.clone(), self.dir_prefix(dir)?))
    }

    /// Deletes `key`. S3 answers a missing key with success too, so this cannot tell the
    /// caller whether there was anything to delete: HEAD first when that matters.
    pub fn delete(&self, key: &str) -> Result<(), S3Error> {
        let full = self.full_key(key)?;
        self.client
            .send(&Call::new(Method::Delete, Some(&full)))
            .map(drop)
    }

    /// Copies `from` to `to` inside the bucket on the server (no bytes pass through us):
    /// CopyObject up to 5 GiB, UploadPartCopy parts above.
    pub fn copy(&self, from: &str, to: &str) -> Result<(), S3Error> {
        let size = self.head(from)?.size;
        self.copy_sized(from, to, size, COPY_OBJECT_LIMIT, COPY_PART_SIZE)
    }

    /// [`Store::copy`] of an object known to hold `size` bytes, with the limits as arguments
    /// so a test can take the multipart path with small objects.
    pub(crate) fn copy_sized(
        &self,
        from: &str,
        to: &str,
        size: u64,
        single_limit: u64,
        part_size: u64,
    ) -> Result<(), S3Error> {
        let source = self.copy_source(&self.full_key(from)?);
        let target = self.full_key(to)?;
        if size <= single_limit {
            let mut call = Call::new(Method::Put, Some(&target));
            call.bound = Bound::Stall;
            call.headers.push(("x-amz-copy-source", source));
            call.body = Some(&[]);
            let body = self.client.send_for_text(&call)?;
            return check_not_error(&body);
        }
        let part_size = part_size.max(size.div_ceil(MAX_PARTS));
        let mut upload = crate::upload::Multipart::create(self, &target)?;
        let result = (|| {
            let mut offset = 0;
            while offset < size {
                let end = (offset + part_size).min(size) - 1;
                upload.copy_part(self, &source, offset, end)?;
                offset = end + 1;
            }
            upload.complete(self)
        })();
        if result.is_err() {
            upload.abort_logged(self);
        }
        result
    }

    /// `x-amz-copy-source` for a full key: `/bucket/key`, the key percent-encoded but its
    /// `/` kept.
    fn copy_source(&self, full: &str) -> String {
        let encoded: String =
            percent_encoding::utf8_percent_encode(full, COPY_SOURCE_ENCODE).collect();
        format!("/{}/{encoded}", self.client.bucket_name())
    }

    /// Writes the zero-byte `dir/` object that makes an empty directory visible in listings.
    pub fn put_dir_marker(&self, dir: &str) -> Result<(), S3Error> {
        let prefix = self.dir_prefix(dir)?;
        if prefix.is_empty() {
            return Err(S3Error::Unsupported(
                "the root needs no directory marker".into(),
            ));
        }
        self.put_full(&prefix, &[])
    }

    /// Every multipart upload under `prefix` (relative to the store's) that was started and
    /// neither completed nor aborted: what a crash leaves behind, and what tests check is
    /// empty. Collects all pages.
    pub fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, S3Error> {
        let full_prefix = format!("{}{}", self.prefix, prefix.trim_start_matches('/'));
        let mut pending = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut call = Call::new(Method::Get, None);
            call.query.push(("uploads", String::new()));
            call.query.push(("prefix", full_prefix.clone()));
            if let Some((key, id)) = &markers {
                call.query.push(("key-marker", key.clone()));
                call.query.push(("upload-id-marker", id.clone()));
            }
            let page = xml::parse_uploads_page(&self.client.send_for_text(&call)?)?;
            pending.extend(
                page.uploads
                    .into_iter()
                    .map(|(key, upload_id)| PendingUpload {
                        key: self.relative(&key).to_owned(),
                        upload_id,
                    }),
            );
            match page.next {
                Some(next) if Some(&next) != markers.as_ref() => markers = Some(next),
                Some(_) => {
                    return Err(S3Error::Protocol(
                        "ListMultipartUploads repeated its markers".into(),
                    ))
                }
                None => return Ok(pending),
            }
        }
    }

    /// Aborts a pending multipart upload (one that [`Store::list_multipart_uploads`] found),
    /// so a sweep at start-up can free what a crash left; an unknown id is not an error.
    pub fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), S3Error> {
        let full = self.full_key(key)?;
        crate::upload::abort(self, &full, upload_id)
    }
}

/// What `x-amz-copy-source` percent-encodes: everything but unreserved characters and `/`.
const COPY_SOURCE_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// S3 may answer CopyObject and CompleteMultipartUpload with `200 OK` and an `<Error>` body
/// (the failure came after the headers were sent); that is an error, mapped by its code.
pub(crate) fn check_not_error(body: &str) -> Result<(), S3Error> {
    match xml::parse_error(body) {
        Some(error) => Err(S3Error::from_reply(500, &error.code, &error.message)),
        None if xml::root_name(body).is_none() && !body.trim().is_empty() => Err(
            S3Error::Protocol(format!("reply is not XML: {:.80}", body.trim())),
        ),
        None => Ok(()),
    }
}

/// An object's bytes as they arrive; read errors carry an [`S3Error`] inside the
/// `io::Error` (`get_ref` + `downcast_ref`).
pub struct ObjectReader {
    body: Option<ureq::BodyReader<'static>>,
}

impl ObjectReader {
    fn empty() -> ObjectReader {
        ObjectReader { body: None }
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(body) = self.body.as_mut() else {
            return Ok(0);
        };
        body.read(buf).map_err(|error| {
            let ureq_error = error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<ureq::Error>());
            let s3 = match ureq_error {
                Some(ureq::Error::Timeout(_)) => S3Error::Timeout,
                Some(other) => S3Error::Transport(other.to_string()),
                None => S3Error::from_io(&error),
            };
            io::Error::from(s3)
        })
    }
}

impl std::fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReader")
            .field("empty", &self.body.is_none())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoint: &str, path_style: bool, prefix: &str) -> StoreConfig {
        StoreConfig {
            endpoint: endpoint.parse().unwrap(),
            region: "us-east-1".into(),
            bucket: "bucket".into(),
            prefix: prefix.into(),
            path_style,
            credentials: crate::Credentials::new("k", "s"),
            timeout: std::time::Duration::from_secs(1),
        }
    }

    #[test]
    fn bad_configurations_are_errors_not_panics() {
        for (endpoint, path_style, prefix) in [
            ("ftp://example.com", true, ""),
            ("http://127.0.0.1:9000", false, ""),
            ("http://example.com", true, "a/../b"),
        ] {
            let result = Store::new(config(endpoint, path_style, prefix));
            assert!(
                matches!(result, Err(S3Error::Unsupported(_))),
                "{endpoint} {path_style} {prefix}: {result:?}"
            );
        }
    }

    #[test]
    fn keys_live_under_the_prefix() {
        let store = Store::new(config("http://127.0.0.1:9000", true, "/ftp//root")).unwrap();
        assert_eq!(store.full_key("a/b").unwrap(), "ftp/root/a/b");
        assert_eq!(store.full_key("/a").unwrap(), "ftp/root/a");
        assert!(store.full_key("").is_err());
        assert!(store.full_key("/").is_err());
        assert_eq!(store.dir_prefix("").unwrap(), "ftp/root/");
        assert_eq!(store.dir_prefix("/d/e/").unwrap(), "ftp/root/d/e/");
        assert!(store.dir_prefix("d/..").is_err());
        assert_eq!(store.relative("ftp/root/x/y"), "x/y");
        assert_eq!(
            store.copy_source("ftp/root/a b/ü+&.txt"),
            "/bucket/ftp/root/a%20b/%C3%BC%2B%26.txt"
        );
    }

    #[test]
    fn a_200_with_an_error_body_is_an_error() {
        assert_eq!(
            check_not_error("<Error><Code>InternalError</Code><Message>m</Message></Error>"),
            Err(S3Error::Server(500))
        );
        assert_eq!(
            check_not_error(
                "<?xml version=\"1.0\"?><CopyObjectResult><ETag>x</ETag></CopyObjectResult>"
            ),
            Ok(())
        );
        assert_eq!(check_not_error(""), Ok(()));
        assert!(matches!(check_not_error("oops"), Err(S3Error::Protocol(_))));
    }
}
