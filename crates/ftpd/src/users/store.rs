//! The users store's two shapes: today's lines, `name:hash[:rw|ro][:home]`, and TOML tables,
//! `[accounts.NAME]` with a password hash and a policy, in a users file or in the config file.
//! A users file whose first meaningful line starts with `[` is TOML.

use std::collections::BTreeMap;

use argon2::PasswordHash;
use serde::Deserialize;

use super::policy::{ByteSize, Permission, Permissions, Policy};
use super::UsersError;
use crate::cidr::{AddressRules, Cidr};

/// One `[accounts.NAME]` table. The table named `anonymous` (without a password) is the
/// policy of anonymous logins.
#[derive(Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AccountTable {
    /// The argon2 PHC hash (`ftpd passwd` prints one).
    pub password: Option<String>,
    /// A directory under the root that the user is confined to.
    pub home: Option<String>,
    /// Allowed actions; `rw`/`ro` of the line format are all of them and list+download.
    pub permissions: Option<Vec<Permission>>,
    /// Most bytes under the home.
    pub quota_bytes: Option<ByteSize>,
    /// Most files under the home.
    pub quota_files: Option<u64>,
    /// Download rate cap per second, all sessions together.
    pub download_rate: Option<ByteSize>,
    /// Upload rate cap per second, all sessions together.
    pub upload_rate: Option<ByteSize>,
    /// Most sessions at once.
    pub max_sessions: Option<usize>,
    /// Only from these networks.
    #[serde(default)]
    pub allow_from: Vec<Cidr>,
    /// Never from these networks.
    #[serde(default)]
    pub deny_from: Vec<Cidr>,
}

/// A users file in TOML: only `[accounts.*]` tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersToml {
    #[serde(default)]
    accounts: BTreeMap<String, AccountTable>,
}

/// An account as read: its hash (none for `anonymous`) and its policy.
#[derive(Debug)]
pub(super) struct ReadAccount {
    pub name: String,
    pub hash: Option<String>,
    pub policy: Policy,
}

/// Reads a users file's text in whichever shape it has. `default` is what a line without
/// `rw`/`ro` (or a table without `permissions`) may do.
pub(super) fn parse(text: &str, default: Permissions) -> Result<Vec<ReadAccount>, UsersError> {
    let first = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'));
    if first.is_some_and(|line| line.starts_with('[')) {
        let tables: UsersToml = toml::from_str(text).map_err(|error| UsersError {
            file: None,
            line: toml_line(text, &error),
            problem: error.message().to_owned(),
        })?;
        return from_tables(&tables.accounts, default);
    }
    parse_lines(text, default)
}

/// Turns `[accounts.*]` tables (from a users file or the config file) into accounts.
pub(super) fn from_tables(
    tables: &BTreeMap<String, AccountTable>,
    default: Permissions,
) -> Result<Vec<ReadAccount>, UsersError> {
    tables
        .iter()
        .map(|(name, table)| {
            let problem = |problem: String| UsersError {
                file: None,
                line: None,
                problem: format!("account '{name}': {problem}"),
            };
            let hash = match (&table.password, name.as_str()) {
                (None, "anonymous") => None,
                (None, _) => return Err(problem("no password (run `ftpd passwd NAME`)".into())),
                (Some(_), "anonymous") => {
                    return Err(problem("anonymous logins take no password".into()))
                }
                (Some(hash), _) => {
                    check_hash(hash).map_err(problem)?;
                    Some(hash.clone())
                }
            };
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(problem("a name has no spaces".into()));
            }
            let policy = Policy {
                permissions: table
                    .permissions
                    .as_ref()
                    .map_or(default, |list| list.iter().copied().collect()),
                home: table.home.clone().unwrap_or_else(|| "/".into()),
                quota_bytes: table.quota_bytes.map(|size| size.0),
                quota_files: table.quota_files,
                download_rate: table.download_rate.map(|size| size.0).filter(|r| *r > 0),
                upload_rate: table.upload_rate.map(|size| size.0).filter(|r| *r > 0),
                max_sessions: table.max_sessions,
                addresses: AddressRules {
                    allow: table.allow_from.clone(),
                    deny: table.deny_from.clone(),
                },
            };
            Ok(ReadAccount {
                name: name.clone(),
                hash,
                policy,
            })
        })
        .collect()
}

