//! Jail: the only code that touches the disk. Every access goes through a cap-std `Dir`
//! opened on the served root, so the kernel resolves each path beneath it: no `..`, absolute
//! symlink or race can reach outside, and a symlink that points inside still works.
//!
//! It is also the one door to storage: the session asks it for names, metadata, readers and
//! writers, and never walks a directory, seeks or truncates by itself.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use cap_std::fs::{Dir, Metadata, OpenOptions, OpenOptionsExt};
use rustix::fs::{Access, AtFlags};

use crate::accounts::Usage;
use crate::path::VirtualPath;

/// The served directory tree.
#[derive(Debug)]
pub struct Jail {
    root: Dir,
}

/// Temporary upload names are unique within the process; the pid keeps two servers apart
/// and tells a stale temporary (its server is gone) from a live one.
static UPLOAD_COUNTER: AtomicU64 = AtomicU64::new(0);

/// What every temporary upload's name starts with.
const UPLOAD_PREFIX: &str = ".ftpd-upload-";
/// What every temporary upload's name ends with.
const UPLOAD_SUFFIX: &str = ".part";

/// Most directory entries the start-up sweep for stale uploads looks at.
const SWEEP_LIMIT: usize = 1_000_000;

/// True for the name of an upload in progress (or left by a killed server): never listed.
pub fn is_upload_temporary(name: &OsStr) -> bool {
    upload_owner(name).is_some()
}

/// The pid in a temporary upload's name.
fn upload_owner(name: &OsStr) -> Option<u32> {
    let name = std::str::from_utf8(name.as_bytes()).ok()?;
    let middle = name
        .strip_prefix(UPLOAD_PREFIX)?
        .strip_suffix(UPLOAD_SUFFIX)?;
    let (pid, serial) = middle.split_once('-')?;
    serial.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// The error for a FIFO, device node or socket where a file was wanted: such things are
/// never opened for a transfer, so none can hang a session.
#[derive(Debug)]
pub struct NotRegularFile;

impl std::fmt::Display for NotRegularFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a regular file")
    }
}

impl std::error::Error for NotRegularFile {}

impl NotRegularFile {
    /// True when `error` is this one.
    pub fn is(error: &io::Error) -> bool {
        error
            .get_ref()
            .is_some_and(|inner| inner.is::<NotRegularFile>())
    }
}

fn not_regular() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, NotRegularFile)
}

impl Jail {
    /// Opens `root` on the real file system: the one ambient-authority call in the server.
    pub fn open(root: &Path) -> io::Result<Jail> {
        let root = Dir::open_ambient_dir(root, cap_std::ambient_authority())?;
        // Listing it now turns a root we may not read into a start-up error.
        root.entries()?;
        Ok(Jail { root })
    }

    /// A jail on a directory beneath this one (a user's home).
    pub fn subdirectory(&self, path: &VirtualPath) -> io::Result<Jail> {
        Ok(Jail {
            root: self.root.open_dir(path.relative())?,
        })
    }

    /// Metadata, following symlinks that stay inside. Never blocks on a FIFO or device.
    pub fn metadata(&self, path: &VirtualPath) -> io::Result<Metadata> {
        self.root.metadata(path.relative())
    }

    /// Metadata of a directory entry without following a symlink.
    pub fn symlink_metadata(&self, path: &VirtualPath) -> io::Result<Metadata> {
        self.root.symlink_metadata(path.relative())
    }

    /// Opens a directory this process may both list and enter, as CWD and the listings
    /// need: a permission problem is an error before anything is promised to the client.
    pub fn open_directory(&self, path: &VirtualPath) -> io::Result<Directory> {
        let dir = self.root.open_dir(path.relative())?;
        dir.entries()?;
        rustix::fs::accessat(&dir, ".", Access::EXEC_OK, AtFlags::EACCESS)?;
        Ok(Directory {
            dir,
            path: path.clone(),
        })
    }

