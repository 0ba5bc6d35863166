//! Users: who may log in. Accounts come from the users file, one `name:hash[:rw|ro][:home]`
//! a line with an argon2 PHC hash; anonymous (`anonymous` or `ftp`, any password) is
//! read-only. Passwords are only ever compared through the hash.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Instant;

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
    ) -> Result<Users, UsersError> {
        let text = std::fs::read_to_string(path).map_err(|error| UsersError {
            file: Some(path.to_owned()),
            line: None,
            problem: format!("cannot read it: {error}"),
        })?;
        let mut users = Users::parse(&text, default_access).map_err(|mut error| {
            error.file = Some(path.to_owned());
            error
        })?;
        users.anonymous = anonymous;
        Ok(users)
    }

    /// Parses users-file text: blank lines and `#` comments are skipped.
    pub fn parse(text: &str, default_access: Access) -> Result<Users, UsersError> {
        let mut accounts = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let number = index + 1;
            let at_line = |problem: String| UsersError {
                file: None,
                line: Some(number),
                problem,
            };
            let fields: Vec<&str> = line.split(':').collect();
            let (name, hash) = match fields.as_slice() {
                [name, hash, ..] if !name.is_empty() => (*name, *hash),
                _ => return Err(at_line("expected name:hash[:rw|ro][:home]".into())),
            };
            PasswordHash::new(hash)
                .map_err(|error| at_line(format!("'{name}' has a bad password hash: {error}")))?;
            let access = match fields.get(2).copied() {
                None | Some("") => default_access,
                Some("rw") => Access::ReadWrite,
                Some("ro") => Access::ReadOnly,
                Some(other) => return Err(at_line(format!("access '{other}' is not rw or ro"))),
            };
            let home = fields
                .get(3)
                .map_or("/", |home| if home.is_empty() { "/" } else { home });
            if fields.len() > 4 {
                return Err(at_line("too many fields".into()));
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

    /// True when logging in as `name` runs a password hash check (every name but anonymous).
    pub fn needs_verification(&self, name: &str) -> bool {
        !self.is_anonymous(name)
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

/// A problem with the users file, located by file and line where known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersError {
    /// The file, when it was read from one.
    pub file: Option<PathBuf>,
    /// The 1-based line, when the problem is on one.
    pub line: Option<usize>,
    /// What is wrong.
    pub problem: String,
}

impl std::fmt::Display for UsersError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("users file")?;
        if let Some(file) = &self.file {
            write!(f, " {}", file.display())?;
        }
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for UsersError {}

/// Bounds how many argon2 verifications run at once. Each takes about 19 MiB for its
/// duration; unbounded, a hundred parallel guessers cost gigabytes. Waiters give up at
/// their own deadline (the login timeout).
#[derive(Debug)]
pub struct VerificationGate {
    running: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

/// A place in the [`VerificationGate`]; dropping it frees the place.
pub struct GatePass<'a> {
    gate: &'a VerificationGate,
}

impl VerificationGate {
    /// A gate for `max` verifications at once (at least one).
    pub fn new(max: usize) -> VerificationGate {
        VerificationGate {
            running: Mutex::new(0),
            freed: Condvar::new(),
            max: max.max(1),
        }
    }

    /// Waits for a place until `deadline`; `None` if none came free in time.
    pub fn enter(&self, deadline: Instant) -> Option<GatePass<'_>> {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while *running >= self.max {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            running = self
                .freed
                .wait_timeout(running, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        *running += 1;
        Some(GatePass { gate: self })
    }
}

impl Drop for GatePass<'_> {
    fn drop(&mut self) {
        let mut running = self
            .gate
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *running -= 1;
        self.gate.freed.notify_one();
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
    fn the_gate_admits_at_most_its_size_and_waiters_time_out() {
        let gate = VerificationGate::new(2);
        let soon = Instant::now() + std::time::Duration::from_millis(50);
        let first = gate.enter(soon).unwrap();
        let _second = gate.enter(soon).unwrap();
        assert!(gate.enter(soon).is_none());
        drop(first);
        assert!(gate.enter(Instant::now()).is_some());
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
        let error = Users::parse("# c\nalice\n", Access::ReadOnly).unwrap_err();
        assert_eq!(error.line, Some(2));
        assert!(error.to_string().contains("line 2"), "{error}");
        let error = Users::parse("alice:nothash\n", Access::ReadOnly).unwrap_err();
        assert!(error.problem.contains("alice"), "{error}");
    }
}
