//! Listing: how a directory entry is written for LIST (`ls -l`), NLST and MLSD/MLST. Pure
//! formatting of names and metadata; the session does the reading.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

use cap_std::fs::{Metadata, MetadataExt};
use chrono::{DateTime, Duration, Utc};

/// What a listing needs to know about one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Directory,
    Symlink,
}

/// Facts about one entry, gathered once.
#[derive(Clone, Debug)]
pub struct Entry {
    pub kind: Kind,
    pub mode: u32,
    pub links: u64,
    pub size: u64,
    pub modified: DateTime<Utc>,
    pub device: u64,
    pub inode: u64,
}

impl Entry {
    /// Facts from metadata (as returned for the entry itself, or through a symlink).
    pub fn from_metadata(metadata: &Metadata) -> Entry {
        let kind = if metadata.is_dir() {
            Kind::Directory
        } else if metadata.file_type().is_symlink() {
            Kind::Symlink
        } else {
            Kind::File
        };
        let modified = metadata
            .modified()
            .map(|time| time.into_std())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        Entry {
            kind,
            mode: metadata.mode(),
            links: metadata.nlink(),
            size: metadata.len(),
            modified: modified.into(),
            device: metadata.dev(),
            inode: metadata.ino(),
        }
    }
}

/// True when a name can be listed: a name with CR or LF would break the listing's lines.
pub fn is_listable(name: &OsStr) -> bool {
    !name
        .as_bytes()
        .iter()
        .any(|&byte| byte == b'\r' || byte == b'\n')
}

/// One `ls -l` line (without CRLF): type and permissions, links, owner, group, size, date, name.
/// Dates in the last six months show the time, older or future ones the year, as ls does.
pub fn write_ls_line(out: &mut Vec<u8>, name: &OsStr, entry: &Entry, now: DateTime<Utc>) {
    let type_char = match entry.kind {
        Kind::Directory => 'd',
        Kind::Symlink => 'l',
        Kind::File => '-',
    };
    let mut permissions = String::with_capacity(9);
    for shift in [6u32, 3, 0] {
        let bits = (entry.mode >> shift) & 7;
        permissions.push(if bits & 4 != 0 { 'r' } else { '-' });
        permissions.push(if bits & 2 != 0 { 'w' } else { '-' });
        permissions.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    let recent =
        entry.modified <= now + Duration::hours(1) && now - entry.modified < Duration::days(182);
    let date = if recent {
        entry.modified.format("%b %e %H:%M")
    } else {
        entry.modified.format("%b %e  %Y")
    };
    let _ = write!(
        out,
        "{type_char}{permissions} {:>3} ftp      ftp      {:>12} {date} ",
        entry.links, entry.size
    );
    out.extend_from_slice(name.as_bytes());
}

/// MLSD/MLST facts plus the name (RFC 3659 §7): `type=file;size=N;modify=…;perm=…;unique=…; name`.
pub fn write_facts(out: &mut Vec<u8>, name: &OsStr, entry: &Entry, writable: bool) {
    let (kind, perm) = match (entry.kind, writable) {
        (Kind::Directory, true) => ("dir", "elcmpdf"),
        (Kind::Directory, false) => ("dir", "el"),
        (_, true) => ("file", "radfw"),
        (_, false) => ("file", "r"),
    };
    let _ = write!(
        out,
        "type={kind};size={};modify={};perm={perm};unique={:x}g{:x}; ",
        entry.size,
        entry.modified.format("%Y%m%d%H%M%S"),
        entry.device,
        entry.inode
    );
    out.extend_from_slice(name.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: Kind, modified: &str) -> Entry {
        Entry {
            kind,
            mode: 0o100644,
            links: 1,
            size: 1234,
            modified: DateTime::parse_from_rfc3339(modified)
                .unwrap()
                .with_timezone(&Utc),
            device: 0x801,
            inode: 42,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn recent_files_show_the_time() {
        let mut line = Vec::new();
        write_ls_line(
            &mut line,
            OsStr::new("a b.txt"),
            &entry(Kind::File, "2026-11-03T09:05:00Z"),
            now(),
        );
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "-rw-r--r--   1 ftp      ftp              1234 Nov  3 09:05 a b.txt"
        );
    }

    #[test]
    fn old_files_show_the_year() {
        let mut line = Vec::new();
        let mut dir = entry(Kind::Directory, "2025-01-15T10:00:00Z");
        dir.mode = 0o40755;
        write_ls_line(&mut line, OsStr::new("old"), &dir, now());
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "drwxr-xr-x   1 ftp      ftp              1234 Jan 15  2025 old"
        );
    }

    #[test]
    fn facts_follow_rfc3659() {
        let mut line = Vec::new();
        write_facts(
            &mut line,
            OsStr::new("x"),
            &entry(Kind::File, "2026-11-03T09:05:00Z"),
            false,
        );
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "type=file;size=1234;modify=20261103090500;perm=r;unique=801g2a; x"
        );
    }

    #[test]
    fn names_with_line_breaks_are_not_listable() {
        assert!(!is_listable(OsStr::new("evil\r\n226 ok")));
        assert!(is_listable(OsStr::new("naïve café")));
    }
}
