//! Files: the commands that name paths without a data connection (CWD, MKD, RMD, DELE,
//! RNFR/RNTO, SIZE, MDTM, MFMT, MLST, `STAT path`). Each resolves its argument against the
//! working directory and asks the session's storage; errors become replies through `fs_error`.

use std::io::{BufWriter, Write};

use chrono::{NaiveDateTime, TimeZone, Utc};

use super::listings::{self, ListingStyle};
use super::{Flow, Replied, Session};
use crate::command::TransferType;
use crate::control::Control;
use crate::events::EventKind;
use crate::listing;
use crate::path::VirtualPath;
use crate::reply::{fs_error, quote_path, Code, MultiLineWriter, Reply};
use crate::transfer;
use crate::users::Permission;

impl Session {
    pub(super) fn working_directory(&self) -> Reply {
        Reply::new(
            Code::PathCreated,
            format!(
                "{} is the current directory",
                quote_path(&self.cwd.to_bytes())
            ),
        )
    }

    /// CWD and CDUP: only into a directory this server can list and enter, so a listing
    /// there cannot fail after its `150`.
    pub(super) fn change_dir(&mut self, target: VirtualPath) -> Replied<Reply> {
        let storage = self.storage();
        let metadata = storage
            .stat(&target)
            .map_err(|error| fs_error(&error, &target))?;
        if !metadata.is_dir() {
            return Err(Reply::new(
                Code::FileUnavailable,
                format!("{}: not a directory", target.display()),
            ));
        }
        storage
            .open_directory(&target)
            .map_err(|error| fs_error(&error, &target))?;
        self.cwd = target;
        Ok(Reply::new(
            Code::FileActionOk,
            format!("directory changed to {}", self.cwd.display()),
        ))
    }

    pub(super) fn make_dir(&self, argument: &[u8]) -> Replied<Reply> {
        let (storage, target) = self.permitted(Permission::Mkdir, argument)?;
        storage
            .create_dir(&target)
            .map_err(|error| fs_error(&error, &target))?;
        Ok(Reply::new(
            Code::PathCreated,
            format!("{} created", quote_path(&target.to_bytes())),
        ))
    }

    pub(super) fn remove_dir(&self, argument: &[u8]) -> Replied<Reply> {
        let (storage, target) = self.permitted(Permission::Rmdir, argument)?;
        if target.is_root() {
            return Err(Reply::new(
                Code::FileUnavailable,
                "cannot remove the root directory",
            ));
        }
        storage
            .remove_dir(&target)
            .map_err(|error| fs_error(&error, &target))?;
        Ok(Reply::new(
            Code::FileActionOk,
            format!("removed directory {}", target.display()),
        ))
    }

    pub(super) fn delete(&self, argument: &[u8]) -> Replied<Reply> {
        let (storage, target) = self.permitted(Permission::Delete, argument)?;
        let metadata = storage
            .stat_link(&target)
            .map_err(|error| fs_error(&error, &target))?;
        if metadata.is_dir() {
            return Err(Reply::new(
                Code::FileUnavailable,
                format!("{}: is a directory, use RMD", target.display()),
            ));
        }
        storage
            .remove_file(&target)
            .map_err(|error| fs_error(&error, &target))?;
        if metadata.is_file() {
            self.stored_file_gone(metadata.size());
        }
        if let Some(event) = self.event(EventKind::Delete, &target) {
            self.context.events.emit(event);
        }
        Ok(Reply::new(
            Code::FileActionOk,
            format!("deleted {}", target.display()),
        ))
    }

    /// RNFR: remembers the source for the very next command, which must be RNTO.
    pub(super) fn rename_from(&mut self, argument: &[u8]) -> Replied<Reply> {
        let (storage, source) = self.permitted(Permission::Rename, argument)?;
        storage
            .stat_link(&source)
            .map_err(|error| fs_error(&error, &source))?;
        self.rename_from = Some(source);
        Ok(Reply::new(Code::PendingFurtherInfo, "ready for RNTO"))
    }

    /// RNTO, with the source the command before it named (if it was an RNFR).
    pub(super) fn rename_to(&self, source: Option<VirtualPath>, argument: &[u8]) -> Replied<Reply> {
        let Some(source) = source else {
            return Err(Reply::new(Code::BadSequence, "RNFR first"));
        };
        let (storage, target) = self.permitted(Permission::Rename, argument)?;
        let replaced = storage
            .file_size(&target)
            .ok()
            .flatten()
            .filter(|_| source != target);
        storage
            .rename(&source, &target)
            .map_err(|error| fs_error(&error, &target))?;
        if let Some(replaced) = replaced {
            self.stored_file_gone(replaced);
        }
        if let Some(mut event) = self.event(EventKind::Rename, &target) {
            event.from = Some(source.display());
            self.context.events.emit(event);
        }
        Ok(Reply::new(
            Code::FileActionOk,
            format!("renamed to {}", target.display()),
        ))
    }

