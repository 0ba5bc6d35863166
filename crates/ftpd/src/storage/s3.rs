//! S3: the served tree as objects under a bucket and prefix, through `s3store`. A file is an
//! object; a directory exists while a `dir/` marker or any key under `dir/` does. What object
//! storage cannot do (append, resume an upload, set a time, rename a directory that holds
//! objects) is refused with an [`Unsupported`] the reply map explains, never emulated.

use std::ffi::OsStr;
use std::hash::{Hash, Hasher};
use std::io;
use std::ops::ControlFlow;
use std::time::SystemTime;

use s3store::{S3Error, Store};

use crate::accounts::Usage;

use super::{Facts, Unsupported};
use crate::listing::{Entry, Kind};
use crate::path::VirtualPath;

/// A tree of objects: the store (bucket and the `--storage` prefix) and, for a user's home,
/// the key prefix beneath it.
#[derive(Debug, Clone)]
pub struct S3Storage {
    store: Store,
    /// Empty, or the home's key prefix ending in `/`, relative to the store's prefix.
    base: String,
}

impl S3Storage {
    /// The whole store.
    pub fn new(store: Store) -> S3Storage {
        S3Storage {
            store,
            base: String::new(),
        }
    }

    /// Lists the first page of the root, so that a wrong bucket, endpoint or key is a
    /// start-up error rather than every client's.
    pub fn check(&self) -> io::Result<()> {
        match self.store.list(&self.base).map_err(io::Error::from)?.next() {
            Some(Err(error)) => Err(error.into()),
            _ => Ok(()),
        }
    }

    /// A user's home: a key prefix beneath this one, which need not exist yet.
    pub fn subdirectory(&self, path: &VirtualPath) -> io::Result<S3Storage> {
        Ok(S3Storage {
            store: self.store.clone(),
            base: self.dir_prefix(path)?,
        })
    }

    /// What this home holds, for a quota: every object beneath it, counted by walking its
    /// listing page by page (directory markers are not files).
    pub fn usage(&self) -> io::Result<Usage> {
        let mut usage = Usage::default();
        let mut pending = vec![self.base.clone()];
        while let Some(prefix) = pending.pop() {
            for entry in self.store.list(&prefix)? {
                match entry? {
                    s3store::Entry::Directory { name } => pending.push(format!("{prefix}{name}/")),
                    s3store::Entry::Object { size, .. } => {
                        usage.files += 1;
                        usage.bytes += size;
                    }
                }
            }
        }
        Ok(usage)
    }

