//! VirtualPath: the path a session shows, always absolute beneath the served root. Pure: `..`
//! stops at `/`, compared component by component, never by string prefix.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// An absolute path inside the jail, as a list of names (none is empty, `.`, `..` or has `/`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VirtualPath {
    names: Vec<OsString>,
}

impl VirtualPath {
    /// `/`.
    pub fn root() -> VirtualPath {
        VirtualPath::default()
    }

    /// The path a client's argument names, seen from `self` (the working directory): absolute
    /// arguments start at the root, and `..` never climbs above it.
    pub fn resolve(&self, argument: &[u8]) -> VirtualPath {
        let mut names = if argument.first() == Some(&b'/') {
            Vec::new()
        } else {
            self.names.clone()
        };
        for name in argument.split(|&byte| byte == b'/') {
            match name {
                b"" | b"." => {}
                b".." => {
                    names.pop();
                }
                name => names.push(OsString::from_vec(name.to_vec())),
            }
        }
        VirtualPath { names }
    }

    /// The directory holding this path (the root is its own parent).
    pub fn parent(&self) -> VirtualPath {
        let mut names = self.names.clone();
        names.pop();
        VirtualPath { names }
    }

    /// A name inside this directory.
    pub fn child(&self, name: &OsStr) -> VirtualPath {
        let mut names = self.names.clone();
        names.push(name.to_owned());
        VirtualPath { names }
    }

    /// The last name, or `None` for the root.
    pub fn file_name(&self) -> Option<&OsStr> {
        self.names.last().map(OsString::as_os_str)
    }

    /// True for `/`.
    pub fn is_root(&self) -> bool {
        self.names.is_empty()
    }

    /// The path relative to the jail's root directory, `.` for the root itself.
    pub fn relative(&self) -> PathBuf {
        if self.names.is_empty() {
            PathBuf::from(".")
        } else {
            self.names.iter().collect()
        }
    }

    /// `/a/b`, as raw bytes, for PWD and replies.
    pub fn to_bytes(&self) -> Vec<u8> {
        if self.names.is_empty() {
            return b"/".to_vec();
        }
        let mut out = Vec::new();
        for name in &self.names {
            out.push(b'/');
            out.extend_from_slice(name.as_bytes());
        }
        out
    }

    /// For log lines and reply text.
    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.to_bytes()).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(path: &str) -> VirtualPath {
        VirtualPath::root().resolve(path.as_bytes())
    }

    fn check(cwd: &str, argument: &str, expected: &str) {
        let resolved = at(cwd).resolve(argument.as_bytes());
        assert_eq!(resolved.display(), expected, "{cwd} + {argument}");
    }

    #[test]
    fn dot_dot_stops_at_the_root() {
        check("/", "..", "/");
        check("/", "/../..", "/");
        check("/a/b", "../../../../etc/passwd", "/etc/passwd");
        check("/a", "b/../../..", "/");
    }

    #[test]
    fn absolute_and_relative_arguments() {
        check("/a", "b c", "/a/b c");
        check("/a", "/x//y/./z/", "/x/y/z");
        check("/a/b", ".", "/a/b");
    }

    #[test]
    fn relative_paths_never_start_with_a_slash() {
        assert_eq!(at("/").relative(), PathBuf::from("."));
        assert_eq!(at("/../a/b").relative(), PathBuf::from("a/b"));
        assert!(at("/x/../../..").relative().is_relative());
    }

    #[test]
    fn parent_and_child() {
        assert_eq!(at("/a/b").parent(), at("/a"));
        assert_eq!(at("/").parent(), at("/"));
        assert_eq!(at("/a").child(OsStr::new("b")), at("/a/b"));
        assert_eq!(at("/a/b").file_name(), Some(OsStr::new("b")));
    }
}
