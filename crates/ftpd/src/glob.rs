//! A glob here is one path component in which `*`, `?` and `[...]` stand for name bytes.
//!
//! FTP clients send `NLST *.txt` or `LIST /dir/*.log` (mget), so the server
//! expands wildcards in the last path component only: no `**`, no braces, no
//! recursion. Names are raw bytes and are matched byte-wise, shell style:
//! `*` matches any run of bytes, `?` one byte, `[a-z]`/`[!a-z]`/`[^a-z]` one
//! byte in (or not in) a set; `]` first in a class and `-` first or last are
//! literal; a backslash escapes the next byte, also inside a class (a trailing
//! backslash is itself literal). A `[` with no closing `]` is a literal `[`,
//! so no pattern is malformed, only too long. As in the shell and vsftpd, a
//! leading `.` in a name is matched only by a literal `.` at the pattern's start,
//! so `*` does not list dotfiles.

use std::fmt;

/// Longest pattern accepted, in bytes: the longest file name most systems allow.
pub const MAX_PATTERN_LEN: usize = 255;

/// Why a pattern was refused.
///
/// An unclosed `[` is a literal and `[]...]` / `[!]...]` are classes whose
/// first member is `]`, so length is the only reason left to refuse one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternError {
    /// The pattern is longer than `max` bytes; no name could match it anyway.
    TooLong {
        /// Length of the refused pattern, in bytes.
        len: usize,
        /// The limit it broke, [`MAX_PATTERN_LEN`].
        max: usize,
    },
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong { len, max } => write!(f, "glob pattern of {len} bytes exceeds {max}"),
        }
    }
}

impl std::error::Error for PatternError {}

/// One compiled element; every token but `Star` consumes exactly one byte.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Lit(u8),
    Any,
    /// Bit `b` set when byte `b` is in the class (negation already applied).
    Set([u128; 2]),
    Star,
}

impl Token {
    fn matches_byte(&self, b: u8) -> bool {
        match self {
            Self::Lit(c) => *c == b,
            Self::Any => true,
            Self::Set(set) => set[usize::from(b >> 7)] & (1u128 << (b & 127)) != 0,
            Self::Star => false,
        }
    }
}

/// Reads one byte at `i`, honouring a backslash escape; returns it and the next index.
fn member(pat: &[u8], i: usize) -> Option<(u8, usize)> {
    match *pat.get(i)? {
        b'\\' => Some((*pat.get(i + 1)?, i + 2)),
        c => Some((c, i + 1)),
    }
}

/// Parses a class body starting at `i`, just after its `[`.
///
/// Returns the byte set and the index after the closing `]`, or `None` when
/// the class never closes (the caller then treats the `[` as a literal).
fn parse_class(pat: &[u8], mut i: usize) -> Option<([u128; 2], usize)> {
    let negated = matches!(pat.get(i), Some(b'!' | b'^'));
    i += usize::from(negated);
    let mut set = [0u128; 2];
    let mut first = true;
    while first || *pat.get(i)? != b']' {
        first = false;
        let (lo, after) = member(pat, i)?;
        let (hi, next) = match pat.get(after..after + 2) {
            Some([b'-', c]) if *c != b']' => member(pat, after + 1)?,
            _ => (lo, after),
        };
        i = next;
        for b in lo..=hi {
            set[usize::from(b >> 7)] |= 1u128 << (b & 127);
        }
    }
    if negated {
        set = [!set[0], !set[1]];
    }
    Some((set, i + 1))
}

