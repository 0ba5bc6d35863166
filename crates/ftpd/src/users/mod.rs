//! Users: who may log in, and what each may do. Accounts come from the users store (a users
//! file of `name:hash[:rw|ro][:home]` lines or `[accounts.NAME]` TOML tables, and tables in
//! the config file); anonymous (`anonymous` or `ftp`, any password) has a policy too.
//! Passwords are only ever compared through the argon2 hash.

mod policy;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

pub use policy::{ByteSize, Permission, Permissions, Policy};
pub use store::AccountTable;

/// Someone who has logged in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The login name (`anonymous` for anonymous users).
    pub name: String,
    /// What they may do, where, and how much.
    pub policy: Arc<Policy>,
}

impl Identity {
    /// Their home, a directory beneath the served root.
    pub fn home(&self) -> &str {
        &self.policy.home
    }

    /// True when `permission` is theirs.
    pub fn may(&self, permission: Permission) -> bool {
        self.policy.permissions.allows(permission)
    }
}

#[derive(Clone, Debug)]
struct Account {
    hash: String,
    policy: Arc<Policy>,
}

/// The accounts the server accepts.
#[derive(Clone, Debug, Default)]
pub struct Users {
    accounts: HashMap<String, Account>,
    anonymous: Option<Arc<Policy>>,
}

/// Where the accounts come from, as the settings name them.
#[derive(Debug, Clone, Copy)]
pub struct UsersSource<'a> {
    /// `--users FILE`, lines or TOML tables.
    pub file: Option<&'a Path>,
    /// `[accounts.*]` tables in the config file.
    pub tables: &'a BTreeMap<String, AccountTable>,
    /// Whether anonymous logins are on.
    pub anonymous: bool,
    /// What accounts (and anonymous) may do when their entry does not say: `--write` makes
    /// it everything, otherwise list and download.
    pub default: Permissions,
}

impl Users {
    /// Only anonymous users, with the given permissions.
    pub fn anonymous_only(permissions: Permissions) -> Users {
        Users {
            accounts: HashMap::new(),
            anonymous: Some(Arc::new(Policy::plain(permissions, "/"))),
        }
    }

    /// Reads the users file (if any) and the config file's tables; errors name the file and
    /// line. An account in both is an error, as is an `anonymous` table with anonymous off.
    pub fn load(source: UsersSource<'_>) -> Result<Users, UsersError> {
        let mut read = match source.file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| UsersError {
                    file: Some(path.to_owned()),
                    line: None,
                    problem: format!("cannot read it: {error}"),
                })?;
                store::parse(&text, source.default).map_err(|mut error| {
                    error.file = Some(path.to_owned());
                    error
                })?
            }
            None => Vec::new(),
        };
        let from_config = store::from_tables(source.tables, source.default)?;
        for account in &from_config {
            if read.iter().any(|other| other.name == account.name) {
                return Err(UsersError {
                    file: source.file.map(Path::to_owned),
                    line: None,
                    problem: format!(
                        "account '{}' is both here and in the config file",
                        account.name
                    ),
                });
            }
        }
        read.extend(from_config);
        let mut users = Users::default();
        let mut anonymous_policy = Policy::plain(source.default, "/");
        for account in read {
            match account.hash {
                None => anonymous_policy = account.policy,
                Some(hash) => {
                    users.accounts.insert(
                        account.name,
                        Account {
                            hash,
                            policy: Arc::new(account.policy),
                        },
                    );
                }
            }
        }
        users.anonymous = source.anonymous.then(|| Arc::new(anonymous_policy));
        Ok(users)
    }

    /// Parses users-file text in either shape (for tests and `check-config`).
    pub fn parse(text: &str, default: Permissions) -> Result<Users, UsersError> {
        let mut users = Users::default();
        for account in store::parse(text, default)? {
            if let Some(hash) = account.hash {
                users.accounts.insert(
                    account.name,
                    Account {
                        hash,
                        policy: Arc::new(account.policy),
                    },
                );
            }
        }
        Ok(users)
    }

    /// How many accounts there are (anonymous aside).
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// True when there is no account (anonymous aside).
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// The anonymous policy, when anonymous logins are on.
    pub fn anonymous_policy(&self) -> Option<&Policy> {
        self.anonymous.as_deref()
    }

    /// True when logging in as `name` runs a password hash check (every name but anonymous).
    pub fn needs_verification(&self, name: &str) -> bool {
        !self.is_anonymous(name)
    }

    /// True when `name` logs in anonymously (and anonymous login is on).
    pub fn is_anonymous(&self, name: &str) -> bool {
        self.anonymous.is_some() && is_anonymous_name(name) && !self.accounts.contains_key(name)
    }

    /// Checks a login from `client`. Unknown names, and names that may not log in from
    /// `client`, cost the same hash check as a wrong password and fail the same way, so
    /// neither timing nor reply tells which names exist or where they are allowed.
    pub fn authenticate(&self, name: &str, password: &str, client: IpAddr) -> Option<Identity> {
        if self.is_anonymous(name) {
            return self.anonymous.as_ref().and_then(|policy| {
                policy.addresses.permits(client).then(|| Identity {
                    name: "anonymous".into(),
                    policy: Arc::clone(policy),
                })
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
            Some(account) if verified && account.policy.addresses.permits(client) => {
                Some(Identity {
                    name: name.to_owned(),
                    policy: Arc::clone(&account.policy),
                })
            }
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

    fn here() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    #[test]
    fn accounts_verify_through_the_hash_only() {
        let hash = hash_password("s3cret").unwrap();
        assert!(!hash.contains("s3cret"));
        let users = Users::parse(
            &format!("# comment\nalice:{hash}:rw:/alice\nbob:{hash}\n"),
            Permissions::read_only(),
        )
        .unwrap();
        let alice = users.authenticate("alice", "s3cret", here()).unwrap();
        assert_eq!(
            (alice.policy.permissions, alice.home()),
            (Permissions::all(), "/alice")
        );
        let bob = users.authenticate("bob", "s3cret", here()).unwrap();
        assert!(bob.policy.permissions.is_read_only());
        assert!(users.authenticate("alice", "wrong", here()).is_none());
        assert!(users.authenticate("mallory", "s3cret", here()).is_none());
        assert!(
            users.authenticate("anonymous", "x", here()).is_none(),
            "anonymous is off by default with a users file"
        );
    }

    #[test]
    fn a_user_is_refused_outside_their_networks_like_a_wrong_password() {
        let hash = hash_password("pw").unwrap();
        let text =
            format!("[accounts.carol]\npassword = \"{hash}\"\nallow-from = [\"10.0.0.0/8\"]\n");
        let users = Users::parse(&text, Permissions::all()).unwrap();
        assert!(users
            .authenticate("carol", "pw", "10.1.1.1".parse().unwrap())
            .is_some());
        assert!(users.authenticate("carol", "pw", here()).is_none());
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
        let users = Users::anonymous_only(Permissions::read_only());
        assert!(users.authenticate("ftp", "guest@", here()).is_some());
        assert!(users.authenticate("Anonymous", "", here()).is_some());
        assert!(users.authenticate("root", "", here()).is_none());
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line() {
        let error = Users::parse("# c\nalice\n", Permissions::read_only()).unwrap_err();
        assert_eq!(error.line, Some(2));
        assert!(error.to_string().contains("line 2"), "{error}");
        let error = Users::parse("alice:nothash\n", Permissions::read_only()).unwrap_err();
        assert!(error.problem.contains("alice"), "{error}");
    }
}
