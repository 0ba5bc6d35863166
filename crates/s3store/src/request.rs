//! `Client`: one signed S3 request on the wire: rusty-s3 signs it (a presigned URL), ureq sends
//! it under the configured deadlines, and idempotent ones are retried with a capped backoff.
//! The only code in the crate that does network I/O.

use std::thread;
use std::time::Duration;

use rusty_s3::{Bucket, Method, UrlStyle};
use ureq::http;
use url::Url;

use crate::config::{Credentials, StoreConfig};
use crate::error::S3Error;
use crate::xml;

/// How many times an idempotent request is sent before its error is returned.
pub(crate) const TRIES: u32 = 3;
/// The wait after the first failed try; it doubles after each further one.
pub(crate) const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two tries.
pub(crate) const BACKOFF_CAP: Duration = Duration::from_millis(400);

/// How long a presigned URL stays valid: it is used at once, so this only has to cover the
/// clock skew between us and the server.
const URL_EXPIRY: Duration = Duration::from_secs(15 * 60);
/// The largest reply body read into memory (an error, a listing page, an upload id).
const REPLY_LIMIT: u64 = 16 * 1024 * 1024;

/// ureq's buffer for what a server sends, per pooled connection.
const INPUT_BUFFER: usize = 512 * 1024;

/// The wait before try number `attempt + 1` (counting from 1): 100 ms, 200 ms, 400 ms, 400 ms…
pub(crate) fn backoff(attempt: u32) -> Duration {
    BACKOFF_FIRST
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_CAP)
}

/// Whether a request may be sent again after a failure that may have reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Sending it twice has the effect of sending it once (GET, HEAD, PUT of a whole object…).
    Idempotent,
    /// A second try could act twice or fail for the wrong reason (CompleteMultipartUpload,
    /// CreateMultipartUpload): sent once.
    Once,
}

/// Whether the whole exchange, body included, must fit in one timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    /// A small exchange (HEAD, DELETE, a listing page): the whole call gets one timeout.
    Call,
    /// A body of any size streams (GET, a part upload, a copy): each step and each read or
    /// write gets one timeout, however long the whole takes.
    Stall,
}

