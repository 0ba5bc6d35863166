//! Command: one control line parsed into what the client asked, with no I/O.
//!
//! Paths stay raw bytes (`Vec<u8>`): FTP is byte-transparent and file names on Unix need not
//! be UTF-8, so a name listed can always be named back.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use chrono::NaiveDateTime;

use crate::reply::{Code, Reply};

/// A path as the client sent it.
pub type RawPath = Vec<u8>;

/// The transfer representation (TYPE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferType {
    /// TYPE A: text, line endings converted to and from CRLF on the wire.
    Ascii,
    /// TYPE I (and L 8): bytes as they are.
    Image,
}

/// EPSV's argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpsvMode {
    /// Any protocol (or the one named, which must match the control connection).
    Open(Option<u8>),
    /// `EPSV ALL`: from now on only EPSV may set up data connections.
    All,
}

/// A password, which never shows in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Everything the server understands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    User(String),
    Pass(Secret),
    Acct,
    Quit,
    Noop,
    Syst,
    Feat,
    Opts(String),
    Help,
    Stat(Option<RawPath>),
    Pwd,
    Cwd(RawPath),
    Cdup,
    Mkd(RawPath),
    Rmd(RawPath),
    Dele(RawPath),
    Rnfr(RawPath),
    Rnto(RawPath),
    Type(TransferType),
    Mode,
    Stru,
    Allo,
    Pasv,
    Epsv(EpsvMode),
    Port(SocketAddr),
    Eprt(SocketAddr),
    List(Option<RawPath>),
    Nlst(Option<RawPath>),
    Mlsd(Option<RawPath>),
    Mlst(Option<RawPath>),
    Size(RawPath),
    Mdtm(RawPath),
    Mfmt(NaiveDateTime, RawPath),
    Retr(RawPath),
    Stor(RawPath),
    Stou,
    Appe(RawPath),
    Rest(u64),
    Abor,
    /// `AUTH TLS` or `AUTH SSL` (RFC 4217).
    Auth,
    /// `PBSZ 0`.
    Pbsz,
    /// `PROT P` (true) or `PROT C` (false).
    Prot(bool),
    /// Clear the command channel: refused.
    Ccc,
}

/// Why a line is not a command we can run; each maps to its reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// An empty line.
    Empty,
    /// A verb we do not implement.
    Unknown(String),
    /// A known verb with arguments that do not parse.
    BadArguments(String),
    /// A known verb with a parameter we do not support (TYPE E, MODE B, STRU R).
    Unsupported(String),
    /// EPRT/EPSV naming a network protocol other than 1 (IPv4) or 2 (IPv6).
    UnknownProtocol,
}

impl ParseError {
    /// The reply the client gets for this error.
    pub fn reply(&self) -> Reply {
        match self {
            ParseError::Empty => Reply::new(Code::SyntaxError, "empty command"),
            ParseError::Unknown(verb) => {
                Reply::new(Code::NotImplemented, format!("{verb} not implemented"))
            }
            ParseError::BadArguments(why) => Reply::new(Code::BadArguments, why.clone()),
            ParseError::Unsupported(what) => Reply::new(
                Code::ParameterNotImplemented,
                format!("{what} not supported"),
            ),
            ParseError::UnknownProtocol => Reply::new(
                Code::ProtocolNotSupported,
                "Network protocol not supported, use (1,2)",
            ),
        }
    }
}

impl Command {
    /// Whether the command may be used before login.
    pub fn allowed_before_login(&self) -> bool {
        matches!(
            self,
            Command::User(_)
                | Command::Pass(_)
                | Command::Acct
                | Command::Quit
                | Command::Noop
                | Command::Syst
                | Command::Feat
                | Command::Opts(_)
                | Command::Help
                | Command::Auth
                | Command::Pbsz
                | Command::Prot(_)
                | Command::Ccc
        )
    }
}

