//! `Upload`: an `io::Write` that streams into one object. Small objects go up as one PUT at
//! `finish`; larger ones as a multipart upload, started only once more than one part's worth
//! has arrived. The object becomes visible only when `finish` succeeds; `abort` or a drop
//! without `finish` aborts the multipart upload, so nothing partial and nothing pending stays.

use std::io::{self, Write};

use rusty_s3::Method;

use crate::error::S3Error;
use crate::request::{header, Bound, Call, Retry};
use crate::store::{check_not_error, Store};
use crate::xml;

/// The part size of an upload: 8 MiB, a buffer's worth of memory per upload in flight.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// The smallest part S3 accepts (all but the last part); the least [`Upload::part_size`] takes.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// The largest part S3 accepts.
const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;

/// A writer into one object; see the module documentation.
#[derive(Debug)]
pub struct Upload {
    store: Store,
    key: String,
    part_size: usize,
    /// Bytes not yet sent: at most one part.
    buffer: Vec<u8>,
    multipart: Option<Multipart>,
    state: State,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Open,
    /// A part failed to go up; the multipart upload has been aborted.
    Failed(S3Error),
    /// Finished or aborted: nothing is left to clean up.
    Closed,
}

impl Upload {
    pub(crate) fn new(store: Store, key: String) -> Upload {
        Upload {
            store,
            key,
            part_size: PART_SIZE,
            buffer: Vec::new(),
            multipart: None,
            state: State::Open,
        }
    }

    /// Sets the part size (clamped to S3's 5 MiB to 5 GiB) before the first write: smaller
    /// parts take less memory, larger ones allow larger objects (10,000 parts at most).
    pub fn part_size(mut self, bytes: usize) -> Upload {
        self.part_size = bytes.clamp(MIN_PART_SIZE, MAX_PART_SIZE);
        self
    }

    /// Sends what is buffered and makes the object visible (one PUT, or the last part and
    /// CompleteMultipartUpload). On error nothing new is visible and no upload is pending
    /// (except when CompleteMultipartUpload's reply was lost: it is not retried, and the
    /// object may then exist).
    pub fn finish(mut self) -> Result<(), S3Error> {
        if let State::Failed(error) = &self.state {
            return Err(error.clone());
        }
        self.state = State::Closed;
        let buffer = std::mem::take(&mut self.buffer);
        let Some(mut multipart) = self.multipart.take() else {
            return self.store.put_full(&self.key, &buffer);
        };
        let result = multipart
            .upload_part(&self.store, &buffer)
            .and_then(|()| multipart.complete(&self.store));
        if result.is_err() {
            multipart.abort_logged(&self.store);
        }
        result
    }

    /// Gives the upload up: nothing is written and no multipart upload stays pending.
    pub fn abort(mut self) -> Result<(), S3Error> {
        self.state = State::Closed;
        match self.multipart.take() {
            Some(multipart) => abort(&self.store, &self.key, &multipart.id),
            None => Ok(()),
        }
    }

    /// Sends the full buffer as the next part, starting the multipart upload first if needed.
    fn send_part(&mut self) -> Result<(), S3Error> {
        if self.multipart.is_none() {
            self.multipart = Some(Multipart::create(&self.store, &self.key)?);
        }
        if let Some(multipart) = self.multipart.as_mut() {
            multipart.upload_part(&self.store, &self.buffer)?;
        }
        self.buffer.clear();
        Ok(())
    }

    fn fail(&mut self, error: S3Error) -> io::Error {
        if let Some(multipart) = self.multipart.take() {
            multipart.abort_logged(&self.store);
        }
        self.buffer = Vec::new();
        self.state = State::Failed(error.clone());
        error.into()
    }
}

impl Write for Upload {
    /// Buffers up to one part; when the buffer is full and more bytes come, the full part goes
    /// up first (so an object of exactly one part's size is still one PUT).
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match &self.state {
            State::Open => {}
            State::Failed(error) => return Err(error.clone().into()),
            State::Closed => return Err(io::Error::other("upload already finished")),
        }
        if data.is_empty() {
            return Ok(0);
        }
        if self.buffer.len() >= self.part_size {
            if let Err(error) = self.send_part() {
                return Err(self.fail(error));
            }
        }
        let taken = data.len().min(self.part_size - self.buffer.len());
        let needed = self.buffer.len() + taken;
        if needed > self.buffer.capacity() {
            // Grow by doubling but never past one part, so memory stays at one part.
            let target = needed.max(self.buffer.capacity() * 2).min(self.part_size);
            self.buffer.reserve_exact(target - self.buffer.len());
        }
        self.buffer.extend_from_slice(&data[..taken]);
        Ok(taken)
    }

    /// Nothing to do: bytes go up a part at a time, and only `finish` commits them.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Upload {
    /// An upload dropped without `finish` (an error, a client gone) leaves nothing behind.
    fn drop(&mut self) {
        if let Some(multipart) = self.multipart.take() {
            multipart.abort_logged(&self.store);
        }
    }
}

