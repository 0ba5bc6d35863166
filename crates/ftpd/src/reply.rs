//! Reply: what the server says on the control connection. The wire code sits next to its
//! RFC 959 meaning, and only this module ([`Reply::to_bytes`], [`MultiLineWriter`]) knows about
//! CRLF and the multi-line rule.

use std::io::{self, Write};

use crate::jail::NotRegularFile;
use crate::path::VirtualPath;
use crate::storage::{backend_failure, Unsupported};

/// A reply code, named for what it means (RFC 959 §4.2, RFC 2428, RFC 3659).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Code {
    /// File status okay; about to open data connection.
    OpeningData = 150,
    /// Command okay.
    Ok = 200,
    /// Command not implemented, superfluous at this site.
    Superfluous = 202,
    /// System status, or system help reply.
    SystemStatus = 211,
    /// File status.
    FileStatus = 213,
    /// Help message.
    Help = 214,
    /// NAME system type.
    SystemType = 215,
    /// Service ready for new user.
    ServiceReady = 220,
    /// Service closing control connection.
    Closing = 221,
    /// Data connection open; no transfer in progress.
    NoTransfer = 225,
    /// Closing data connection; requested file action successful.
    TransferComplete = 226,
    /// Entering Passive Mode (h1,h2,h3,h4,p1,p2).
    PassiveMode = 227,
    /// Entering Extended Passive Mode (|||port|).
    ExtendedPassiveMode = 229,
    /// User logged in, proceed.
    LoggedIn = 230,
    /// Security data exchange complete: AUTH accepted, TLS handshake follows (RFC 4217).
    AuthOk = 234,
    /// Requested file action okay, completed.
    FileActionOk = 250,
    /// "PATHNAME" created (also the PWD reply).
    PathCreated = 257,
    /// User name okay, need password.
    NeedPassword = 331,
    /// Requested file action pending further information.
    PendingFurtherInfo = 350,
    /// Service not available, closing control connection.
    ServiceUnavailable = 421,
    /// Can't open data connection.
    CantOpenData = 425,
    /// Connection closed; transfer aborted.
    TransferAborted = 426,
    /// Requested action aborted: local error in processing.
    LocalError = 451,
    /// Requested action not taken: insufficient storage space in system.
    InsufficientStorage = 452,
    /// Syntax error, command unrecognized (or line too long).
    SyntaxError = 500,
    /// Syntax error in parameters or arguments.
    BadArguments = 501,
    /// Command not implemented.
    NotImplemented = 502,
    /// Bad sequence of commands.
    BadSequence = 503,
    /// Command not implemented for that parameter.
    ParameterNotImplemented = 504,
    /// Network protocol not supported (EPRT, EPSV).
    ProtocolNotSupported = 522,
    /// Not logged in.
    NotLoggedIn = 530,
    /// Request denied for policy reasons (RFC 2228; here: TLS required).
    PolicyDenied = 534,
    /// Requested action not taken: file unavailable (not found, no access).
    FileUnavailable = 550,
    /// Requested file action aborted: exceeded storage allocation.
    ExceededStorage = 552,
    /// Requested action not taken: file name not allowed.
    NameNotAllowed = 553,
}

impl Code {
    /// The three digits sent on the wire.
    pub fn number(self) -> u16 {
        self as u16
    }
}

/// One reply: a code and one or more lines of text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    code: Code,
    first: String,
    middle: Vec<Vec<u8>>,
    last: Option<String>,
}

impl Reply {
    /// A single-line reply.
    pub fn new(code: Code, text: impl Into<String>) -> Reply {
        Reply {
            code,
            first: text.into(),
            middle: Vec::new(),
            last: None,
        }
    }

    /// A multi-line reply: `code-first`, the middle lines as given, `code last`.
    pub fn multi(
        code: Code,
        first: impl Into<String>,
        middle: Vec<Vec<u8>>,
        last: impl Into<String>,
    ) -> Reply {
        Reply {
            code,
            first: first.into(),
            middle,
            last: Some(last.into()),
        }
    }