/// One request to send: method, target, signed query and headers, body.
pub(crate) struct Call<'a> {
    pub method: Method,
    /// The full key, or `None` for the bucket itself.
    pub key: Option<&'a str>,
    /// Query parameters, signed.
    pub query: Vec<(&'a str, String)>,
    /// Headers, lower-case names, signed.
    pub headers: Vec<(&'a str, String)>,
    /// The body, when the request has one (a zero-length one still sends `Content-Length: 0`).
    pub body: Option<&'a [u8]>,
    pub retry: Retry,
    pub bound: Bound,
}

impl<'a> Call<'a> {
    /// A bodiless, idempotent, small request.
    pub fn new(method: Method, key: Option<&'a str>) -> Call<'a> {
        Call {
            method,
            key,
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            retry: Retry::Idempotent,
            bound: Bound::Call,
        }
    }
}

/// The signer, the HTTP agent and the deadlines, shared by every request of a store.
pub(crate) struct Client {
    agent: ureq::Agent,
    bucket: Bucket,
    credentials: Credentials,
    timeout: Duration,
}

impl Client {
    /// Checks the endpoint and bucket and builds the agent; no request is sent.
    pub fn new(config: &StoreConfig) -> Result<Client, S3Error> {
        let style = if config.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            config.endpoint.clone(),
            style,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|error| {
            S3Error::Unsupported(format!(
                "endpoint '{}' with bucket '{}': {error:?}",
                config.endpoint, config.bucket
            ))
        })?;
        let timeout = Some(config.timeout);
        let agent_config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_resolve(timeout)
            .timeout_connect(timeout)
            .timeout_send_request(timeout)
            .timeout_recv_response(timeout)
            .timeout_per_read(timeout)
            .timeout_per_write(timeout)
            .user_agent(concat!("s3store/", env!("CARGO_PKG_VERSION")))
            // A streamed GET is read a buffer at a time: 512 KiB (not ureq's 128 KiB) is a
            // quarter of the reads for the same bytes.
            .input_buffer_size(INPUT_BUFFER)
            .build();
        Ok(Client {
            agent: agent_config.new_agent(),
            bucket,
            credentials: config.credentials.clone(),
            timeout: config.timeout,
        })
    }

    /// The bucket's name, for `x-amz-copy-source`.
    pub fn bucket_name(&self) -> &str {
        self.bucket.name()
    }

    /// The presigned URL for `call`, valid for [`URL_EXPIRY`].
    fn sign(&self, call: &Call<'_>) -> Url {
        let url = match call.key {
            Some(key) => self.bucket.object_url(key),
            None => self.bucket.base_url().clone(),
        };
        let mut query: Vec<(&str, &str)> = call
            .query
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        query.sort_unstable();
        let mut headers: Vec<(&str, &str)> = call
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        headers.sort_unstable();
        rusty_s3::signing::sign(
            &jiff::Timestamp::now(),
            call.method,
            url,
            &self.credentials.access_key,
            &self.credentials.secret_key,
            self.credentials.session_token.as_deref(),
            self.bucket.region(),
            URL_EXPIRY.as_secs(),
            query.into_iter(),
            headers.into_iter(),
        )
    }

    /// Sends `call` once; a non-2xx reply becomes its `S3Error`.
    fn send_once(&self, call: &Call<'_>) -> Result<http::Response<ureq::Body>, S3Error> {
        let url = self.sign(call);
        let mut builder = http::Request::builder()
            .method(call.method.to_str())
            .uri(url.as_str());
        for (name, value) in &call.headers {
            builder = builder.header(*name, value.as_str());
        }
        let response = match call.body {
            Some(body) => self.run(builder.body(body), call.bound),
            None => self.run(builder.body(()), call.bound),
        }?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(response);
        }
        let body = read_reply(response).unwrap_or_default();
        let error = xml::parse_error(&body).unwrap_or_default();
        Err(S3Error::from_reply(status, &error.code, &error.message))
    }

    fn run<B: ureq::AsSendBody>(
        &self,
        request: Result<http::Request<B>, http::Error>,
        bound: Bound,
    ) -> Result<http::Response<ureq::Body>, S3Error> {
        let request = request
            .map_err(|error| S3Error::Unsupported(format!("cannot build request: {error}")))?;
        let per_call = match bound {
            Bound::Call => Some(self.timeout),
            Bound::Stall => None,
        };
        let request = self
            .agent
            .configure_request(request)
            .timeout_per_call(per_call)
            .build();
        self.agent.run(request).map_err(S3Error::from_ureq)
    }

    /// Sends `call`, again after a throttle, a 5xx or a broken connection when it is
    /// idempotent. A timeout is not retried: the caller has already waited a whole deadline.
    pub fn send(&self, call: &Call<'_>) -> Result<http::Response<ureq::Body>, S3Error> {
        let mut attempt = 1;
        loop {
            match self.send_once(call) {
                Err(error)
                    if call.retry == Retry::Idempotent
                        && attempt < TRIES
                        && error.is_retryable()
                        && error != S3Error::Timeout =>
                {
                    log::debug!("retrying {} after: {error}", call.method);
                    thread::sleep(backoff(attempt));
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// Sends `call` and reads its (small) reply body as text.
    pub fn send_for_text(&self, call: &Call<'_>) -> Result<String, S3Error> {
        read_reply(self.send(call)?)
    }
}

/// A reply body read whole, up to [`REPLY_LIMIT`].
pub(crate) fn read_reply(response: http::Response<ureq::Body>) -> Result<String, S3Error> {
    response
        .into_body()
        .into_with_config()
        .limit(REPLY_LIMIT)
        .read_to_string()
        .map_err(S3Error::from_ureq)
}

/// A header's value as text, if present and printable.
pub(crate) fn header<'r>(response: &'r http::Response<ureq::Body>, name: &str) -> Option<&'r str> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let waits: Vec<u128> = (1..=5).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 400, 400, 400]);
        assert_eq!(backoff(u32::MAX), BACKOFF_CAP);
    }
}