    /// Opens a regular file for reading at `offset`, returning it with its length. The open
    /// does not block (a FIFO without a writer would hang it), and anything but a regular
    /// file is refused, so a FIFO, device or socket can never hold a session.
    pub fn open_read_at(&self, path: &VirtualPath, offset: u64) -> io::Result<(File, u64)> {
        let mut options = OpenOptions::new();
        options.read(true).custom_flags(libc::O_NONBLOCK);
        let mut file = self.open_with(path, &options)?;
        let metadata = file.metadata()?;
        if metadata.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            ));
        }
        if !metadata.is_file() {
            return Err(not_regular());
        }
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))?;
        }
        Ok((file, metadata.len()))
    }

    /// Creates a directory.
    pub fn create_dir(&self, path: &VirtualPath) -> io::Result<()> {
        self.root.create_dir(path.relative())
    }

    /// Removes an empty directory.
    pub fn remove_dir(&self, path: &VirtualPath) -> io::Result<()> {
        self.root.remove_dir(path.relative())
    }

    /// Removes a file.
    pub fn remove_file(&self, path: &VirtualPath) -> io::Result<()> {
        self.root.remove_file(path.relative())
    }

    /// Renames within the jail (atomically replacing a file at `to`).
    pub fn rename(&self, from: &VirtualPath, to: &VirtualPath) -> io::Result<()> {
        self.root.rename(from.relative(), &self.root, to.relative())
    }

    /// Creates a new, uniquely named temporary file in `directory` for an upload. Listings
    /// never show it, and a server that dies before renaming it removes it at its next start.
    pub fn create_upload(&self, directory: &VirtualPath) -> io::Result<(VirtualPath, File)> {
        for _ in 0..16 {
            let serial = UPLOAD_COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = OsString::from(format!(
                "{UPLOAD_PREFIX}{}-{serial}{UPLOAD_SUFFIX}",
                std::process::id()
            ));
            let path = directory.child(&name);
            match self.open_with(&path, OpenOptions::new().write(true).create_new(true)) {
                Ok(file) => return Ok((path, file)),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
                Err(error) => return Err(error),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free temporary name",
        ))
    }

    /// Creates `path`, failing if it exists (STOU).
    pub fn create_new(&self, path: &VirtualPath) -> io::Result<File> {
        self.open_with(path, OpenOptions::new().write(true).create_new(true))
    }

    /// Opens an existing regular file for writing in place at `offset`, cutting it there
    /// (REST + STOR resumes an upload).
    pub fn open_write_at(&self, path: &VirtualPath, offset: u64) -> io::Result<File> {
        let mut options = OpenOptions::new();
        options.write(true).custom_flags(libc::O_NONBLOCK);
        let mut file = self.open_with(path, &options)?;
        if !file.metadata()?.is_file() {
            return Err(not_regular());
        }
        file.set_len(offset)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(file)
    }

    /// Opens (or creates) a regular file for appending (APPE).
    pub fn open_append(&self, path: &VirtualPath) -> io::Result<File> {
        let mut options = OpenOptions::new();
        options
            .append(true)
            .create(true)
            .custom_flags(libc::O_NONBLOCK);
        let file = self.open_with(path, &options)?;
        if !file.metadata()?.is_file() {
            return Err(not_regular());
        }
        Ok(file)
    }

    /// Sets a file's modification time (MFMT).
    pub fn set_modified(&self, path: &VirtualPath, time: SystemTime) -> io::Result<()> {
        let mut options = OpenOptions::new();
        options.read(true).custom_flags(libc::O_NONBLOCK);
        let file = self.open_with(path, &options)?;
        file.set_modified(time)
    }

    /// Removes temporary uploads left by servers that are gone (killed mid-STOR), anywhere
    /// under the root; returns how many. Only our own temp-file pattern is touched, and only
    /// when the pid in its name is no live process.
    pub fn sweep_stale_uploads(&self) -> usize {
        let mut removed = 0;
        let mut visited = 0;
        let mut pending = vec![VirtualPath::root()];
        while let Some(directory) = pending.pop() {
            let Ok(entries) = self.root.read_dir(directory.relative()) else {
                continue;
            };
            for entry in entries.flatten() {
                visited += 1;
                if visited > SWEEP_LIMIT {
                    log::warn!("stale-upload sweep stopped after {SWEEP_LIMIT} entries");
                    return removed;
                }
                let name = entry.file_name();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    pending.push(directory.child(&name));
                } else if upload_owner(&name).is_some_and(|pid| !process_is_alive(pid))
                    && self.remove_file(&directory.child(&name)).is_ok()
                {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// What this jail holds: bytes and count of regular files anywhere beneath it (symlinks
    /// and temporary uploads not counted), for a quota. Walks the whole tree once.
    pub fn usage(&self) -> io::Result<Usage> {
        let mut usage = Usage::default();
        let mut pending = vec![VirtualPath::root()];
        while let Some(directory) = pending.pop() {
            for entry in self.root.read_dir(directory.relative())?.flatten() {
                let name = entry.file_name();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    pending.push(directory.child(&name));
                } else if kind.is_file() && !is_upload_temporary(&name) {
                    usage.files += 1;
                    usage.bytes += entry.metadata().map_or(0, |metadata| metadata.len());
                }
            }
        }
        Ok(usage)
    }

    fn open_with(&self, path: &VirtualPath, options: &OpenOptions) -> io::Result<File> {
        match self.root.open_with(path.relative(), options) {
            Ok(file) => Ok(file.into_std()),
            // A FIFO without a reader, opened non-blocking for writing, or a device node
            // with no device behind it.
            Err(error) if error.raw_os_error() == Some(libc::ENXIO) => Err(not_regular()),
            Err(error) => Err(error),
        }
    }
}

/// An open directory inside the jail, for listing it: each entry is looked up relative to
/// it, one component at a time, not resolved again from the root.
#[derive(Debug)]
pub struct Directory {
    dir: Dir,
    path: VirtualPath,
}

impl Directory {
    /// Calls `visit` with the name of every entry, in directory order, until it breaks.
    pub fn for_each_name(
        &self,
        visit: &mut dyn FnMut(&OsStr) -> std::ops::ControlFlow<()>,
    ) -> io::Result<()> {
        for entry in self.dir.entries()? {
            let Ok(entry) = entry else { continue };
            if visit(&entry.file_name()).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// An entry's metadata; a symlink is followed when its target is inside `jail`, and
    /// shown as a link otherwise.
    pub fn entry_metadata(&self, jail: &Jail, name: &OsStr) -> io::Result<Metadata> {
        let own = self.dir.symlink_metadata(name)?;
        if own.file_type().is_symlink() {
            if let Ok(target) = jail.metadata(&self.path.child(name)) {
                return Ok(target);
            }
        }
        Ok(own)
    }
}

/// True when `pid` names a running process other than a previous life of this one.
fn process_is_alive(pid: u32) -> bool {
    pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_upload_names_are_recognised() {
        let ours = format!("{UPLOAD_PREFIX}123-4{UPLOAD_SUFFIX}");
        assert_eq!(upload_owner(OsStr::new(&ours)), Some(123));
        for other in [
            ".ftpd-upload-x-1.part",
            "report.part",
            ".ftpd-upload-1-2.txt",
        ] {
            assert!(!is_upload_temporary(OsStr::new(other)), "{other}");
        }
    }

    #[test]
    fn the_sweep_removes_only_dead_servers_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        // pid 0 is never a live process of ours; our own pid counts as a previous life.
        let dead = format!("{UPLOAD_PREFIX}0-1{UPLOAD_SUFFIX}");
        let ours = format!("{UPLOAD_PREFIX}{}-1{UPLOAD_SUFFIX}", std::process::id());
        let live = format!("{UPLOAD_PREFIX}1-1{UPLOAD_SUFFIX}");
        for name in [&dead, &ours, &live, &"keep.part".to_owned()] {
            std::fs::write(dir.path().join("sub").join(name), b"x").unwrap();
        }
        let jail = Jail::open(dir.path()).unwrap();
        assert_eq!(jail.sweep_stale_uploads(), 2);
        let mut left: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [live, "keep.part".to_owned()]);
    }
}