    /// The reply's code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The bytes to send. CR, LF and NUL inside any text become spaces, so nothing a client
    /// named can ever start a reply line of its own; a middle line that would look like a
    /// final line (`NNN `) is indented by one space, as RFC 959 asks.
    pub fn to_bytes(&self) -> Vec<u8> {
        let number = self.code.number();
        let mut out = Vec::with_capacity(64);
        match &self.last {
            None => {
                out.extend_from_slice(format!("{number} ").as_bytes());
                push_clean(&mut out, self.first.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Some(last) => {
                out.extend_from_slice(format!("{number}-").as_bytes());
                push_clean(&mut out, self.first.as_bytes());
                out.extend_from_slice(b"\r\n");
                for line in &self.middle {
                    push_middle_line(&mut out, line);
                }
                out.extend_from_slice(format!("{number} ").as_bytes());
                push_clean(&mut out, last.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        out
    }
}

/// One middle line of a multi-line reply: a line that would look final (`NNN `) is indented
/// by one space, as RFC 959 asks.
fn push_middle_line(out: &mut Vec<u8>, line: &[u8]) {
    if line.len() >= 3 && line[..3].iter().all(u8::is_ascii_digit) {
        out.push(b' ');
    }
    push_clean(out, line);
    out.extend_from_slice(b"\r\n");
}

/// A multi-line reply written as its lines arrive (STAT of a large directory), with the
/// same rules as [`Reply::to_bytes`], so it never has to be held in memory whole.
pub struct MultiLineWriter<W: Write> {
    out: W,
    code: Code,
    line: Vec<u8>,
}

impl<W: Write> MultiLineWriter<W> {
    /// Writes the first line, `code-first`.
    pub fn start(mut out: W, code: Code, first: &str) -> io::Result<MultiLineWriter<W>> {
        let mut line = format!("{}-", code.number()).into_bytes();
        push_clean(&mut line, first.as_bytes());
        line.extend_from_slice(b"\r\n");
        out.write_all(&line)?;
        Ok(MultiLineWriter { out, code, line })
    }

    /// Writes one middle line.
    pub fn line(&mut self, text: &[u8]) -> io::Result<()> {
        self.line.clear();
        push_middle_line(&mut self.line, text);
        self.out.write_all(&self.line)
    }

    /// Writes the final line, `code last`, and flushes.
    pub fn finish(mut self, last: &str) -> io::Result<()> {
        self.line.clear();
        self.line
            .extend_from_slice(format!("{} ", self.code.number()).as_bytes());
        push_clean(&mut self.line, last.as_bytes());
        self.line.extend_from_slice(b"\r\n");
        self.out.write_all(&self.line)?;
        self.out.flush()
    }
}

fn push_clean(out: &mut Vec<u8>, text: &[u8]) {
    out.extend(text.iter().map(|&byte| match byte {
        b'\r' | b'\n' | 0 => b' ',
        other => other,
    }));
}

/// Quotes a path for a 257 reply: inside double quotes, each `"` doubled (RFC 959 appendix II).
pub fn quote_path(path: &[u8]) -> String {
    let text = String::from_utf8_lossy(path);
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// The one map from a storage error on `path` to its reply.
pub fn fs_error(error: &io::Error, path: &VirtualPath) -> Reply {
    use io::ErrorKind;
    let shown = path.display();
    let unavailable = |why: &str| Reply::new(Code::FileUnavailable, format!("{shown}: {why}"));
    if NotRegularFile::is(error) {
        return unavailable("not a regular file");
    }
    if let Some(refusal) = Unsupported::of(error) {
        // REST + STOR is a parameter we cannot take; the rest are files we cannot act on.
        let code = match refusal {
            Unsupported::Resume => Code::ParameterNotImplemented,
            _ => Code::FileUnavailable,
        };
        return Reply::new(code, format!("{shown}: {refusal}"));
    }
    if let Some(failure) = backend_failure(error) {
        return Reply::new(
            Code::LocalError,
            format!("{shown}: object storage failed: {failure}"),
        );
    }
    match error.kind() {
        ErrorKind::NotFound => unavailable("no such file or directory"),
        ErrorKind::PermissionDenied => unavailable("permission denied"),
        ErrorKind::AlreadyExists => unavailable("already exists"),
        ErrorKind::NotADirectory => unavailable("not a directory"),
        ErrorKind::IsADirectory => unavailable("is a directory"),
        ErrorKind::DirectoryNotEmpty => unavailable("directory not empty"),
        ErrorKind::StorageFull => {
            Reply::new(Code::InsufficientStorage, "insufficient storage space")
        }
        ErrorKind::FileTooLarge => Reply::new(Code::ExceededStorage, "exceeded storage allocation"),
        _ => Reply::new(Code::LocalError, format!("{shown}: local error: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(reply: Reply, expected: &str) {
        assert_eq!(String::from_utf8(reply.to_bytes()).unwrap(), expected);
    }

    #[test]
    fn single_line() {
        check(
            Reply::new(Code::SystemType, "UNIX Type: L8"),
            "215 UNIX Type: L8\r\n",
        );
    }

    #[test]
    fn multi_line_indents_lines_that_look_final() {
        let reply = Reply::multi(
            Code::SystemStatus,
            "Features:",
            vec![b" EPSV".to_vec(), b"226 sneaky".to_vec()],
            "End",
        );
        check(
            reply,
            "211-Features:\r\n EPSV\r\n 226 sneaky\r\n211 End\r\n",
        );
    }

    #[test]
    fn control_characters_cannot_inject_lines() {
        check(
            Reply::new(Code::FileUnavailable, "no such file: a\r\n230 b\0"),
            "550 no such file: a  230 b \r\n",
        );
    }

    #[test]
    fn streamed_multi_line_replies_match_whole_ones() {
        let middle = vec![
            b"-rw-r--r-- a".to_vec(),
            b"213 looks final".to_vec(),
            b"x\r\ny".to_vec(),
        ];
        let whole = Reply::multi(
            Code::FileStatus,
            "Status of /:",
            middle.clone(),
            "End of status",
        );
        let mut streamed = Vec::new();
        let mut writer =
            MultiLineWriter::start(&mut streamed, Code::FileStatus, "Status of /:").unwrap();
        for line in &middle {
            writer.line(line).unwrap();
        }
        writer.finish("End of status").unwrap();
        assert_eq!(streamed, whole.to_bytes());
    }

    #[test]
    fn object_storage_errors_map_honestly_issue_13() {
        use crate::storage::Unsupported;
        use s3store::S3Error;
        let path = VirtualPath::root().resolve(b"f");
        let cases: Vec<(io::Error, &str)> =
            vec![
            (S3Error::NotFound.into(), "550 /f: no such file or directory\r\n"),
            (S3Error::AccessDenied.into(), "550 /f: permission denied\r\n"),
            (
                S3Error::Throttled.into(),
                "451 /f: object storage failed: throttled by the server\r\n",
            ),
            (
                S3Error::Server(503).into(),
                "451 /f: object storage failed: server error 503\r\n",
            ),
            (
                S3Error::Timeout.into(),
                "451 /f: object storage failed: timed out\r\n",
            ),
            (
                Unsupported::Resume.into(),
                "504 /f: object storage cannot resume an upload at an offset: upload the whole \
                 file again\r\n",
            ),
            (
                Unsupported::Append.into(),
                "550 /f: object storage cannot append to a file: upload the whole file with \
                 STOR\r\n",
            ),
        ];
        for (error, expected) in cases {
            check(fs_error(&error, &path), expected);
        }
    }

    #[test]
    fn pwd_quoting_doubles_quotes() {
        assert_eq!(quote_path(br#"/a "b""#), r#""/a ""b""""#);
    }
}
