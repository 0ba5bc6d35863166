//! Policy: what one account may do, as the users store says: permissions as a set, quotas,
//! transfer rates, how many sessions at once, and from where it may log in.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::cidr::AddressRules;

/// One thing a login may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// LIST, NLST, MLSD, MLST, STAT of a path, SIZE, MDTM.
    List,
    /// RETR.
    Download,
    /// STOR of a new name, STOU.
    Upload,
    /// STOR over an existing file, MFMT.
    Overwrite,
    /// APPE, and REST before STOR (resuming an upload).
    Append,
    /// DELE.
    Delete,
    /// RNFR/RNTO.
    Rename,
    /// MKD.
    Mkdir,
    /// RMD.
    Rmdir,
}

impl Permission {
    /// Every permission, in the order they are shown.
    pub const ALL: [Permission; 9] = [
        Permission::List,
        Permission::Download,
        Permission::Upload,
        Permission::Overwrite,
        Permission::Append,
        Permission::Delete,
        Permission::Rename,
        Permission::Mkdir,
        Permission::Rmdir,
    ];

    /// The word for it in the users store, logs and replies.
    pub fn word(self) -> &'static str {
        match self {
            Permission::List => "list",
            Permission::Download => "download",
            Permission::Upload => "upload",
            Permission::Overwrite => "overwrite",
            Permission::Append => "append",
            Permission::Delete => "delete",
            Permission::Rename => "rename",
            Permission::Mkdir => "mkdir",
            Permission::Rmdir => "rmdir",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of permissions.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Permissions(u16);

impl Permissions {
    /// Everything: today's `rw`.
    pub fn all() -> Permissions {
        Permission::ALL.into_iter().collect()
    }

    /// List and download: today's `ro` and anonymous without `--write`.
    pub fn read_only() -> Permissions {
        [Permission::List, Permission::Download]
            .into_iter()
            .collect()
    }

    /// True when `permission` is in the set.
    pub fn allows(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    /// True when nothing beyond listing and downloading is allowed.
    pub fn is_read_only(self) -> bool {
        self.0 & !Permissions::read_only().0 == 0
    }
}

impl FromIterator<Permission> for Permissions {
    fn from_iter<I: IntoIterator<Item = Permission>>(permissions: I) -> Permissions {
        Permissions(permissions.into_iter().fold(0, |bits, p| bits | p.bit()))
    }
}

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<&str> = Permission::ALL
            .into_iter()
            .filter(|p| self.allows(*p))
            .map(Permission::word)
            .collect();
        write!(f, "[{}]", words.join(","))
    }
}

/// A byte count or rate as the users store writes it: `1048576`, `"512 KiB"`, `"10MiB"`,
/// `"1G"` (K/M/G and KiB/MiB/GiB are all powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(value: &str) -> Result<ByteSize, String> {
        let text = value.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("'{value}' is not a size like 10MiB"))?;
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" | "kb" => 1 << 10,
            "m" | "mib" | "mb" => 1 << 20,
            "g" | "gib" | "gb" => 1 << 30,
            "t" | "tib" | "tb" => 1 << 40,
            _ => return Err(format!("'{value}' has an unknown unit (use KiB, MiB, GiB)")),
        };
        number
            .checked_mul(scale)
            .map(ByteSize)
            .ok_or_else(|| format!("'{value}' is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ByteSize, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(u64),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Number(number) => Ok(ByteSize(number)),
            Written::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

/// What one login may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Allowed actions.
    pub permissions: Permissions,
    /// The home, a directory beneath the served root (`/` when none is given).
    pub home: String,
    /// Most bytes stored under the home; an upload past it ends with 552.
    pub quota_bytes: Option<u64>,
    /// Most files stored under the home.
    pub quota_files: Option<u64>,
    /// Bytes per second for downloads, across all of this user's sessions together.
    pub download_rate: Option<u64>,
    /// Bytes per second for uploads, across all of this user's sessions together.
    pub upload_rate: Option<u64>,
    /// Most sessions logged in as this user at once.
    pub max_sessions: Option<usize>,
    /// Where this user may log in from.
    pub addresses: AddressRules,
}

impl Policy {
    /// Nothing but permissions and a home: no quota, no cap, from anywhere.
    pub fn plain(permissions: Permissions, home: &str) -> Policy {
        Policy {
            permissions,
            home: home.to_owned(),
            quota_bytes: None,
            quota_files: None,
            download_rate: None,
            upload_rate: None,
            max_sessions: None,
            addresses: AddressRules::default(),
        }
    }

    /// True when quotas apply to this user.
    pub fn has_quota(&self) -> bool {
        self.quota_bytes.is_some() || self.quota_files.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_and_shortcuts() {
        let all = Permissions::all();
        assert!(Permission::ALL.iter().all(|p| all.allows(*p)));
        let read = Permissions::read_only();
        assert!(read.allows(Permission::Download) && !read.allows(Permission::Upload));
        assert!(read.is_read_only() && !all.is_read_only());
        let upload_only: Permissions = [Permission::Upload].into_iter().collect();
        assert!(!upload_only.allows(Permission::Overwrite));
        assert_eq!(format!("{upload_only:?}"), "[upload]");
    }

    #[test]
    fn sizes_with_units() {
        assert_eq!("10MiB".parse(), Ok(ByteSize(10 << 20)));
        assert_eq!("512 KiB".parse(), Ok(ByteSize(512 << 10)));
        assert_eq!("1g".parse(), Ok(ByteSize(1 << 30)));
        assert_eq!("42".parse(), Ok(ByteSize(42)));
        assert!("ten".parse::<ByteSize>().is_err());
        assert!("1 PiB".parse::<ByteSize>().is_err());
    }
}
