//! Jail: the only code that touches the disk. Every access goes through a cap-std `Dir`
//! opened on the served root, so the kernel resolves each path beneath it: no `..`, absolute
//! symlink or race can reach outside, and a symlink that points inside still works.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use cap_std::fs::{Dir, Metadata, OpenOptions, ReadDir};

use crate::path::VirtualPath;

/// The served directory tree.
#[derive(Debug)]
pub struct Jail {
    root: Dir,
}

/// Temporary upload names are unique within the process; the pid keeps two servers apart.
static UPLOAD_COUNTER: AtomicU64 = AtomicU64::new(0);

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

    /// Metadata, following symlinks that stay inside.
    pub fn metadata(&self, path: &VirtualPath) -> io::Result<Metadata> {
        self.root.metadata(path.relative())
    }

    /// Opens a file for reading, as a std `File` so sending it can use `sendfile`.
    pub fn open_read(&self, path: &VirtualPath) -> io::Result<File> {
        let file = self.root.open(path.relative())?.into_std();
        if file.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            ));
        }
        Ok(file)
    }

    /// The entries of a directory.
    pub fn read_dir(&self, path: &VirtualPath) -> io::Result<ReadDir> {
        self.root.read_dir(path.relative())
    }

    /// Metadata of a directory entry without following a symlink.
    pub fn symlink_metadata(&self, path: &VirtualPath) -> io::Result<Metadata> {
        self.root.symlink_metadata(path.relative())
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

    /// Creates a new, uniquely named temporary file in `directory` for an upload.
    pub fn create_upload(&self, directory: &VirtualPath) -> io::Result<(VirtualPath, File)> {
        for _ in 0..16 {
            let serial = UPLOAD_COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = OsString::from(format!(".ftpd-upload-{}-{serial}.part", std::process::id()));
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

    /// Opens an existing file for writing in place, without truncating (REST + STOR).
    pub fn open_write_in_place(&self, path: &VirtualPath) -> io::Result<File> {
        self.open_with(path, OpenOptions::new().write(true))
    }

    /// Opens (or creates) a file for appending (APPE).
    pub fn open_append(&self, path: &VirtualPath) -> io::Result<File> {
        self.open_with(path, OpenOptions::new().append(true).create(true))
    }

    /// Sets a file's modification time (MFMT).
    pub fn set_modified(&self, path: &VirtualPath, time: SystemTime) -> io::Result<()> {
        let file = self.root.open(path.relative())?.into_std();
        file.set_modified(time)
    }

    fn open_with(&self, path: &VirtualPath, options: &OpenOptions) -> io::Result<File> {
        Ok(self.root.open_with(path.relative(), options)?.into_std())
    }
}
