//! Users: who may log in. Accounts come from the users file, one `name:hash[:rw|ro][:home]`
//! a line with an argon2 PHC hash; anonymous (`anonymous` or `ftp`, any password) is
//! read-only. Passwords are only ever compared through the hash.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

/// What a logged-in user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read and list only.
    ReadOnly,
    /// Also upload, make and remove directories, delete and rename.
    ReadWrite,
}

/// Someone who has logged in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The login name (`anonymous` for anonymous users).
    pub name: String,
    /// What they may do.
    pub access: Access,
    /// Their home, a directory beneath the served root (`/` when none is given).
    pub home: String,
}

#[derive(Clone, Debug)]
struct Account {
    hash: String,
    access: Access,
    home: String,
}

/// The accounts the server accepts.
#[derive(Clone, Debug, Default)]
pub struct Users {
    accounts: HashMap<String, Account>,
    anonymous: Option<Access>,
}

impl Users {
    /// Only anonymous users, with the given access.
    pub fn anonymous_only(access: Access) -> Users {
        Users {
            accounts: HashMap::new(),
            anonymous: Some(access),
        }
    }

    /// Reads a users file; errors name the file and line.
    pub fn load(
        path: &Path,
        anonymous: Option<Access>,
        default_access: Access,
    ) -> Result<Users, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read users file {}: {error}", path.display()))?;
        let mut users = Users::parse(&text, default_access)
            .map_err(|error| format!("{}: {error}", path.display()))?;
        users.anonymous = anonymous;
        Ok(users)
    }

    /// Parses users-file text: blank lines and `#` comments are skipped.
    pub fn parse(text: &str, default_access: Access) -> Result<Users, String> {
        let mut accounts = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let number = index + 1;
            let fields: Vec<&str> = line.split(':').collect();
            let (name, hash) = match fields.as_slice() {
                [name, hash, ..] if !name.is_empty() => (*name, *hash),
                _ => return Err(format!("line {number}: expected name:hash[:rw|ro][:home]")),
            };
            PasswordHash::new(hash).map_err(|error| {
                format!("line {number}: '{name}' has a bad password hash: {error}")
            })?;
            let access = match fields.get(2).copied() {
                None | Some("") => default_access,
                Some("rw") => Access::ReadWrite,
                Some("ro") => Access::ReadOnly,
                Some(other) => {
                    return Err(format!("line {number}: access '{other}' is not rw or ro"))
                }
            };
            let home = fields
                .get(3)
                .map_or("/", |home| if home.is_empty() { "/" } else { home });
            if fields.len() > 4 {
                return Err(format!("line {number}: too many fields"));
            }
            accounts.insert(
                name.to_owned(),
                Account {
                    hash: hash.to_owned(),
                    access,
                    home: home.to_owned(),
                },
            );
        }
        Ok(Users {
            accounts,
            anonymous: None,
        })
    }

    /// True when `name` logs in anonymously (and anonymous login is on).
    pub fn is_anonymous(&self, name: &str) -> bool {
        self.anonymous.is_some() && is_anonymous_name(name) && !self.accounts.contains_key(name)
    }

    /// Checks a login. Unknown names cost the same hash check as known ones, so timing does
    /// not tell which names exist.
    pub fn authenticate(&self, name: &str, password: &str) -> Option<Identity> {
        if self.is_anonymous(name) {
            return self.anonymous.map(|access| Identity {
                name: "anonymous".into(),
                access,
                home: "/".into(),
            });
        }
        let account = self.accounts.get(name);
        let hash = account.map_or_else(|| dummy_hash().as_str(), |account| account.hash.as_str());
        let verified = PasswordHash::new(hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        });
        match account {
            Some(account) if verified => Some(Identity {
                name: name.to_owned(),
                access: account.access,
                home: account.home.clone(),
            }),
            _ => None,
        }
    }
}

fn is_anonymous_name(name: &str) -> bool {
    name.eq_ignore_ascii_case("anonymous") || name.eq_ignore_ascii_case("ftp")
}

fn dummy_hash() -> &'static String {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a real password").unwrap_or_default())
}

/// Hashes a password into an argon2 PHC string, with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| format!("cannot hash password: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_verify_through_the_hash_only() {
        let hash = hash_password("s3cret").unwrap();
        assert!(!hash.contains("s3cret"));
        let users = Users::parse(
            &format!("# comment\nalice:{hash}:rw:/alice\nbob:{hash}\n"),
            Access::ReadOnly,
        )
        .unwrap();
        let alice = users.authenticate("alice", "s3cret").unwrap();
        assert_eq!(
            (alice.access, alice.home.as_str()),
            (Access::ReadWrite, "/alice")
        );
        assert_eq!(
            users.authenticate("bob", "s3cret").unwrap().access,
            Access::ReadOnly
        );
        assert!(users.authenticate("alice", "wrong").is_none());
        assert!(users.authenticate("mallory", "s3cret").is_none());
        assert!(
            users.authenticate("anonymous", "x").is_none(),
            "anonymous is off by default with a users file"
        );
    }

    #[test]
    fn anonymous_names() {
        let users = Users::anonymous_only(Access::ReadOnly);
        assert!(users.authenticate("ftp", "guest@").is_some());
        assert!(users.authenticate("Anonymous", "").is_some());
        assert!(users.authenticate("root", "").is_none());
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line() {
        let error = Users::parse("alice\n", Access::ReadOnly).unwrap_err();
        assert!(error.contains("line 1"), "{error}");
        let error = Users::parse("alice:nothash\n", Access::ReadOnly).unwrap_err();
        assert!(error.contains("alice"), "{error}");
    }
}
