//! Configuration: where the store lives (`StoreConfig`), who we are (`Credentials`) and the
//! `s3://BUCKET/PREFIX` location an operator writes; pure, no I/O.

use std::fmt;
use std::time::Duration;

use url::Url;

/// Everything a [`Store`](crate::Store) needs, fixed when it is built.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The S3 service, e.g. `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:8333`.
    pub endpoint: Url,
    /// The region signed into every request (`us-east-1` for most non-AWS servers).
    pub region: String,
    /// The bucket holding the tree.
    pub bucket: String,
    /// Every key lives under this prefix, so one bucket can hold several trees; empty or
    /// ending in `/` (see [`normalize_prefix`]).
    pub prefix: String,
    /// `http://host/bucket/key` when true, `http://bucket.host/key` otherwise; self-hosted
    /// servers usually want path style.
    pub path_style: bool,
    /// The keys that sign each request.
    pub credentials: Credentials,
    /// The longest any step of a request may wait: connecting, sending, the first byte of the
    /// reply, and each read or write while a body streams.
    pub timeout: Duration,
}

/// An access key pair (and an optional session token); the secret never shows in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id, e.g. `AKIA…`; not secret.
    pub access_key: String,
    /// The secret access key.
    pub secret_key: String,
    /// The session token of temporary credentials.
    pub session_token: Option<String>,
}

/// Why credentials could not be read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingCredential(pub &'static str);

impl fmt::Display for MissingCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "environment variable {} is not set", self.0)
    }
}

impl std::error::Error for MissingCredential {}

impl Credentials {
    /// A key pair without a session token.
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Credentials {
        Credentials {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            session_token: None,
        }
    }

    /// Reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and the optional
    /// `AWS_SESSION_TOKEN`, the names every S3 tool uses, so an operator sets them once.
    pub fn from_env() -> Result<Credentials, MissingCredential> {
        Credentials::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Credentials::from_env`] over any lookup, so it is testable without touching the
    /// process environment; empty values count as unset.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Credentials, MissingCredential> {
        let get = |name: &'static str| lookup(name).filter(|value| !value.is_empty());
        let access_key = get("AWS_ACCESS_KEY_ID").ok_or(MissingCredential("AWS_ACCESS_KEY_ID"))?;
        let secret_key =
            get("AWS_SECRET_ACCESS_KEY").ok_or(MissingCredential("AWS_SECRET_ACCESS_KEY"))?;
        Ok(Credentials {
            access_key,
            secret_key,
            session_token: get("AWS_SESSION_TOKEN"),
        })
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A bucket and the prefix inside it, as named by `s3://BUCKET[/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The bucket name.
    pub bucket: String,
    /// Empty, or the prefix ending in `/`.
    pub prefix: String,
}

/// Why an `s3://` location was refused; the message names the offending text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationError(pub String);

impl fmt::Display for LocationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LocationError {}

/// Splits `s3://BUCKET[/PREFIX]` into bucket and prefix, so an operator names a tree with
/// one setting; the prefix comes back normalized (no leading `/`, one trailing `/`).
pub fn parse_location(text: &str) -> Result<Location, LocationError> {
    let rest = text
        .strip_prefix("s3://")
        .ok_or_else(|| LocationError(format!("'{text}' does not start with s3://")))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if !valid_bucket_name(bucket) {
        return Err(LocationError(format!(
            "'{bucket}' is not a bucket name (3 to 63 of a-z 0-9 . -)"
        )));
    }
    let prefix = normalize_prefix(prefix)
        .ok_or_else(|| LocationError(format!("'{prefix}' is not a usable key prefix")))?;
    Ok(Location {
        bucket: bucket.to_owned(),
        prefix,
    })
}

/// A prefix as the store keeps it: empty, or components joined by single `/` with one at the
/// end; `None` for `.` or `..` components, which S3 would store but a path could never name.
pub fn normalize_prefix(prefix: &str) -> Option<String> {
    let mut normalized = String::new();
    for component in prefix.split('/').filter(|part| !part.is_empty()) {
        if component == "." || component == ".." {
            return None;
        }
        normalized.push_str(component);
        normalized.push('/');
    }
    Some(normalized)
}

/// The S3 bucket naming rules that matter for a URL: 3 to 63 lower-case letters, digits, dots
/// and hyphens, starting and ending with a letter or digit.
fn valid_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<(&str, &str), ()>) {
        let got = parse_location(text)
            .map(|location| (location.bucket, location.prefix))
            .map_err(|_| ());
        let expected = expected.map(|(bucket, prefix)| (bucket.to_owned(), prefix.to_owned()));
        assert_eq!(got, expected, "{text}");
    }

    #[test]
    fn locations_split_into_bucket_and_normalized_prefix() {
        check("s3://bucket", Ok(("bucket", "")));
        check("s3://bucket/", Ok(("bucket", "")));
        check("s3://bucket/ftp", Ok(("bucket", "ftp/")));
        check("s3://bucket/ftp/", Ok(("bucket", "ftp/")));
        check("s3://my.bucket-1/a//b/", Ok(("my.bucket-1", "a/b/")));
        check("s3://bucket//a", Ok(("bucket", "a/")));
    }

    #[test]
    fn bad_locations_are_refused() {
        check("bucket/prefix", Err(()));
        check("S3://bucket", Err(()));
        check("s3://", Err(()));
        check("s3:///prefix", Err(()));
        check("s3://ab", Err(()));
        check("s3://Bucket", Err(()));
        check("s3://-bucket", Err(()));
        check("s3://bucket-", Err(()));
        check("s3://buck_et", Err(()));
        check(&format!("s3://{}", "a".repeat(64)), Err(()));
        check("s3://bucket/a/../b", Err(()));
        check("s3://bucket/./b", Err(()));
    }

    #[test]
    fn the_error_names_the_text() {
        let error = parse_location("http://x").unwrap_err();
        assert!(error.to_string().contains("'http://x'"), "{error}");
    }

    #[test]
    fn credentials_come_from_the_aws_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| value.to_string())
            }
        };
        let full = Credentials::from_lookup(env(&[
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "SK"),
            ("AWS_SESSION_TOKEN", "TOK"),
        ]))
        .unwrap();
        assert_eq!(full.access_key, "AK");
        assert_eq!(full.secret_key, "SK");
        assert_eq!(full.session_token.as_deref(), Some("TOK"));
        let no_token = Credentials::from_lookup(env(&[
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "SK"),
            ("AWS_SESSION_TOKEN", ""),
        ]))
        .unwrap();
        assert_eq!(no_token.session_token, None);
        assert_eq!(
            Credentials::from_lookup(env(&[("AWS_ACCESS_KEY_ID", "AK")])),
            Err(MissingCredential("AWS_SECRET_ACCESS_KEY"))
        );
        assert_eq!(
            Credentials::from_lookup(env(&[])),
            Err(MissingCredential("AWS_ACCESS_KEY_ID"))
        );
    }

    #[test]
    fn secrets_redact_themselves_in_debug() {
        let mut credentials = Credentials::new("AKID", "very-secret");
        credentials.session_token = Some("session-secret".into());
        let shown = format!("{credentials:?}");
        assert!(shown.contains("AKID"), "{shown}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(!shown.contains("session-secret"), "{shown}");
    }
}