    /// `path` relative to the store's prefix, without a leading or trailing `/`.
    fn key(&self, path: &VirtualPath) -> io::Result<String> {
        let bytes = path.to_bytes();
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "object keys must be UTF-8")
        })?;
        Ok(format!("{}{}", self.base, text.trim_start_matches('/')))
    }

    /// The key prefix of directory `path`: empty for the store's root, else ending in `/`.
    fn dir_prefix(&self, path: &VirtualPath) -> io::Result<String> {
        if path.is_root() {
            return Ok(self.base.clone());
        }
        Ok(format!("{}/", self.key(path)?))
    }

    /// Facts about `path`: an object (HEAD), else a directory (marker or keys beneath it).
    pub fn stat(&self, path: &VirtualPath) -> io::Result<Facts> {
        if path.is_root() {
            return Ok(directory_facts(&self.base));
        }
        let key = self.key(path)?;
        match self.store.head(&key) {
            Ok(info) => Ok(object_facts(&key, info.size, info.modified)),
            Err(S3Error::NotFound) if self.dir_exists(path)? => {
                Ok(directory_facts(&self.dir_prefix(path)?))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The size of the object at `path` (one HEAD), `None` when there is none.
    pub fn object_size(&self, path: &VirtualPath) -> io::Result<Option<u64>> {
        if path.is_root() {
            return Ok(None);
        }
        match self.store.head(&self.key(path)?) {
            Ok(info) => Ok(Some(info.size)),
            Err(S3Error::NotFound) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// True when `path` is a directory: its marker exists, or any key beneath it does.
    fn dir_exists(&self, path: &VirtualPath) -> io::Result<bool> {
        if path.is_root() {
            return Ok(true);
        }
        let prefix = self.dir_prefix(path)?;
        match self.store.head(&prefix) {
            Ok(_) => return Ok(true),
            Err(S3Error::NotFound) => {}
            Err(error) => return Err(error.into()),
        }
        self.has_entries(&prefix)
    }

    /// True when anything lies beneath the directory prefix (its own marker aside).
    fn has_entries(&self, prefix: &str) -> io::Result<bool> {
        match self.store.list(prefix).map_err(io::Error::from)?.next() {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(error)) => Err(error.into()),
        }
    }

    fn require_dir(&self, path: &VirtualPath) -> io::Result<()> {
        if self.dir_exists(path)? {
            return Ok(());
        }
        let kind = match self.store.head(&self.key(path)?) {
            Ok(_) => io::ErrorKind::NotADirectory,
            Err(S3Error::NotFound) => io::ErrorKind::NotFound,
            Err(error) => return Err(error.into()),
        };
        Err(io::Error::new(kind, "not a directory"))
    }

    /// A directory to list, checked to exist now (before any `150`).
    pub fn open_directory(&self, path: &VirtualPath) -> io::Result<S3Directory> {
        self.require_dir(path)?;
        Ok(S3Directory {
            storage: self.clone(),
            path: path.clone(),
            prefix: self.dir_prefix(path)?,
        })
    }

    /// A stream of the object's bytes from `offset` (a Range request), with its size.
    pub fn open_read_at(
        &self,
        path: &VirtualPath,
        offset: u64,
    ) -> io::Result<(s3store::ObjectReader, u64)> {
        if path.is_root() {
            return Err(is_a_directory());
        }
        let key = self.key(path)?;
        let size = match self.store.head(&key) {
            Ok(info) => info.size,
            Err(S3Error::NotFound) if self.dir_exists(path)? => return Err(is_a_directory()),
            Err(error) => return Err(error.into()),
        };
        Ok((self.store.get(&key, offset)?, size))
    }

    /// MKD: a `dir/` marker, in a parent that exists, where nothing has the name yet.
    pub fn create_dir(&self, path: &VirtualPath) -> io::Result<()> {
        if path.is_root() || self.stat(path).is_ok() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists"));
        }
        self.require_dir(&path.parent())?;
        Ok(self.store.put_dir_marker(&self.dir_prefix(path)?)?)
    }

    /// RMD: removes the marker of a directory with nothing beneath it.
    pub fn remove_dir(&self, path: &VirtualPath) -> io::Result<()> {
        self.require_dir(path)?;
        let prefix = self.dir_prefix(path)?;
        if self.has_entries(&prefix)? {
            return Err(io::Error::new(
                io::ErrorKind::DirectoryNotEmpty,
                "directory not empty",
            ));
        }
        Ok(self.store.delete(&prefix)?)
    }

    /// DELE (the session has checked that the object exists: S3 deletes silently).
    pub fn remove_file(&self, path: &VirtualPath) -> io::Result<()> {
        Ok(self.store.delete(&self.key(path)?)?)
    }

    /// RNFR/RNTO: an object is copied on the server (in parts above 5 GiB), then the source
    /// deleted; an empty directory moves its marker; a directory holding objects is refused.
    pub fn rename(&self, from: &VirtualPath, to: &VirtualPath) -> io::Result<()> {
        let source = self.stat(from)?;
        if !to.parent().is_root() {
            self.require_dir(&to.parent())?;
        }
        if source.is_dir() {
            if self.has_entries(&self.dir_prefix(from)?)? {
                return Err(Unsupported::RenameDirectory.into());
            }
            if self.stat(to).is_ok() {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists"));
            }
            self.store.put_dir_marker(&self.dir_prefix(to)?)?;
            return Ok(self.store.delete(&self.dir_prefix(from)?)?);
        }
        if self.dir_exists(to)? {
            return Err(is_a_directory());
        }
        let (from_key, to_key) = (self.key(from)?, self.key(to)?);
        if from_key == to_key {
            return Ok(());
        }
        self.store.copy(&from_key, &to_key)?;
        Ok(self.store.delete(&from_key)?)
    }

    /// A writer whose object appears only when it finishes: one PUT for a small file, a
    /// multipart upload (8 MiB parts, one in memory) for a large one. The directory it goes
    /// into must exist, as on a disk (the caller has checked that `target` is no directory).
    pub fn create_upload(&self, target: &VirtualPath) -> io::Result<s3store::Upload> {
        if target.is_root() {
            return Err(is_a_directory());
        }
        self.require_dir(&target.parent())?;
        Ok(self.store.upload(&self.key(target)?)?)
    }

    /// STOU: an upload to a key that HEAD finds free.
    pub fn create_new(&self, path: &VirtualPath) -> io::Result<s3store::Upload> {
        let key = self.key(path)?;
        match self.store.head(&key) {
            Ok(_) => Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists")),
            Err(S3Error::NotFound) => Ok(self.store.upload(&key)?),
            Err(error) => Err(error.into()),
        }
    }

    /// Multipart uploads under this tree that were neither completed nor aborted. They are
    /// counted and logged, not aborted: another server on the same bucket may own them.
    pub fn report_pending_uploads(&self) {
        match self.store.list_multipart_uploads(&self.base) {
            Ok(pending) if pending.is_empty() => {}
            Ok(pending) => log::warn!(
                "{} multipart uploads are pending in the bucket (another server's, or left by \
                 a crash); a lifecycle rule with AbortIncompleteMultipartUpload frees them",
                pending.len()
            ),
            Err(error) => log::warn!("cannot list pending multipart uploads: {error}"),
        }
    }
}

/// A directory of objects, listed a page (at most 1,000 keys) at a time.
#[derive(Debug)]
pub struct S3Directory {
    storage: S3Storage,
    path: VirtualPath,
    prefix: String,
}

impl S3Directory {
    /// Calls `visit` with each entry and its facts, in key order, fetching pages as it goes;
    /// names no path could name (`.`, `..`) are left out.
    pub fn for_each_entry(
        &self,
        visit: &mut dyn FnMut(&OsStr, &Entry) -> io::Result<ControlFlow<()>>,
    ) -> io::Result<()> {
        let listing = self.storage.store.list(&self.prefix)?;
        for entry in listing {
            let (name, facts) = match entry? {
                s3store::Entry::Directory { name } => {
                    let facts = directory_facts(&format!("{}{name}/", self.prefix));
                    (name, facts)
                }
                s3store::Entry::Object {
                    name,
                    size,
                    modified,
                } => {
                    let facts = object_facts(&format!("{}{name}", self.prefix), size, modified);
                    (name, facts)
                }
            };
            if name == "." || name == ".." {
                continue;
            }
            if visit(OsStr::new(&name), &facts.entry)?.is_break() {
                break;
            }
        }
        Ok(())
    }

    /// The facts of entry `name`.
    pub fn entry(&self, name: &OsStr) -> io::Result<Entry> {
        self.storage
            .stat(&self.path.child(name))
            .map(|facts| facts.entry)
    }
}

fn is_a_directory() -> io::Error {
    io::Error::new(io::ErrorKind::IsADirectory, "is a directory")
}

/// A stable number for a key, for MLSD's `unique` fact.
fn key_number(key: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

fn object_facts(key: &str, size: u64, modified: SystemTime) -> Facts {
    Facts {
        entry: Entry {
            kind: Kind::File,
            mode: 0o100644,
            links: 1,
            size,
            modified: modified.into(),
            device: 0,
            inode: key_number(key),
        },
        regular: true,
    }
}

/// A directory has no time of its own on object storage: the epoch says so honestly.
fn directory_facts(prefix: &str) -> Facts {
    Facts {
        entry: Entry {
            kind: Kind::Directory,
            mode: 0o40755,
            links: 2,
            size: 0,
            modified: SystemTime::UNIX_EPOCH.into(),
            device: 0,
            inode: key_number(prefix),
        },
        regular: false,
    }
}
