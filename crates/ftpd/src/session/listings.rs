//! Listings: what LIST, NLST, MLSD and `STAT path` show. The names are chosen before the
//! client is told `150` (so a missing or unreadable directory, or a glob that matches
//! nothing, is a `550` first), sorted by name in byte order as `ls` and vsftpd do, then
//! written entry by entry with one metadata lookup each (none for NLST). A directory that
//! streams (object storage) is instead written page by page in the storage's own order as
//! the pages arrive, so a prefix of 100,000 objects is never held whole.

use std::ffi::{OsStr, OsString};
use std::io;
use std::ops::ControlFlow;
use std::os::unix::ffi::OsStrExt;

use chrono::Utc;

use crate::glob::{self, Pattern};
use crate::listing::{self, Entry};
use crate::path::VirtualPath;
use crate::reply::{fs_error, Code, Reply};
use crate::storage::{Directory, Storage};

/// Most entries a listing reads (and holds, to sort them); the rest are left out.
pub const MAX_LISTED: usize = 1_000_000;
/// Most directory entries a glob looks at.
pub const MAX_GLOB_SCANNED: usize = 200_000;
/// Most names a glob returns.
pub const MAX_GLOB_MATCHES: usize = 50_000;

/// How a listing is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListingStyle {
    /// LIST and `STAT path`: `ls -l` lines.
    Long,
    /// NLST: names only.
    Names,
    /// MLSD: RFC 3659 facts.
    Facts,
}

/// Names kept in one buffer rather than one allocation each: a 20,000-entry directory
/// costs a few hundred KiB to sort.
#[derive(Debug, Default)]
pub struct NameList {
    bytes: Vec<u8>,
    spans: Vec<(u32, u32)>,
}

impl NameList {
    fn push(&mut self, name: &[u8]) -> bool {
        let (Ok(start), Ok(len)) = (u32::try_from(self.bytes.len()), u32::try_from(name.len()))
        else {
            return false;
        };
        self.bytes.extend_from_slice(name);
        self.spans.push((start, len));
        true
    }

    fn get(&self, (start, len): (u32, u32)) -> &[u8] {
        &self.bytes[start as usize..(start + len) as usize]
    }

    fn sort(&mut self) {
        let mut spans = std::mem::take(&mut self.spans);
        spans.sort_unstable_by(|a, b| self.get(*a).cmp(self.get(*b)));
        self.spans = spans;
    }

    fn len(&self) -> usize {
        self.spans.len()
    }

    fn iter(&self) -> impl Iterator<Item = &OsStr> {
        self.spans
            .iter()
            .map(|span| OsStr::from_bytes(self.get(*span)))
    }
}

/// What a listing will show, chosen before anything is promised to the client.
pub enum Selection {
    /// One file, named as the client named it.
    Single { name: OsString, entry: Entry },
    /// Entries of a directory, sorted; `prefix` goes before each name in NLST (the directory
    /// part of a glob such as `/logs/*.log`, as clients that fetch each name expect).
    Entries {
        directory: Directory,
        names: NameList,
        prefix: Vec<u8>,
    },
    /// Entries of a directory that streams, read as they are written; `pattern` keeps a
    /// glob's matches only.
    Streamed {
        directory: Directory,
        pattern: Option<Pattern>,
        prefix: Vec<u8>,
    },
}

/// Chooses what `argument` lists from `cwd`: a directory's entries, one file, or (when the
/// path does not exist literally and `globbing` is on) the entries its last component
/// matches. A name that exists literally always wins over the pattern.
pub fn select(
    storage: &Storage,
    cwd: &VirtualPath,
    argument: &[u8],
    globbing: bool,
) -> Result<Selection, Reply> {
    let target = cwd.resolve(argument);
    match storage.stat(&target) {
        Ok(metadata) if metadata.is_dir() => {
            let directory = storage
                .open_directory(&target)
                .map_err(|error| fs_error(&error, &target))?;
            if directory.streams() {
                return Ok(Selection::Streamed {
                    directory,
                    pattern: None,
                    prefix: Vec::new(),
                });
            }
            let names = collect(&directory, MAX_LISTED, MAX_LISTED, |_| true)
                .map_err(|error| fs_error(&error, &target))?;
            Ok(Selection::Entries {
                directory,
                names,
                prefix: Vec::new(),
            })
        }
        Ok(metadata) => Ok(Selection::Single {
            name: target
                .file_name()
                .map(ToOwned::to_owned)
                .unwrap_or_default(),
            entry: metadata.entry,
        }),
        Err(error) => {
            let last = last_component(argument);
            if !(globbing && error.kind() == io::ErrorKind::NotFound && glob::has_magic(last)) {
                return Err(fs_error(&error, &target));
            }
            let pattern = Pattern::compile(last)
                .map_err(|error| Reply::new(Code::BadArguments, error.to_string()))?;
            let parent = target.parent();
            let directory = storage
                .open_directory(&parent)
                .map_err(|error| fs_error(&error, &parent))?;
            let prefix = argument[..argument.len() - last.len()].to_vec();
            if directory.streams() {
                // Read until the first match, so that none is a 550 before the 150.
                let mut matched = false;
                directory
                    .for_each_name(&mut |name| {
                        matched = pattern.matches(name.as_bytes());
                        if matched {
                            ControlFlow::Break(())
                        } else {
                            ControlFlow::Continue(())
                        }
                    })
                    .map_err(|error| fs_error(&error, &parent))?;
                if !matched {
                    return Err(no_match(&target));
                }
                return Ok(Selection::Streamed {
                    directory,
                    pattern: Some(pattern),
                    prefix,
                });
            }
            let names = collect(&directory, MAX_GLOB_SCANNED, MAX_GLOB_MATCHES, |name| {
                pattern.matches(name.as_bytes())
            })
            .map_err(|error| fs_error(&error, &parent))?;
            if names.len() == 0 {
                return Err(no_match(&target));
            }
            Ok(Selection::Entries {
                directory,
                names,
                prefix,
            })
        }
    }
}

