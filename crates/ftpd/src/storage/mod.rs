//! Storage: the one door from a session to the files it serves, whichever backend holds
//! them. The session asks it for facts, directory entries, readers and upload sinks, and
//! never learns which backend answered.
//!
//! Two backends: `Local`, a directory through the cap-std [`Jail`] (the only code that
//! touches the disk), and `S3`, a bucket and prefix through [`s3store`] (see [`s3`]).
//!
//! An enum, not a trait object: the session's needs are a fixed list, two backends are
//! known at compile time, and a `match` keeps the local fast paths in reach (`sendfile` for
//! RETR and `splice` for STOR need the `File` itself), which a `dyn Read` would hide.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::SystemTime;

use cap_std::fs::Metadata;
use s3store::{ObjectReader, S3Error};

use crate::accounts::Usage;
use crate::jail::{self, Jail};
use crate::listing::{Entry, Kind};
use crate::path::VirtualPath;

pub mod s3;

pub use s3::S3Storage;

/// Where the served tree lives.
#[derive(Debug)]
pub enum Storage {
    /// A directory on the local disk, through the cap-std jail.
    Local(Jail),
    /// A bucket and key prefix on an S3-compatible service.
    S3(S3Storage),
}

/// What object storage cannot do, refused with a reason the client is shown rather than
/// emulated (a silent rewrite of a whole object would not be what the client asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsupported {
    /// APPE: an object cannot grow.
    Append,
    /// REST + STOR: an object cannot be written from an offset.
    Resume,
    /// MFMT: the service sets an object's time itself.
    SetModified,
    /// RNFR/RNTO of a directory that holds objects: every key would need a copy.
    RenameDirectory,
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unsupported::Append => {
                "object storage cannot append to a file: upload the whole file with STOR"
            }
            Unsupported::Resume => {
                "object storage cannot resume an upload at an offset: upload the whole file again"
            }
            Unsupported::SetModified => {
                "object storage sets modification times itself: MFMT cannot change them"
            }
            Unsupported::RenameDirectory => {
                "object storage cannot rename a directory that holds files: move them one by one"
            }
        })
    }
}

impl std::error::Error for Unsupported {}

impl Unsupported {
    /// The refusal inside `error`, if it is one.
    pub fn of(error: &io::Error) -> Option<Unsupported> {
        error.get_ref()?.downcast_ref::<Unsupported>().copied()
    }
}

impl From<Unsupported> for io::Error {
    fn from(refusal: Unsupported) -> io::Error {
        io::Error::new(io::ErrorKind::Unsupported, refusal)
    }
}

/// The object-storage failure inside `error` that is neither "no such key" nor "access
/// denied" (those read as the file-system errors they are): throttling or a server error
/// that outlasted the retries, a timeout, a broken connection. The reply is `451`.
pub fn backend_failure(error: &io::Error) -> Option<&S3Error> {
    let inner = error.get_ref()?.downcast_ref::<S3Error>()?;
    (!matches!(inner, S3Error::NotFound | S3Error::AccessDenied)).then_some(inner)
}

/// What the session learns about one path: its listing facts, and whether it is a regular
/// file (a FIFO or device is listed like a file but never opened).
#[derive(Debug, Clone)]
pub struct Facts {
    /// What a listing shows.
    pub entry: Entry,
    regular: bool,
}

impl Facts {
    fn from_metadata(metadata: &Metadata) -> Facts {
        Facts {
            entry: Entry::from_metadata(metadata),
            regular: metadata.is_file(),
        }
    }

    /// True for a directory.
    pub fn is_dir(&self) -> bool {
        self.entry.kind == Kind::Directory
    }

    /// True for a regular file (an object, on object storage).
    pub fn is_file(&self) -> bool {
        self.regular
    }

    /// The length in bytes.
    pub fn size(&self) -> u64 {
        self.entry.size
    }
}

impl Storage {
    /// The local directory `root`: the one ambient-authority call in the server.
    pub fn local(root: &Path) -> io::Result<Storage> {
        Jail::open(root).map(Storage::Local)
    }

    /// The same storage seen from a directory beneath its root (a user's home).
    pub fn subdirectory(&self, path: &VirtualPath) -> io::Result<Storage> {
        match self {
            Storage::Local(jail) => jail.subdirectory(path).map(Storage::Local),
            Storage::S3(s3) => s3.subdirectory(path).map(Storage::S3),
        }
    }

    /// Facts about `path`, following a symlink that stays inside.
    pub fn stat(&self, path: &VirtualPath) -> io::Result<Facts> {
        match self {
            Storage::Local(jail) => jail.metadata(path).map(|m| Facts::from_metadata(&m)),
            Storage::S3(s3) => s3.stat(path),
        }
    }

    /// Facts about `path` itself, a symlink not followed (DELE, RNFR).
    pub fn stat_link(&self, path: &VirtualPath) -> io::Result<Facts> {
        match self {
            Storage::Local(jail) => jail
                .symlink_metadata(path)
                .map(|m| Facts::from_metadata(&m)),
            Storage::S3(s3) => s3.stat(path),
        }
    }

