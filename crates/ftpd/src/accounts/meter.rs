//! Meter: what a transfer of a user with a quota or a rate cap passes through. Such
//! transfers take the buffered copy (not `sendfile`/`splice`), in chunks small enough that
//! each wait for the rate stays short; everyone else keeps the zero-copy paths.

use std::io::{self, Read, Write};
use std::sync::Arc;

use super::quota::QuotaCharge;
use super::throttle::RateLimiter;

/// A transfer's quota claim and rate limiter, either or both.
#[derive(Debug, Default)]
pub struct Meter {
    /// The upload's claim on its user's quota.
    pub quota: Option<QuotaCharge>,
    /// The user's limiter for this direction.
    pub rate: Option<Arc<RateLimiter>>,
}

impl Meter {
    /// True when nothing is metered: the transfer may take the zero-copy path.
    pub fn is_free(&self) -> bool {
        self.quota.is_none() && self.rate.is_none()
    }

    /// The largest chunk to move at once.
    fn chunk(&self) -> usize {
        self.rate
            .as_ref()
            .map_or(crate::transfer::BUFFER_SIZE, |rate| rate.chunk())
    }

    /// Accounts for `bytes` about to move: a quota refusal is an error, a rate is a sleep.
    fn charge(&mut self, bytes: usize) -> io::Result<()> {
        if let Some(quota) = self.quota.as_mut() {
            quota.claim(bytes as u64)?;
        }
        if let Some(rate) = &self.rate {
            rate.take(bytes);
        }
        Ok(())
    }

    /// The upload is in place: its quota claim stays.
    pub fn commit(&mut self) {
        if let Some(quota) = self.quota.take() {
            quota.commit();
        }
    }
}

/// A reader or writer that every byte passes through its [`Meter`].
#[derive(Debug)]
pub struct Metered<'a, T> {
    inner: T,
    meter: &'a mut Meter,
}

impl<'a, T> Metered<'a, T> {
    /// `inner`, metered.
    pub fn new(inner: T, meter: &'a mut Meter) -> Metered<'a, T> {
        Metered { inner, meter }
    }
}

impl<T: Read> Read for Metered<'_, T> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let limit = buffer.len().min(self.meter.chunk());
        let count = self.inner.read(&mut buffer[..limit])?;
        self.meter.charge(count)?;
        Ok(count)
    }
}

impl<T: Write> Write for Metered<'_, T> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let limit = bytes.len().min(self.meter.chunk());
        self.meter.charge(limit)?;
        self.inner.write_all(&bytes[..limit])?;
        Ok(limit)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