/// A started multipart upload: its key, id and the parts sent so far.
#[derive(Debug)]
pub(crate) struct Multipart {
    key: String,
    id: String,
    /// `(part number, ETag)` of each part sent, in order.
    parts: Vec<(u32, String)>,
}

impl Multipart {
    /// CreateMultipartUpload; sent once, as a second try could leave a second upload pending.
    pub(crate) fn create(store: &Store, key: &str) -> Result<Multipart, S3Error> {
        let mut call = Call::new(Method::Post, Some(key));
        call.query.push(("uploads", String::new()));
        call.retry = Retry::Once;
        let id = xml::parse_upload_id(&store.client.send_for_text(&call)?)?;
        Ok(Multipart {
            key: key.to_owned(),
            id,
            parts: Vec::new(),
        })
    }

    fn next_part_number(&self) -> Result<u32, S3Error> {
        let number = self.parts.len() as u64 + 1;
        if number > crate::store::MAX_PARTS {
            return Err(S3Error::Unsupported(format!(
                "object '{}' needs more than {} parts: use a larger part size",
                self.key,
                crate::store::MAX_PARTS
            )));
        }
        Ok(number as u32)
    }

    fn part_call<'a>(&'a self, number: &'a str) -> Call<'a> {
        let mut call = Call::new(Method::Put, Some(&self.key));
        call.query.push(("partNumber", number.to_owned()));
        call.query.push(("uploadId", self.id.clone()));
        call.bound = Bound::Stall;
        call
    }

    /// UploadPart: idempotent, since sending a part number again replaces it.
    fn upload_part(&mut self, store: &Store, bytes: &[u8]) -> Result<(), S3Error> {
        let number = self.next_part_number()?;
        let number_text = number.to_string();
        let mut call = self.part_call(&number_text);
        call.body = Some(bytes);
        let response = store.client.send(&call)?;
        let etag = header(&response, "etag")
            .ok_or_else(|| S3Error::Protocol("UploadPart reply without an ETag".into()))?
            .to_owned();
        self.parts.push((number, etag));
        Ok(())
    }

    /// UploadPartCopy of bytes `first..=last` of `source` (an `x-amz-copy-source` value).
    pub(crate) fn copy_part(
        &mut self,
        store: &Store,
        source: &str,
        first: u64,
        last: u64,
    ) -> Result<(), S3Error> {
        let number = self.next_part_number()?;
        let number_text = number.to_string();
        let mut call = self.part_call(&number_text);
        call.headers.push(("x-amz-copy-source", source.to_owned()));
        call.headers
            .push(("x-amz-copy-source-range", format!("bytes={first}-{last}")));
        call.body = Some(&[]);
        let body = store.client.send_for_text(&call)?;
        check_not_error(&body)?;
        let etag = xml::parse_copy_part_etag(&body)?;
        self.parts.push((number, etag));
        Ok(())
    }

    /// CompleteMultipartUpload: sent once (a retry after a lost reply would find the upload
    /// gone and report NotFound for an object that exists).
    pub(crate) fn complete(&self, store: &Store) -> Result<(), S3Error> {
        let body = xml::complete_body(&self.parts);
        let mut call = Call::new(Method::Post, Some(&self.key));
        call.query.push(("uploadId", self.id.clone()));
        call.body = Some(body.as_bytes());
        call.retry = Retry::Once;
        call.bound = Bound::Stall;
        let reply = store.client.send_for_text(&call)?;
        check_not_error(&reply)
    }

    /// Aborts, logging a failure: for paths that already report another error.
    pub(crate) fn abort_logged(self, store: &Store) {
        if let Err(error) = abort(store, &self.key, &self.id) {
            log::warn!(
                "cannot abort multipart upload {} of '{}': {error}",
                self.id,
                self.key
            );
        }
    }
}

/// AbortMultipartUpload of a full key; idempotent, and an upload already gone is success.
pub(crate) fn abort(store: &Store, key: &str, id: &str) -> Result<(), S3Error> {
    let mut call = Call::new(Method::Delete, Some(key));
    call.query.push(("uploadId", id.to_owned()));
    match store.client.send(&call) {
        Ok(_) | Err(S3Error::NotFound) => Ok(()),
        Err(error) => Err(error),
    }
}
