//! Listing: how a directory entry is written for LIST (`ls -l`), NLST and MLSD/MLST. Pure
//! formatting of names and metadata; the session does the reading.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

use cap_std::fs::{Metadata, MetadataExt};
use chrono::{DateTime, Datelike, Duration, Timelike, Utc};

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

/// Month abbreviations as `ls` prints them in the C locale.
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// One `ls -l` line (without CRLF): type and permissions, links, owner, group, size, date, name.
/// Dates in the last six months show the time, older or future ones the year, as ls does.
/// Written field by field with no allocation and no strftime parsing: a LIST of 20,000
/// entries calls this 20,000 times (issue 7).
pub fn write_ls_line(out: &mut Vec<u8>, name: &OsStr, entry: &Entry, now: DateTime<Utc>) {
    let mut mode = [b'-'; 10];
    mode[0] = match entry.kind {
        Kind::Directory => b'd',
        Kind::Symlink => b'l',
        Kind::File => b'-',
    };
    for (group, shift) in [6u32, 3, 0].into_iter().enumerate() {
        let bits = (entry.mode >> shift) & 7;
        let at = 1 + group * 3;
        for (offset, (bit, letter)) in [(4, b'r'), (2, b'w'), (1, b'x')].into_iter().enumerate() {
            if bits & bit != 0 {
                mode[at + offset] = letter;
            }
        }
    }
    out.extend_from_slice(&mode);
    let modified = entry.modified;
    let recent = modified <= now + Duration::hours(1) && now - modified < Duration::days(182);
    let _ = write!(
        out,
        " {:>3} ftp      ftp      {:>12} {} {:>2} ",
        entry.links,
        entry.size,
        MONTHS[modified.month0() as usize % 12],
        modified.day()
    );
    let _ = if recent {
        write!(out, "{:02}:{:02} ", modified.hour(), modified.minute())
    } else {
        write!(out, " {:04} ", modified.year())
    };
    out.extend_from_slice(name.as_bytes());
}

/// `YYYYMMDDHHMMSS`, the RFC 3659 time-val, without strftime parsing.
fn write_time_val(out: &mut Vec<u8>, time: DateTime<Utc>) {
    let _ = write!(
        out,
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        time.year(),
        time.month(),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    );
}

/// MLSD/MLST facts plus the name (RFC 3659 §7): `type=file;size=N;modify=…;perm=…;unique=…; name`.
pub fn write_facts(out: &mut Vec<u8>, name: &OsStr, entry: &Entry, writable: bool) {
    let (kind, perm) = match (entry.kind, writable) {
        (Kind::Directory, true) => ("dir", "elcmpdf"),
        (Kind::Directory, false) => ("dir", "el"),
        (_, true) => ("file", "radfw"),
        (_, false) => ("file", "r"),
    };
    let _ = write!(out, "type={kind};size={};modify=", entry.size);
    write_time_val(out, entry.modified);
    let _ = write!(
        out,
        ";perm={perm};unique={:x}g{:x}; ",
        entry.device, entry.inode
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
    fn every_permission_bit_and_kind_is_shown() {
        let mut line = Vec::new();
        let mut link = entry(Kind::Symlink, "2026-11-25T11:59:00Z");
        link.mode = 0o120751;
        link.links = 1234;
        link.size = 0;
        write_ls_line(&mut line, OsStr::new("ln"), &link, now());
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "lrwxr-x--x 1234 ftp      ftp                 0 Nov 25 11:59 ln"
        );
    }

    #[test]
    fn future_files_show_the_year() {
        let mut line = Vec::new();
        write_ls_line(
            &mut line,
            OsStr::new("f"),
            &entry(Kind::File, "2027-03-01T00:00:00Z"),
            now(),
        );
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "-rw-r--r--   1 ftp      ftp              1234 Mar  1  2027 f"
        );
    }

    #[test]
    fn names_with_line_breaks_are_not_listable() {
        assert!(!is_listable(OsStr::new("evil\r\n226 ok")));
        assert!(is_listable(OsStr::new("naïve café")));
    }
}