/// Parses one control line (with or without its CRLF or bare LF).
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let line = strip_telnet(line);
    let line = trim_line_end(&line);
    let (verb, argument) = match line.iter().position(|&byte| byte == b' ') {
        Some(space) => (&line[..space], &line[space + 1..]),
        None => (line, &[][..]),
    };
    if verb.is_empty() {
        return Err(ParseError::Empty);
    }
    let verb = String::from_utf8_lossy(verb).to_ascii_uppercase();
    let text = || String::from_utf8_lossy(argument).trim().to_owned();
    let path = || required_path(argument);
    let optional = || optional_path(argument);
    let command = match verb.as_str() {
        "USER" => Command::User(nonempty(text())?),
        "PASS" => Command::Pass(Secret(String::from_utf8_lossy(argument).into_owned())),
        "ACCT" => Command::Acct,
        "QUIT" => Command::Quit,
        "NOOP" => Command::Noop,
        "SYST" => Command::Syst,
        "FEAT" => Command::Feat,
        "OPTS" => Command::Opts(nonempty(text())?),
        "HELP" => Command::Help,
        "STAT" => Command::Stat(optional()),
        "PWD" | "XPWD" => Command::Pwd,
        "CWD" | "XCWD" => Command::Cwd(path()?),
        "CDUP" | "XCUP" => Command::Cdup,
        "MKD" | "XMKD" => Command::Mkd(path()?),
        "RMD" | "XRMD" => Command::Rmd(path()?),
        "DELE" => Command::Dele(path()?),
        "RNFR" => Command::Rnfr(path()?),
        "RNTO" => Command::Rnto(path()?),
        "TYPE" => Command::Type(parse_type(&text())?),
        "MODE" => match text().to_ascii_uppercase().as_str() {
            "S" => Command::Mode,
            "" => return Err(ParseError::BadArguments("MODE needs an argument".into())),
            other => return Err(ParseError::Unsupported(format!("MODE {other}"))),
        },
        "STRU" => match text().to_ascii_uppercase().as_str() {
            "F" => Command::Stru,
            "" => return Err(ParseError::BadArguments("STRU needs an argument".into())),
            other => return Err(ParseError::Unsupported(format!("STRU {other}"))),
        },
        "ALLO" => Command::Allo,
        "PASV" => Command::Pasv,
        "EPSV" => Command::Epsv(parse_epsv(&text())?),
        "PORT" => Command::Port(parse_port(&text())?),
        "EPRT" => Command::Eprt(parse_eprt(&text())?),
        "LIST" => Command::List(listing_path(argument)),
        "NLST" => Command::Nlst(listing_path(argument)),
        "MLSD" => Command::Mlsd(optional()),
        "MLST" => Command::Mlst(optional()),
        "SIZE" => Command::Size(path()?),
        "MDTM" => Command::Mdtm(path()?),
        "MFMT" => parse_mfmt(argument)?,
        "RETR" => Command::Retr(path()?),
        "STOR" => Command::Stor(path()?),
        "STOU" => Command::Stou,
        "APPE" => Command::Appe(path()?),
        "REST" => Command::Rest(text().parse().map_err(|_| {
            ParseError::BadArguments(format!("REST needs a byte offset, not '{}'", text()))
        })?),
        "ABOR" => Command::Abor,
        "AUTH" => match text().to_ascii_uppercase().as_str() {
            "TLS" | "SSL" | "TLS-C" | "TLS-P" => Command::Auth,
            "" => return Err(ParseError::BadArguments("AUTH needs a mechanism".into())),
            other => return Err(ParseError::Unsupported(format!("AUTH {other}"))),
        },
        "PBSZ" => match text().parse::<u64>() {
            Ok(_) => Command::Pbsz,
            Err(_) => {
                return Err(ParseError::BadArguments(format!(
                    "PBSZ needs a number, not '{}'",
                    text()
                )))
            }
        },
        "PROT" => match text().to_ascii_uppercase().as_str() {
            "P" => Command::Prot(true),
            "C" => Command::Prot(false),
            "" => return Err(ParseError::BadArguments("PROT needs a level".into())),
            other => return Err(ParseError::Unsupported(format!("PROT {other}"))),
        },
        "CCC" => Command::Ccc,
        _ => return Err(ParseError::Unknown(verb)),
    };
    Ok(command)
}

