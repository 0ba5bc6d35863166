//! Upload: where the bytes of STOR, APPE and STOU go, and how a finished upload becomes
//! visible. A plain STOR writes a temporary file that replaces the target only once every
//! byte has arrived (on object storage, a multipart upload completed only then), so no
//! partial file ever replaces a good one or becomes visible.

use std::ffi::OsString;
use std::io::{self, ErrorKind};

use crate::jail::NotRegularFile;
use crate::path::VirtualPath;
use crate::storage::{Sink, Storage};

/// How STOR, APPE and STOU write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    /// STOR: replace the target (or, after REST, resume it in place).
    Replace,
    /// APPE: add to the end of the target.
    Append,
    /// STOU: a new file with a name we choose.
    Unique,
}

impl StoreMode {
    /// The FTP verb, for the logs.
    pub fn verb(self) -> &'static str {
        match self {
            StoreMode::Replace => "STOR",
            StoreMode::Append => "APPE",
            StoreMode::Unique => "STOU",
        }
    }
}

/// An upload in progress: where bytes go now and where they end up.
#[derive(Debug)]
pub struct Upload {
    /// Where the bytes are written.
    pub sink: Sink,
    /// The temporary file to rename over the target, for a plain STOR.
    temporary: Option<VirtualPath>,
    /// The name the upload ends up with.
    pub final_path: VirtualPath,
    /// Remove `final_path` itself if the upload fails (STOU's fresh file).
    remove_on_failure: bool,
}

impl Upload {
    /// Opens the file an upload writes to; `offset` is a REST offset for STOR.
    pub fn open(
        storage: &Storage,
        target: &VirtualPath,
        mode: StoreMode,
        offset: u64,
    ) -> io::Result<Upload> {
        let in_place = |sink| Upload {
            sink,
            temporary: None,
            final_path: target.clone(),
            remove_on_failure: false,
        };
        match mode {
            StoreMode::Replace if offset == 0 => {
                if let Ok(metadata) = storage.stat(target) {
                    if metadata.is_dir() {
                        return Err(io::Error::new(ErrorKind::IsADirectory, "is a directory"));
                    }
                    if !metadata.is_file() {
                        return Err(io::Error::new(ErrorKind::InvalidInput, NotRegularFile));
                    }
                }
                let (temporary, sink) = storage.create_upload(target)?;
                Ok(Upload {
                    sink,
                    temporary,
                    final_path: target.clone(),
                    remove_on_failure: false,
                })
            }
            // Resuming: write into the existing file at the offset, as clients expect.
            StoreMode::Replace => Ok(in_place(storage.open_write_at(target, offset)?)),
            StoreMode::Append => Ok(in_place(storage.open_append(target)?)),
            StoreMode::Unique => {
                let directory = target;
                for serial in 0..1000u32 {
                    let name = OsString::from(format!("ftpd.{}.{serial}", std::process::id()));
                    let path = directory.child(&name);
                    match storage.create_new(&path) {
                        Ok(sink) => {
                            return Ok(Upload {
                                sink,
                                temporary: None,
                                final_path: path,
                                remove_on_failure: true,
                            })
                        }
                        Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
                        Err(error) => return Err(error),
                    }
                }
                Err(io::Error::new(
                    ErrorKind::AlreadyExists,
                    "no free unique name",
                ))
            }
        }
    }

    /// Makes a complete upload visible: the temporary file replaces the target atomically
    /// (or the object storage completes the upload).
    pub fn commit(self, storage: &Storage) -> io::Result<()> {
        let finished = self.sink.finish();
        if let Some(temporary) = &self.temporary {
            if let Err(error) = finished.and_then(|()| storage.rename(temporary, &self.final_path))
            {
                let _ = storage.remove_file(temporary);
                return Err(error);
            }
            return Ok(());
        }
        finished
    }

    /// Drops a failed upload, leaving the old file as it was.
    pub fn discard(self, storage: &Storage) {
        let written_in_place = self.sink.abort();
        if let Some(temporary) = &self.temporary {
            let _ = storage.remove_file(temporary);
        } else if self.remove_on_failure && written_in_place {
            let _ = storage.remove_file(&self.final_path);
        }
    }
}
