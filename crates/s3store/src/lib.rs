//! s3store: a blocking S3 client for one bucket and prefix, the object-storage backend ftpd
//! will use (issue 13). A [`Store`] heads, reads (from an offset, streaming), writes (one PUT,
//! or an [`Upload`] writer that turns into a multipart upload past one part), lists one
//! directory a page at a time, deletes, copies and marks directories; every failure is an
//! [`S3Error`] the caller decides on, and every request has a deadline.
//!
//! Why these crates: `rusty-s3` signs requests (AWS Signature V4 as presigned URLs) and does
//! no I/O at all, so it fits our blocking, one-thread-per-session design without an async
//! runtime; its default features (its own XML parser, serde_json, md-5) are left out and only
//! its signer is used, so one code path builds every request, including those it has no type
//! for (CopyObject, UploadPartCopy, ListMultipartUploads). `ureq` 3 is a small blocking HTTP
//! client on rustls; with `default-features = false, features = ["rustls"]` it uses the `ring`
//! provider like the rest of the workspace (no aws-lc-rs, no gzip), and it has the deadlines we
//! need: per-phase timeouts plus per-read and per-write ones, so a stalled server fails a
//! streaming GET after one timeout of silence while a slow but moving download is not cut off.
//! The AWS SDK was not considered: it needs tokio. The replies are read with `quick-xml`'s
//! serde support into structs naming only the tags we use: it ignores the extra tags servers
//! add and decodes entities and character references in keys (`&amp;`, `&#x1;`), where
//! hand-parsed tags would get those wrong sooner or later. Idempotent requests are retried
//! (3 tries, 100 ms then 200 ms apart, capped at 400 ms) after throttling, a 5xx or a broken
//! connection, never after a timeout (the caller has already waited one deadline).
//!
//! Layout: `config` (settings, credentials, `s3://` locations; pure), `error` (the one map from
//! reply to `S3Error`), `xml` (reply bodies; pure), `request` (signing, sending, retrying: the
//! only network code), `store`, `upload`, `list`.

#![deny(clippy::disallowed_methods)]
#![warn(missing_docs)]

mod config;
mod error;
mod list;
mod request;
mod store;
mod upload;
mod xml;

pub use config::{
    normalize_prefix, parse_location, Credentials, Location, LocationError, MissingCredential,
    StoreConfig,
};
pub use error::S3Error;
pub use list::{Entry, Listing};
pub use store::{ObjectInfo, ObjectReader, Store, COPY_OBJECT_LIMIT};
pub use upload::{Upload, MIN_PART_SIZE, PART_SIZE};
pub use xml::PendingUpload;

#[doc(hidden)]
/// For tests only: [`Store::copy`] with the single-request limit and part size given, so the
/// UploadPartCopy path can be exercised without 5 GiB objects.
pub fn copy_with_limits(
    store: &Store,
    from: &str,
    to: &str,
    single_limit: u64,
    part_size: u64,
) -> Result<(), S3Error> {
    let size = store.head(from)?.size;
    store.copy_sized(from, to, size, single_limit, part_size)
}