fn no_match(target: &VirtualPath) -> Reply {
    Reply::new(
        Code::FileUnavailable,
        format!("{}: no file matches", target.display()),
    )
}

/// The last `/`-separated component of an argument as the client wrote it.
fn last_component(argument: &[u8]) -> &[u8] {
    let trimmed = argument.strip_suffix(b"/").unwrap_or(argument);
    match trimmed.iter().rposition(|&byte| byte == b'/') {
        Some(slash) => &trimmed[slash + 1..],
        None => trimmed,
    }
}

/// The sorted names of `directory` that `keep` accepts, leaving out names a listing cannot
/// show and temporary uploads; at most `scanned` entries are read and `kept` names kept.
fn collect(
    directory: &Directory,
    scanned: usize,
    kept: usize,
    keep: impl Fn(&OsStr) -> bool,
) -> io::Result<NameList> {
    let mut names = NameList::default();
    let mut seen = 0usize;
    directory.for_each_name(&mut |name| {
        seen += 1;
        if seen > scanned || names.len() >= kept {
            return ControlFlow::Break(());
        }
        if listing::is_listable(name) && keep(name) {
            names.push(name.as_bytes());
        }
        ControlFlow::Continue(())
    })?;
    if seen > scanned || names.len() >= kept {
        log::warn!(
            "listing cut short after {seen} entries ({} names)",
            names.len()
        );
    }
    names.sort();
    Ok(names)
}

impl Selection {
    /// Writes the listing line by line through `emit`; returns the bytes written (line ends
    /// included, as on the wire). An entry that vanished since it was chosen is skipped.
    pub fn write(
        &self,
        storage: &Storage,
        style: ListingStyle,
        writable: bool,
        emit: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<u64> {
        let now = Utc::now();
        let mut line = Vec::with_capacity(256);
        let mut sent = 0u64;
        let format = |line: &mut Vec<u8>, name: &OsStr, entry: &Entry| {
            line.clear();
            match style {
                ListingStyle::Long => listing::write_ls_line(line, name, entry, now),
                ListingStyle::Names => line.extend_from_slice(name.as_bytes()),
                ListingStyle::Facts => listing::write_facts(line, name, entry, writable),
            }
        };
        match self {
            Selection::Single { name, entry } => {
                format(&mut line, name, entry);
                emit(&line)?;
                sent += line.len() as u64 + 2;
            }
            Selection::Entries {
                directory,
                names,
                prefix,
            } => {
                for name in names.iter() {
                    if style == ListingStyle::Names {
                        line.clear();
                        line.extend_from_slice(prefix);
                        line.extend_from_slice(name.as_bytes());
                    } else {
                        let Ok(entry) = directory.entry(storage, name) else {
                            continue;
                        };
                        format(&mut line, name, &entry);
                    }
                    emit(&line)?;
                    sent += line.len() as u64 + 2;
                }
            }
            Selection::Streamed {
                directory,
                pattern,
                prefix,
            } => {
                let mut listed = 0usize;
                directory.for_each_entry(storage, &mut |name, entry| {
                    let keep = pattern
                        .as_ref()
                        .is_none_or(|pattern| pattern.matches(name.as_bytes()));
                    if !keep || !listing::is_listable(name) {
                        return Ok(ControlFlow::Continue(()));
                    }
                    if style == ListingStyle::Names {
                        line.clear();
                        line.extend_from_slice(prefix);
                        line.extend_from_slice(name.as_bytes());
                    } else {
                        format(&mut line, name, entry);
                    }
                    emit(&line)?;
                    sent += line.len() as u64 + 2;
                    listed += 1;
                    Ok(if listed >= MAX_LISTED {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    })
                })?;
            }
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_in_byte_order() {
        let mut names = NameList::default();
        for name in ["b", "a", "B", "ab", "\u{e9}", "_"] {
            names.push(name.as_bytes());
        }
        names.sort();
        let sorted: Vec<_> = names.iter().map(|name| name.to_str().unwrap()).collect();
        assert_eq!(sorted, ["B", "_", "a", "ab", "b", "\u{e9}"]);
    }

    #[test]
    fn the_last_component_is_the_pattern() {
        assert_eq!(last_component(b"/logs/*.log"), b"*.log");
        assert_eq!(last_component(b"*.txt"), b"*.txt");
        assert_eq!(last_component(b"dir/"), b"dir");
    }
}