/// Removes Telnet commands (IAC IP, IAC DM and friends, sent before ABOR) and a stray
/// Synch mark, keeping an escaped IAC IAC as one 0xFF byte.
fn strip_telnet(line: &[u8]) -> Vec<u8> {
    const IAC: u8 = 0xFF;
    const DATA_MARK: u8 = 0xF2;
    let mut out = Vec::with_capacity(line.len());
    let mut bytes = line.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        match byte {
            IAC => match bytes.next() {
                Some(IAC) => out.push(IAC),
                // WILL/WONT/DO/DONT carry an option byte.
                Some(0xFB..=0xFE) => {
                    bytes.next();
                }
                _ => {}
            },
            DATA_MARK if out.is_empty() => {}
            other => out.push(other),
        }
    }
    out
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\r' | b'\n') {
        end -= 1;
    }
    &line[..end]
}

fn nonempty(text: String) -> Result<String, ParseError> {
    if text.is_empty() {
        Err(ParseError::BadArguments("missing argument".into()))
    } else {
        Ok(text)
    }
}

fn required_path(argument: &[u8]) -> Result<RawPath, ParseError> {
    optional_path(argument).ok_or_else(|| ParseError::BadArguments("missing path".into()))
}

/// A path argument; spaces are part of names, so only an empty argument counts as none.
/// CR, LF and NUL cannot be in a name we act on.
fn optional_path(argument: &[u8]) -> Option<RawPath> {
    if argument.is_empty() || argument.iter().all(|&byte| byte == b' ') {
        return None;
    }
    Some(
        argument
            .iter()
            .copied()
            .filter(|&byte| !matches!(byte, b'\r' | b'\n' | 0))
            .collect(),
    )
}

/// LIST/NLST arguments: leading `ls` options (`-la`, `-al dir`) are ignored.
fn listing_path(argument: &[u8]) -> Option<RawPath> {
    let mut rest = argument;
    while rest.first() == Some(&b'-') {
        match rest.iter().position(|&byte| byte == b' ') {
            Some(space) => rest = &rest[space + 1..],
            None => rest = &[],
        }
    }
    optional_path(rest)
}

fn parse_type(text: &str) -> Result<TransferType, ParseError> {
    let words: Vec<String> = text
        .split_whitespace()
        .map(str::to_ascii_uppercase)
        .collect();
    match words
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["A"] | ["A", "N"] => Ok(TransferType::Ascii),
        ["I"] | ["L", "8"] => Ok(TransferType::Image),
        [] => Err(ParseError::BadArguments("TYPE needs an argument".into())),
        _ => Err(ParseError::Unsupported(format!("TYPE {text}"))),
    }
}

fn parse_epsv(text: &str) -> Result<EpsvMode, ParseError> {
    match text.to_ascii_uppercase().as_str() {
        "" => Ok(EpsvMode::Open(None)),
        "ALL" => Ok(EpsvMode::All),
        "1" => Ok(EpsvMode::Open(Some(1))),
        "2" => Ok(EpsvMode::Open(Some(2))),
        _ => Err(ParseError::UnknownProtocol),
    }
}

/// `PORT h1,h2,h3,h4,p1,p2`.
fn parse_port(text: &str) -> Result<SocketAddr, ParseError> {
    let bad = || ParseError::BadArguments(format!("PORT needs h1,h2,h3,h4,p1,p2, not '{text}'"));
    let numbers: Vec<u8> = text
        .split(',')
        .map(|part| part.trim().parse::<u8>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let [a, b, c, d, high, low] = numbers[..] else {
        return Err(bad());
    };
    let port = u16::from(high) << 8 | u16::from(low);
    Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port))
}