/// Today's line format: blank lines and `#` comments skipped.
fn parse_lines(text: &str, default: Permissions) -> Result<Vec<ReadAccount>, UsersError> {
    let mut accounts = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at_line = |problem: String| UsersError {
            file: None,
            line: Some(index + 1),
            problem,
        };
        let fields: Vec<&str> = line.split(':').collect();
        let (name, hash) = match fields.as_slice() {
            [name, hash, ..] if !name.is_empty() => (*name, *hash),
            _ => return Err(at_line("expected name:hash[:rw|ro][:home]".into())),
        };
        check_hash(hash)
            .map_err(|error| at_line(format!("'{name}' has a bad password hash: {error}")))?;
        let permissions = match fields.get(2).copied() {
            None | Some("") => default,
            Some("rw") => Permissions::all(),
            Some("ro") => Permissions::read_only(),
            Some(other) => return Err(at_line(format!("access '{other}' is not rw or ro"))),
        };
        let home = fields
            .get(3)
            .map_or("/", |home| if home.is_empty() { "/" } else { home });
        if fields.len() > 4 {
            return Err(at_line("too many fields".into()));
        }
        accounts.push(ReadAccount {
            name: name.to_owned(),
            hash: Some(hash.to_owned()),
            policy: Policy::plain(permissions, home),
        });
    }
    Ok(accounts)
}

fn check_hash(hash: &str) -> Result<(), String> {
    PasswordHash::new(hash)
        .map(|_| ())
        .map_err(|error| format!("bad password hash: {error}"))
}

/// The 1-based line a TOML error points at.
fn toml_line(text: &str, error: &toml::de::Error) -> Option<usize> {
    error
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_carry_the_whole_policy() {
        let hash = super::super::hash_password("pw").unwrap();
        let text = format!(
            "# users\n[accounts.alice]\npassword = \"{hash}\"\nhome = \"/alice\"\n\
             permissions = [\"list\", \"download\", \"upload\"]\nquota-bytes = \"1MiB\"\n\
             quota-files = 10\ndownload-rate = \"10MiB\"\nmax-sessions = 2\n\
             allow-from = [\"10.0.0.0/8\"]\n\n[accounts.anonymous]\npermissions = [\"list\"]\n"
        );
        let accounts = parse(&text, Permissions::read_only()).unwrap();
        let alice = accounts.iter().find(|a| a.name == "alice").unwrap();
        assert_eq!(alice.policy.quota_bytes, Some(1 << 20));
        assert_eq!(alice.policy.download_rate, Some(10 << 20));
        assert!(alice.policy.permissions.allows(Permission::Upload));
        assert!(!alice.policy.permissions.allows(Permission::Delete));
        assert!(!alice.policy.addresses.permits("192.0.2.1".parse().unwrap()));
        let anonymous = accounts.iter().find(|a| a.name == "anonymous").unwrap();
        assert!(anonymous.hash.is_none());
    }

    #[test]
    fn mistakes_are_named() {
        let error = parse("[accounts.bob]\nhome = \"/b\"\n", Permissions::all()).unwrap_err();
        assert!(
            error.problem.contains("bob") && error.problem.contains("password"),
            "{error}"
        );
        let error = parse(
            "[accounts.bob]\npassword = \"x\"\nquota = 3\n",
            Permissions::all(),
        )
        .unwrap_err();
        assert!(error.problem.contains("quota"), "{error}");
        assert_eq!(error.line, Some(3));
        let error = parse(
            "[accounts.bob]\npermissions = [\"fly\"]\n",
            Permissions::all(),
        )
        .unwrap_err();
        assert!(error.problem.contains("fly"), "{error}");
    }
}
