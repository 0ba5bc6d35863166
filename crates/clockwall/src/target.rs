//! Target: one clock on the wall, a `NAME=HOST:PORT` argument checked before anything connects.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

/// A named clock server to read from, as the user wrote it on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The column heading, any UTF-8 (`東京`).
    pub name: String,
    /// Host name or IP literal, without the brackets an IPv6 literal is written in.
    pub host: String,
    /// TCP port, never 0 (nothing can be reached there).
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}=[{}]:{}", self.name, self.host, self.port)
        } else {
            write!(f, "{}={}:{}", self.name, self.host, self.port)
        }
    }
}

/// Parses one `NAME=HOST:PORT` argument; the error names the argument and what is wrong.
pub fn parse_target(arg: &str) -> Result<Target, String> {
    let expected = "expected NAME=HOST:PORT";
    let (name, address) = arg
        .split_once('=')
        .ok_or_else(|| format!("'{arg}' has no '=': {expected}"))?;
    if name.trim().is_empty() {
        return Err(format!("'{arg}' has an empty name: {expected}"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!(
            "'{}' has a control character in its name",
            arg.escape_debug()
        ));
    }
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("'{arg}' has no port: {expected}"))?;
    let host = match host.strip_prefix('[') {
        Some(bracketed) => bracketed
            .strip_suffix(']')
            .filter(|inner| !inner.is_empty())
            .ok_or_else(|| format!("'{arg}' has a bad IPv6 address: write it like [::1]:8020"))?,
        None if host.contains(':') => {
            return Err(format!(
                "'{arg}': write IPv6 addresses in brackets, like [::1]:8020"
            ))
        }
        None => host,
    };
    if host.is_empty() {
        return Err(format!("'{arg}' has no host: {expected}"));
    }
    if port.is_empty() {
        return Err(format!("'{arg}' has no port: {expected}"));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|&port| port != 0)
        .ok_or_else(|| format!("'{arg}' has a bad port '{port}': expected 1 to 65535"))?;
    Ok(Target {
        name: name.to_owned(),
        host: host.to_owned(),
        port,
    })
}

/// Parses every argument in order; the first bad one, or the second use of a name, is the error.
pub fn parse_targets<S: AsRef<str>>(args: &[S]) -> Result<Vec<Target>, String> {
    let mut seen = HashSet::new();
    let mut targets = Vec::with_capacity(args.len());
    for arg in args {
        let arg = arg.as_ref();
        let target = parse_target(arg)?;
        if !seen.insert(target.name.clone()) {
            return Err(format!(
                "'{arg}' repeats the name '{}': each column needs its own name",
                target.name
            ));
        }
        targets.push(target);
    }
    if targets.is_empty() {
        return Err("no clocks given: expected one or more NAME=HOST:PORT".to_owned());
    }
    Ok(targets)
}

/// Parses `--timeout`: seconds (`3`, `2.5`, `3s`) or milliseconds (`500ms`).
pub fn parse_timeout(value: &str) -> Result<Duration, String> {
    let bad = || format!("'{value}' is not a duration: expected seconds like 3, 2.5s or 500ms");
    let trimmed = value.trim();
    let (number, scale) = if let Some(millis) = trimmed.strip_suffix("ms") {
        (millis, 1e-3)
    } else {
        (trimmed.strip_suffix('s').unwrap_or(trimmed), 1.0)
    };
    let amount: f64 = number.trim().parse().map_err(|_| bad())?;
    Duration::try_from_secs_f64(amount * scale).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(arg: &str, name: &str, host: &str, port: u16) {
        let expected = Target {
            name: name.to_owned(),
            host: host.to_owned(),
            port,
        };
        assert_eq!(parse_target(arg), Ok(expected), "{arg}");
    }

    fn check_error(arg: &str, says: &str) {
        let error = parse_target(arg).expect_err(arg);
        assert!(
            error.contains(&format!("'{arg}'")),
            "{error} names no {arg}"
        );
        assert!(error.contains(says), "{error} does not say {says}");
        assert!(!error.ends_with('.') && !error.contains('\n'), "{error}");
    }

    #[test]
    fn names_hosts_and_ports() {
        check("NewYork=localhost:8010", "NewYork", "localhost", 8010);
        check("Tokyo=[::1]:8020", "Tokyo", "::1", 8020);
        check("東京=localhost:8020", "東京", "localhost", 8020);
        check("London=127.0.0.1:8030", "London", "127.0.0.1", 8030);
        check("a b=clock.example.org:1", "a b", "clock.example.org", 1);
        check("x=[fe80::1%eth0]:65535", "x", "fe80::1%eth0", 65535);
    }

    #[test]
    fn malformed_arguments_are_named() {
        check_error("localhost:8010", "no '='");
        check_error("=localhost:8010", "empty name");
        check_error(" =localhost:8010", "empty name");
        check_error("NY=localhost", "no port");
        check_error("NY=localhost:", "no port");
        check_error("NY=:8010", "no host");
        check_error("NY=localhost:http", "bad port 'http'");
        check_error("NY=localhost:70000", "bad port '70000'");
        check_error("NY=localhost:0", "bad port '0'");
        check_error("NY=::1:8010", "brackets");
        check_error("NY=[]:8010", "IPv6");
        check_error("NY=[::1:8010", "IPv6");
    }

    #[test]
    fn a_repeated_name_is_an_error_naming_the_second_argument() {
        let error = parse_targets(&["a=h:1", "b=h:2", "a=h:3"]).unwrap_err();
        assert!(
            error.contains("'a=h:3'") && error.contains("repeats"),
            "{error}"
        );
        assert_eq!(parse_targets(&["a=h:1", "b=h:1"]).unwrap().len(), 2);
    }

    #[test]
    fn the_first_bad_argument_is_reported() {
        let error = parse_targets(&["a=h:1", "oops", "b="]).unwrap_err();
        assert!(error.contains("'oops'"), "{error}");
    }

    #[test]
    fn targets_print_as_they_were_written() {
        for arg in ["Tokyo=[::1]:8020", "東京=localhost:8020"] {
            assert_eq!(parse_target(arg).unwrap().to_string(), arg);
        }
    }

    #[test]
    fn timeouts_in_seconds_or_milliseconds() {
        assert_eq!(parse_timeout("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_timeout("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("0"), Ok(Duration::ZERO));
        for bad in ["", "soon", "-1", "1h", "NaN"] {
            let error = parse_timeout(bad).unwrap_err();
            assert!(error.contains(&format!("'{bad}'")), "{error}");
        }
    }
}