    /// SIZE: from metadata for TYPE I, so nothing is opened; TYPE A reads a regular file
    /// to count the line ends it will gain.
    pub(super) fn size(&self, argument: &[u8]) -> Replied<Reply> {
        let (storage, target) = self.permitted(Permission::List, argument)?;
        let metadata = storage
            .stat(&target)
            .map_err(|error| fs_error(&error, &target))?;
        if metadata.is_dir() {
            return Err(Reply::new(
                Code::FileUnavailable,
                format!("{}: not a plain file", target.display()),
            ));
        }
        let size = match self.transfer_type {
            TransferType::Image if metadata.is_file() => metadata.size(),
            _ => {
                let (mut file, length) = storage
                    .open_read_at(&target, 0)
                    .map_err(|error| fs_error(&error, &target))?;
                if self.transfer_type == TransferType::Image {
                    length
                } else {
                    transfer::crlf_size(&mut file).map_err(|error| fs_error(&error, &target))?
                }
            }
        };
        Ok(Reply::new(Code::FileStatus, size.to_string()))
    }

    pub(super) fn modification_time(&self, argument: &[u8]) -> Replied<Reply> {
        let (storage, target) = self.permitted(Permission::List, argument)?;
        let metadata = storage
            .stat(&target)
            .map_err(|error| fs_error(&error, &target))?;
        let entry = metadata.entry;
        Ok(Reply::new(
            Code::FileStatus,
            entry.modified.format("%Y%m%d%H%M%S").to_string(),
        ))
    }

    pub(super) fn set_modification_time(
        &self,
        time: NaiveDateTime,
        argument: &[u8],
    ) -> Replied<Reply> {
        let (storage, target) = self.permitted(Permission::Overwrite, argument)?;
        let when = Utc.from_utc_datetime(&time);
        storage
            .set_modified(&target, when.into())
            .map_err(|error| fs_error(&error, &target))?;
        Ok(Reply::new(
            Code::FileStatus,
            format!(
                "Modify={}; {}",
                time.format("%Y%m%d%H%M%S"),
                target.display()
            ),
        ))
    }

    pub(super) fn mlst(&self, argument: Option<&[u8]>) -> Replied<Reply> {
        let (storage, target) = self.permitted(Permission::List, argument.unwrap_or(b"."))?;
        let metadata = storage
            .stat(&target)
            .map_err(|error| fs_error(&error, &target))?;
        let mut line = b" ".to_vec();
        listing::write_facts(
            &mut line,
            target.display().as_ref(),
            &metadata.entry,
            self.can_write(),
        );
        Ok(Reply::multi(
            Code::FileActionOk,
            format!("Listing {}", target.display()),
            vec![line],
            "End",
        ))
    }

    /// A file of `bytes` left the user's home: their quota usage follows.
    fn stored_file_gone(&self, bytes: u64) {
        if let Some(identity) = self.identity() {
            self.context
                .accounts
                .quotas
                .file_removed(&identity.name, bytes);
        }
    }

    /// STAT with a path (globs allowed): the listing over the control connection, streamed
    /// line by line, every write under the control connection's deadline.
    pub(super) fn stat_path(&self, argument: &[u8]) -> Replied<Flow> {
        self.check(Permission::List)?;
        let storage = self.storage();
        let selection = listings::select(&storage, &self.cwd, argument, true)?;
        let target = self.cwd.resolve(argument);
        let sink = BufWriter::with_capacity(64 * 1024, ControlSink(&self.control));
        let first = format!("Status of {}:", target.display());
        let sent = MultiLineWriter::start(sink, Code::FileStatus, &first).and_then(|mut reply| {
            let listed = selection.write(&storage, ListingStyle::Long, false, &mut |line| {
                reply.line(line)
            });
            reply.finish(match listed {
                Ok(_) => "End of status",
                Err(_) => "End of status (listing cut short)",
            })
        });
        Ok(if sent.is_ok() {
            Flow::Continue
        } else {
            Flow::Quit
        })
    }
}

/// The control connection as a `Write`, for replies streamed through a buffer.
struct ControlSink<'a>(&'a Control);

impl Write for ControlSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.write(bytes)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
