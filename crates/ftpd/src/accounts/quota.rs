//! Quota: bytes and files stored per user. A user's usage is counted once, the first time it
//! is needed (at login), and kept up to date by uploads, deletes and renames after that, so
//! no command rescans the disk; a restart counts again from the disk, which is the truth.
//! An upload claims its bytes as they arrive, so parallel uploads of one user cannot
//! together pass the quota.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

/// What a user stores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes in regular files (uploads in flight included).
    pub bytes: u64,
    /// Regular files (uploads in flight included).
    pub files: u64,
}

/// Usage per user.
#[derive(Debug, Default)]
pub struct QuotaBook {
    usage: Mutex<HashMap<String, Usage>>,
}

impl QuotaBook {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Usage>> {
        self.usage
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `user`'s usage: known, or counted now by `count` (outside the lock; two first logins
    /// may both count, and the first to finish is kept).
    pub fn usage(
        &self,
        user: &str,
        count: impl FnOnce() -> io::Result<Usage>,
    ) -> io::Result<Usage> {
        if let Some(usage) = self.lock().get(user) {
            return Ok(*usage);
        }
        let counted = count()?;
        Ok(*self.lock().entry(user.to_owned()).or_insert(counted))
    }

    /// `user`'s usage if it has been counted.
    pub fn known(&self, user: &str) -> Option<Usage> {
        self.lock().get(user).copied()
    }

    /// A file of `bytes` is gone from `user`'s home (DELE, or replaced by a rename).
    pub fn file_removed(&self, user: &str, bytes: u64) {
        if let Some(usage) = self.lock().get_mut(user) {
            usage.bytes = usage.bytes.saturating_sub(bytes);
            usage.files = usage.files.saturating_sub(1);
        }
    }
}

/// The limits a charge is held to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes.
    pub bytes: Option<u64>,
    /// Most files.
    pub files: Option<u64>,
}

/// One upload's claim on its user's quota. Bytes are claimed as they arrive and refused past
/// the limit; dropped without [`commit`](QuotaCharge::commit) (a failed or aborted upload),
/// the claim is given back.
#[derive(Debug)]
pub struct QuotaCharge {
    book: Arc<QuotaBook>,
    user: String,
    limits: Limits,
    claimed_bytes: u64,
    claimed_file: bool,
    /// Bytes of the file this upload replaces, freed when it commits.
    replaces: u64,
    committed: bool,
}

fn exceeded(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::QuotaExceeded,
        format!("{what} quota exceeded"),
    )
}

impl QuotaCharge {
    /// Opens a claim for an upload that creates a file (`new_file`) or rewrites one whose
    /// old bytes (`replaces`) go when it commits. `QuotaExceeded` when the files quota is
    /// already full.
    pub fn open(
        book: Arc<QuotaBook>,
        user: &str,
        limits: Limits,
        new_file: bool,
        replaces: u64,
    ) -> io::Result<QuotaCharge> {
        if new_file {
            let mut usage = book.lock();
            let usage = usage.entry(user.to_owned()).or_default();
            if limits.files.is_some_and(|limit| usage.files >= limit) {
                return Err(exceeded("files"));
            }
            usage.files += 1;
        }
        Ok(QuotaCharge {
            book,
            user: user.to_owned(),
            limits,
            claimed_bytes: 0,
            claimed_file: new_file,
            replaces,
            committed: false,
        })
    }

    /// Claims `bytes` more; `QuotaExceeded` when the user's bytes, less what this upload
    /// replaces, would pass the quota.
    pub fn claim(&mut self, bytes: u64) -> io::Result<()> {
        let mut book = self.book.lock();
        let usage = book.entry(self.user.clone()).or_default();
        if let Some(limit) = self.limits.bytes {
            if usage.bytes + bytes > limit.saturating_add(self.replaces) {
                return Err(exceeded("bytes"));
            }
        }
        usage.bytes += bytes;
        self.claimed_bytes += bytes;
        Ok(())
    }

    /// The upload is in place: its bytes stay counted and the replaced bytes are freed.
    pub fn commit(mut self) {
        let mut book = self.book.lock();
        if let Some(usage) = book.get_mut(&self.user) {
            usage.bytes = usage.bytes.saturating_sub(self.replaces);
        }
        self.committed = true;
    }
}

impl Drop for QuotaCharge {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let mut book = self.book.lock();
        if let Some(usage) = book.get_mut(&self.user) {
            usage.bytes = usage.bytes.saturating_sub(self.claimed_bytes);
            if self.claimed_file {
                usage.files = usage.files.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book_with(bytes: u64, files: u64) -> Arc<QuotaBook> {
        let book = Arc::new(QuotaBook::default());
        book.usage("alice", || Ok(Usage { bytes, files })).unwrap();
        book
    }

    #[test]
    fn claims_stop_at_the_limit_and_a_failed_upload_gives_them_back() {
        let book = book_with(900, 1);
        let limits = Limits {
            bytes: Some(1000),
            files: Some(2),
        };
        let mut charge = QuotaCharge::open(Arc::clone(&book), "alice", limits, true, 0).unwrap();
        charge.claim(100).unwrap();
        assert_eq!(
            charge.claim(1).unwrap_err().kind(),
            io::ErrorKind::QuotaExceeded
        );
        drop(charge);
        assert_eq!(
            book.known("alice"),
            Some(Usage {
                bytes: 900,
                files: 1
            })
        );
    }

    #[test]
    fn an_overwrite_counts_only_the_difference_and_files_have_their_own_limit() {
        let book = book_with(900, 2);
        let limits = Limits {
            bytes: Some(1000),
            files: Some(2),
        };
        assert!(QuotaCharge::open(Arc::clone(&book), "alice", limits, true, 0).is_err());
        // Replacing a 500-byte file with 600 bytes fits: 900 - 500 + 600 = 1000.
        let mut charge = QuotaCharge::open(Arc::clone(&book), "alice", limits, false, 500).unwrap();
        charge.claim(600).unwrap();
        charge.commit();
        assert_eq!(
            book.known("alice"),
            Some(Usage {
                bytes: 1000,
                files: 2
            })
        );
        book.file_removed("alice", 1000);
        assert_eq!(book.known("alice"), Some(Usage { bytes: 0, files: 1 }));
    }
}