/// `EPRT |1|132.235.1.2|6275|` or `EPRT |2|::1|6275|` (RFC 2428), any delimiter.
fn parse_eprt(text: &str) -> Result<SocketAddr, ParseError> {
    let bad = || ParseError::BadArguments(format!("EPRT needs |proto|address|port|, not '{text}'"));
    let delimiter = text.chars().next().ok_or_else(bad)?;
    let fields: Vec<&str> = text.split(delimiter).collect();
    let [_, protocol, address, port, _] = fields[..] else {
        return Err(bad());
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    let ip: IpAddr = match protocol {
        "1" => IpAddr::V4(address.parse().map_err(|_| bad())?),
        "2" => IpAddr::V6(address.parse().map_err(|_| bad())?),
        _ => return Err(ParseError::UnknownProtocol),
    };
    Ok(SocketAddr::new(ip, port))
}

/// `MFMT YYYYMMDDHHMMSS path` (draft-somers-ftp-mfxx).
fn parse_mfmt(argument: &[u8]) -> Result<Command, ParseError> {
    let bad = || ParseError::BadArguments("MFMT needs YYYYMMDDHHMMSS and a path".into());
    let space = argument
        .iter()
        .position(|&byte| byte == b' ')
        .ok_or_else(bad)?;
    let stamp = std::str::from_utf8(&argument[..space]).map_err(|_| bad())?;
    let time = NaiveDateTime::parse_from_str(stamp, "%Y%m%d%H%M%S").map_err(|_| bad())?;
    Ok(Command::Mfmt(time, required_path(&argument[space + 1..])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, expected: Command) {
        assert_eq!(parse(line.as_bytes()), Ok(expected), "{line:?}");
    }

    fn check_error(line: &str, code: Code) {
        let error = parse(line.as_bytes()).unwrap_err();
        assert_eq!(error.reply().code(), code, "{line:?} gave {error:?}");
    }

    #[test]
    fn verbs_are_case_insensitive_and_accept_bare_lf() {
        check("user alice\r\n", Command::User("alice".into()));
        check("Syst\n", Command::Syst);
        check("xpwd\r\n", Command::Pwd);
        check("XCUP\r\n", Command::Cdup);
        check("XMKD new\r\n", Command::Mkd(b"new".to_vec()));
        check("xrmd old\r\n", Command::Rmd(b"old".to_vec()));
    }

    #[test]
    fn spaces_are_part_of_names() {
        check(
            "RETR my file.txt\r\n",
            Command::Retr(b"my file.txt".to_vec()),
        );
        check("CWD  lead\r\n", Command::Cwd(b" lead".to_vec()));
        check("LIST my dir\r\n", Command::List(Some(b"my dir".to_vec())));
    }

    #[test]
    fn list_options_are_ignored() {
        check("LIST -la\r\n", Command::List(None));
        check("LIST -al dir\r\n", Command::List(Some(b"dir".to_vec())));
        check("NLST -a -l\r\n", Command::Nlst(None));
        check("LIST\r\n", Command::List(None));
    }

    #[test]
    fn types_modes_and_structures() {
        check("TYPE A\r\n", Command::Type(TransferType::Ascii));
        check("TYPE a n\r\n", Command::Type(TransferType::Ascii));
        check("TYPE I\r\n", Command::Type(TransferType::Image));
        check("TYPE L 8\r\n", Command::Type(TransferType::Image));
        check_error("TYPE E\r\n", Code::ParameterNotImplemented);
        check_error("TYPE\r\n", Code::BadArguments);
        check("MODE S\r\n", Command::Mode);
        check_error("MODE B\r\n", Code::ParameterNotImplemented);
        check("STRU F\r\n", Command::Stru);
        check_error("STRU R\r\n", Code::ParameterNotImplemented);
    }

    #[test]
    fn port_and_eprt() {
        check(
            "PORT 127,0,0,1,4,1\r\n",
            Command::Port("127.0.0.1:1025".parse().unwrap()),
        );
        check_error("PORT 127,0,0,1,4\r\n", Code::BadArguments);
        check_error("PORT 300,0,0,1,4,1\r\n", Code::BadArguments);
        check(
            "EPRT |1|127.0.0.1|6275|\r\n",
            Command::Eprt("127.0.0.1:6275".parse().unwrap()),
        );
        check(
            "EPRT |2|::1|6275|\r\n",
            Command::Eprt("[::1]:6275".parse().unwrap()),
        );
        check_error("EPRT |3|x|1|\r\n", Code::ProtocolNotSupported);
        check_error("EPRT |1|::1|1|\r\n", Code::BadArguments);
    }

    #[test]
    fn epsv_forms() {
        check("EPSV\r\n", Command::Epsv(EpsvMode::Open(None)));
        check("EPSV ALL\r\n", Command::Epsv(EpsvMode::All));
        check("EPSV 2\r\n", Command::Epsv(EpsvMode::Open(Some(2))));
        check_error("EPSV 9\r\n", Code::ProtocolNotSupported);
    }

    #[test]
    fn rest_mfmt_and_bad_arguments() {
        check("REST 100\r\n", Command::Rest(100));
        check_error("REST -1\r\n", Code::BadArguments);
        check_error("RETR\r\n", Code::BadArguments);
        let time = NaiveDateTime::parse_from_str("20200102030405", "%Y%m%d%H%M%S").unwrap();
        check(
            "MFMT 20200102030405 a b\r\n",
            Command::Mfmt(time, b"a b".to_vec()),
        );
        check_error("MFMT 2020 a\r\n", Code::BadArguments);
    }

    #[test]
    fn tls_commands() {
        check("AUTH TLS\r\n", Command::Auth);
        check("auth ssl\r\n", Command::Auth);
        check_error("AUTH KERBEROS_V4\r\n", Code::ParameterNotImplemented);
        check("PBSZ 0\r\n", Command::Pbsz);
        check("PROT P\r\n", Command::Prot(true));
        check("PROT C\r\n", Command::Prot(false));
        check_error("PROT S\r\n", Code::ParameterNotImplemented);
        check("CCC\r\n", Command::Ccc);
    }

    #[test]
    fn unknown_and_empty() {
        check_error("SITE CHMOD 777 x\r\n", Code::NotImplemented);
        check_error("\r\n", Code::SyntaxError);
    }

    #[test]
    fn telnet_interrupt_before_abor_is_tolerated() {
        assert_eq!(parse(b"\xFF\xF4\xFF\xF2ABOR\r\n"), Ok(Command::Abor));
        assert_eq!(parse(b"\xF2ABOR\r\n"), Ok(Command::Abor));
    }

    #[test]
    fn non_utf8_paths_stay_bytes() {
        assert_eq!(
            parse(b"RETR caf\xE9\r\n"),
            Ok(Command::Retr(b"caf\xE9".to_vec()))
        );
    }

    #[test]
    fn passwords_never_show_in_debug() {
        let command = parse(b"PASS hunter2\r\n").unwrap();
        assert!(!format!("{command:?}").contains("hunter2"));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any bytes parse to a command or an error, and every error's reply is one clean line.
        #[test]
        fn arbitrary_lines_never_panic(line in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Err(error) = parse(&line) {
                let bytes = error.reply().to_bytes();
                prop_assert!(bytes.ends_with(b"\r\n"));
                let inner = &bytes[..bytes.len() - 2];
                prop_assert!(!inner.iter().any(|&byte| byte == b'\r' || byte == b'\n' || byte == 0));
            }
        }

        /// Verbs followed by anything: paths never keep CR, LF or NUL.
        #[test]
        fn paths_never_carry_line_breaks(
            verb in prop::sample::select(vec!["RETR", "STOR", "CWD", "MKD", "DELE", "LIST", "SIZE", "RNFR"]),
            argument in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut line = verb.as_bytes().to_vec();
            line.push(b' ');
            line.extend_from_slice(&argument);
            let path = match parse(&line) {
                Ok(Command::Retr(path) | Command::Stor(path) | Command::Cwd(path) | Command::Mkd(path)
                    | Command::Dele(path) | Command::Size(path) | Command::Rnfr(path)) => Some(path),
                Ok(Command::List(path)) => path,
                _ => None,
            };
            if let Some(path) = path {
                prop_assert!(!path.iter().any(|&byte| byte == b'\r' || byte == b'\n' || byte == 0));
            }
        }
    }
}