/// True when `component` contains an unescaped glob metacharacter (`*`, `?`,
/// or a `[` that starts a well-formed class).
///
/// Lets the server tell `LIST *.log` (expand) from `LIST report[1` (a plain
/// name) before touching the file system. Quadratic at worst, and only for
/// many unclosed `[`; FTP command lines are short.
#[must_use]
pub fn has_magic(component: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&c) = component.get(i) {
        match c {
            b'\\' => i += 1,
            b'*' | b'?' => return true,
            b'[' if parse_class(component, i + 1).is_some() => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// A compiled pattern for one path component.
///
/// Compiled once per command so the same pattern can be tested against every
/// name in a directory without re-parsing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    tokens: Vec<Token>,
}

impl Pattern {
    /// Compiles `component` (no `/` expected), refusing only patterns longer
    /// than [`MAX_PATTERN_LEN`] so a hostile client cannot make matching costly.
    ///
    /// # Errors
    ///
    /// [`PatternError::TooLong`] when `component` exceeds [`MAX_PATTERN_LEN`].
    pub fn compile(component: &[u8]) -> Result<Pattern, PatternError> {
        if component.len() > MAX_PATTERN_LEN {
            let (len, max) = (component.len(), MAX_PATTERN_LEN);
            return Err(PatternError::TooLong { len, max });
        }
        let mut tokens = Vec::with_capacity(component.len());
        let mut i = 0;
        while let Some(&c) = component.get(i) {
            let (token, next) = match c {
                b'*' => (Token::Star, i + 1),
                b'?' => (Token::Any, i + 1),
                b'[' => parse_class(component, i + 1)
                    .map_or((Token::Lit(b'['), i + 1), |(set, n)| (Token::Set(set), n)),
                // A trailing backslash has nothing to escape and stands for itself.
                _ => member(component, i)
                    .map_or((Token::Lit(b'\\'), i + 1), |(b, n)| (Token::Lit(b), n)),
            };
            i = next;
            // `**` is the same as `*`; collapsing keeps matching cheaper.
            if token != Token::Star || tokens.last() != Some(&Token::Star) {
                tokens.push(token);
            }
        }
        Ok(Pattern { tokens })
    }

    /// True when the whole of `name` matches, so the server can filter a listing.
    ///
    /// Greedy two-pointer scan that remembers only the last `*`: a mismatch
    /// retries from there with the star eating one more byte. Earlier stars
    /// never need revisiting because every other token eats exactly one byte,
    /// so the cost is O(name × pattern) at worst with no exponential blow-up.
    #[must_use]
    pub fn matches(&self, name: &[u8]) -> bool {
        let toks = &self.tokens;
        if name.first() == Some(&b'.') && toks.first() != Some(&Token::Lit(b'.')) {
            return false;
        }
        let (mut p, mut n) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while let Some(&b) = name.get(n) {
            match toks.get(p) {
                Some(Token::Star) => {
                    p += 1;
                    star = Some((p, n));
                }
                Some(t) if t.matches_byte(b) => (p, n) = (p + 1, n + 1),
                _ => match star.as_mut() {
                    Some((sp, sn)) => {
                        *sn += 1;
                        (p, n) = (*sp, *sn);
                    }
                    None => return false,
                },
            }
        }
        toks[p..].iter().all(|t| *t == Token::Star)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pattern: &[u8], name: &[u8], expected: bool) {
        let p = Pattern::compile(pattern).unwrap();
        let (ps, ns) = (pattern.escape_ascii(), name.escape_ascii());
        assert_eq!(p.matches(name), expected, "pattern {ps} name {ns}");
    }

    #[test]
    fn table() {
        #[rustfmt::skip]
        let cases: &[(&[u8], &[u8], bool)] = &[
            (b"*", b"abc", true), (b"*", b"", true), (b"*.txt", b"a.txt", true),
            (b"*.txt", b"a.txt.gz", false), (b"a*b*c", b"aXbYc", true), (b"a*b", b"ab", true),
            (b"a**b", b"axxb", true), (b"*ab", b"aab", true), (b"a*", b"b", false),
            (b"?", b"a", true), (b"?", b"", false), (b"??", b"a", false), (b"a?c", b"abc", true),
            (b"[abc]", b"b", true), (b"[abc]", b"d", false), (b"[a-c]x", b"cx", true),
            (b"[a-c]", b"d", false), (b"[!a-c]", b"d", true), (b"[!a-c]", b"b", false),
            (b"[^a-c]", b"z", true), (b"[]a]", b"]", true), (b"[]a]", b"a", true),
            (b"[!]]", b"]", false), (b"[!]]", b"x", true), (b"[-a]", b"-", true),
            (b"[a-]", b"-", true), (b"[a-]", b"b", false), (b"[z-a]", b"m", false),
            (b"[ab", b"[ab", true), (b"[ab", b"a", false), (b"[]", b"[]", true),
            (b"\\*", b"*", true), (b"\\*", b"a", false), (b"a\\?", b"a?", true),
            (b"\\[a]", b"[a]", true), (b"[\\]]", b"]", true), (b"x\\", b"x\\", true),
            (b"*", b".hidden", false), (b"?hidden", b".hidden", false),
            (b"[.]hidden", b".hidden", false), (b"*.txt", b".txt", false),
            (b".*", b".hidden", true), (b"\\.*", b".hidden", true), (b"a*", b"a.b", true),
            (b"*\xff", b"a\xff", true), (b"?\x80", b"\xfe\x80", true),
            (b"[\x80-\xff]", b"\xc3", true), (b"[!\x80-\xff]", b"\xc3", false),
            (b"", b"", true), (b"", b"a", false),
        ];
        for &(pattern, name, expected) in cases {
            check(pattern, name, expected);
        }
    }

    #[test]
    fn magic_and_errors() {
        #[rustfmt::skip]
        let cases: &[(&[u8], bool)] = &[
            (b"*.txt", true), (b"a?", true), (b"[ab]", true), (b"[!]]", true),
            (b"plain.txt", false), (b"[ab", false), (b"[]", false), (b"\\*", false),
            (b"a\\[b]", false), (b"\\", false), (b"[\\]", false), (b"", false),
        ];
        for &(component, expected) in cases {
            assert_eq!(has_magic(component), expected, "{component:?}");
        }
        let err = Pattern::compile(&[b'a'; 256]).unwrap_err();
        assert_eq!(err, PatternError::TooLong { len: 256, max: 255 });
        assert_eq!(err.to_string(), "glob pattern of 256 bytes exceeds 255");
        assert!(Pattern::compile(&[b'a'; 255]).is_ok());
    }

    #[test]
    fn pathological_is_linear() {
        let p = Pattern::compile(b"*a*a*a*a*a*a*a*b").unwrap();
        let name = [b'a'; 40];
        assert!((0..20_000).all(|_| !p.matches(&name)));
    }

    fn reference(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|k| reference(rest, &n[k..])),
            Some((b'?', rest)) => !n.is_empty() && reference(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && reference(rest, &n[1..]),
        }
    }

    #[test]
    fn agrees_with_reference() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |m: usize| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            usize::try_from(seed >> 48).unwrap() % m
        };
        for _ in 0..5000 {
            let pattern: Vec<u8> = (0..next(7)).map(|_| b"ab.*?"[next(5)]).collect();
            let name: Vec<u8> = (0..next(7)).map(|_| b"ab."[next(3)]).collect();
            let dot_ok = name.first() != Some(&b'.') || pattern.first() == Some(&b'.');
            check(&pattern, &name, dot_ok && reference(&pattern, &name));
        }
    }
}