    /// The size of the regular file (object) at `path`, `None` when there is none (nothing,
    /// or a directory): whether an upload replaces a file, in one request on object storage.
    pub fn file_size(&self, path: &VirtualPath) -> io::Result<Option<u64>> {
        let found = match self {
            Storage::Local(jail) => jail
                .symlink_metadata(path)
                .map(|metadata| metadata.is_file().then(|| metadata.len())),
            Storage::S3(s3) => s3.object_size(path),
        };
        match found {
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            other => other,
        }
    }

    /// What this home holds (bytes and regular files), for a quota; walks it once.
    pub fn usage(&self) -> io::Result<Usage> {
        match self {
            Storage::Local(jail) => jail.usage(),
            Storage::S3(s3) => s3.usage(),
        }
    }

    /// Opens a directory for listing, failing now (before any `150`) if it cannot be.
    pub fn open_directory(&self, path: &VirtualPath) -> io::Result<Directory> {
        match self {
            Storage::Local(jail) => jail.open_directory(path).map(Directory::Local),
            Storage::S3(s3) => s3.open_directory(path).map(Directory::S3),
        }
    }

    /// A reader of the regular file `path` from `offset`, with the file's whole length.
    pub fn open_read_at(&self, path: &VirtualPath, offset: u64) -> io::Result<(Reader, u64)> {
        match self {
            Storage::Local(jail) => jail
                .open_read_at(path, offset)
                .map(|(file, length)| (Reader::File(file), length)),
            Storage::S3(s3) => s3
                .open_read_at(path, offset)
                .map(|(object, length)| (Reader::Object(object), length)),
        }
    }

    /// Creates a directory.
    pub fn create_dir(&self, path: &VirtualPath) -> io::Result<()> {
        match self {
            Storage::Local(jail) => jail.create_dir(path),
            Storage::S3(s3) => s3.create_dir(path),
        }
    }

    /// Removes an empty directory.
    pub fn remove_dir(&self, path: &VirtualPath) -> io::Result<()> {
        match self {
            Storage::Local(jail) => jail.remove_dir(path),
            Storage::S3(s3) => s3.remove_dir(path),
        }
    }

    /// Removes a file.
    pub fn remove_file(&self, path: &VirtualPath) -> io::Result<()> {
        match self {
            Storage::Local(jail) => jail.remove_file(path),
            Storage::S3(s3) => s3.remove_file(path),
        }
    }

    /// Renames `from` to `to`, replacing a file at `to`.
    pub fn rename(&self, from: &VirtualPath, to: &VirtualPath) -> io::Result<()> {
        match self {
            Storage::Local(jail) => jail.rename(from, to),
            Storage::S3(s3) => s3.rename(from, to),
        }
    }

    /// Sets a file's modification time (MFMT).
    pub fn set_modified(&self, path: &VirtualPath, time: SystemTime) -> io::Result<()> {
        match self {
            Storage::Local(jail) => jail.set_modified(path, time),
            Storage::S3(_) => Err(Unsupported::SetModified.into()),
        }
    }

    /// Where a new version of `target` is written until it is complete: a temporary file
    /// beside it (returned, to be renamed over the target), or a sink that itself becomes
    /// visible only when finished (no temporary).
    pub fn create_upload(&self, target: &VirtualPath) -> io::Result<(Option<VirtualPath>, Sink)> {
        match self {
            Storage::Local(jail) => jail
                .create_upload(&target.parent())
                .map(|(temporary, file)| (Some(temporary), Sink::File(file))),
            Storage::S3(s3) => s3
                .create_upload(target)
                .map(|upload| (None, Sink::Object(Box::new(upload)))),
        }
    }

    /// A sink for `path`, which must not exist yet (STOU).
    pub fn create_new(&self, path: &VirtualPath) -> io::Result<Sink> {
        match self {
            Storage::Local(jail) => jail.create_new(path).map(Sink::File),
            Storage::S3(s3) => s3
                .create_new(path)
                .map(|upload| Sink::Object(Box::new(upload))),
        }
    }

    /// Writes into the existing file `path` from `offset`, cutting it there (REST + STOR).
    pub fn open_write_at(&self, path: &VirtualPath, offset: u64) -> io::Result<Sink> {
        match self {
            Storage::Local(jail) => jail.open_write_at(path, offset).map(Sink::File),
            Storage::S3(_) => Err(Unsupported::Resume.into()),
        }
    }

    /// Appends to `path`, creating it if needed (APPE).
    pub fn open_append(&self, path: &VirtualPath) -> io::Result<Sink> {
        match self {
            Storage::Local(jail) => jail.open_append(path).map(Sink::File),
            Storage::S3(_) => Err(Unsupported::Append.into()),
        }
    }

    /// Clears what a server that is gone left behind (killed mid-STOR); returns how many.
    /// On object storage a pending multipart upload may be another live server's, so they
    /// are only reported.
    pub fn sweep_stale_uploads(&self) -> usize {
        match self {
            Storage::Local(jail) => jail.sweep_stale_uploads(),
            Storage::S3(s3) => {
                s3.report_pending_uploads();
                0
            }
        }
    }
}

/// An open directory, for listing it.
#[derive(Debug)]
pub enum Directory {
    /// A local directory: names in directory order, facts looked up one by one.
    Local(jail::Directory),
    /// A key prefix: entries with their facts, in key order, a page at a time.
    S3(s3::S3Directory),
}

impl Directory {
    /// True when entries come already ordered, page by page, with their facts, and must be
    /// written as they arrive rather than collected and sorted first (object storage).
    pub fn streams(&self) -> bool {
        match self {
            Directory::Local(_) => false,
            Directory::S3(_) => true,
        }
    }

    /// Calls `visit` with the name of every entry until it breaks; temporary uploads are
    /// left out.
    pub fn for_each_name(
        &self,
        visit: &mut dyn FnMut(&OsStr) -> ControlFlow<()>,
    ) -> io::Result<()> {
        match self {
            Directory::Local(directory) => directory.for_each_name(&mut |name| {
                if jail::is_upload_temporary(name) {
                    ControlFlow::Continue(())
                } else {
                    visit(name)
                }
            }),
            Directory::S3(directory) => directory.for_each_entry(&mut |name, _| Ok(visit(name))),
        }
    }

    /// Calls `visit` with every entry and its facts, in the storage's order, until it
    /// breaks or fails; for a directory that [`streams`](Directory::streams).
    pub fn for_each_entry(
        &self,
        storage: &Storage,
        visit: &mut dyn FnMut(&OsStr, &Entry) -> io::Result<ControlFlow<()>>,
    ) -> io::Result<()> {
        if let Directory::S3(directory) = self {
            return directory.for_each_entry(visit);
        }
        let mut failure = None;
        self.for_each_name(&mut |name| match self.entry(storage, name) {
            Ok(entry) => match visit(name, &entry) {
                Ok(flow) => flow,
                Err(error) => {
                    failure = Some(error);
                    ControlFlow::Break(())
                }
            },
            Err(_) => ControlFlow::Continue(()),
        })?;
        failure.map_or(Ok(()), Err)
    }

    /// The facts of the entry `name`; a symlink is followed when its target is inside.
    pub fn entry(&self, storage: &Storage, name: &OsStr) -> io::Result<Entry> {
        match (self, storage) {
            (Directory::Local(directory), Storage::Local(jail)) => directory
                .entry_metadata(jail, name)
                .map(|metadata| Entry::from_metadata(&metadata)),
            (Directory::S3(directory), _) => directory.entry(name),
            (Directory::Local(_), Storage::S3(_)) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a local directory listed through object storage",
            )),
        }
    }
}

/// The bytes of a file being read (RETR, and SIZE in TYPE A).
#[derive(Debug)]
pub enum Reader {
    /// A local file, which `sendfile` can send.
    File(File),
    /// An object's bytes as a GET streams them.
    Object(ObjectReader),
}

impl Reader {
    /// The local file behind this reader, for the `sendfile` fast path.
    pub fn as_file(&mut self) -> Option<&mut File> {
        match self {
            Reader::File(file) => Some(file),
            Reader::Object(_) => None,
        }
    }
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Reader::File(file) => file.read(buf),
            Reader::Object(object) => object.read(buf),
        }
    }
}

/// Where an upload's bytes go (STOR, APPE, STOU).
#[derive(Debug)]
pub enum Sink {
    /// A local file, which `splice` can fill.
    File(File),
    /// An object upload: one PUT, or a multipart upload of 8 MiB parts past the first.
    Object(Box<s3store::Upload>),
}

impl Sink {
    /// The local file behind this sink, for the `splice` fast path.
    pub fn as_file(&mut self) -> Option<&mut File> {
        match self {
            Sink::File(file) => Some(file),
            Sink::Object(_) => None,
        }
    }

    /// Makes the bytes written durable where they are (the temporary, if any, is renamed by
    /// the caller).
    pub fn finish(self) -> io::Result<()> {
        match self {
            Sink::File(mut file) => file.flush(),
            Sink::Object(upload) => Ok(upload.finish()?),
        }
    }

    /// Gives the bytes up; true when those already written are visible at their path (a
    /// file written in place), for the caller to remove.
    pub fn abort(self) -> bool {
        match self {
            Sink::File(_) => true,
            Sink::Object(upload) => {
                if let Err(error) = upload.abort() {
                    log::warn!("cannot abort an object upload: {error}");
                }
                false
            }
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::File(file) => file.write(buf),
            Sink::Object(upload) => upload.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::File(file) => file.flush(),
            Sink::Object(upload) => upload.flush(),
        }
    }
}
