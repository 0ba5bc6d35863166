//! Args: the command line as users type it, Go-style `-port 8010` included.
//!
//! clap only knows `--port`; the book's programs use Go's `flag` package, where `-port` is the
//! long form. [`parse`] rewrites the single-dash long flags a command knows before clap sees
//! them, so every binary accepts both spellings without a line of its own.

use std::ffi::OsString;

use clap::{Arg, ArgAction, CommandFactory, Parser};
use clap_complete::Shell;

/// Parses this process's argv into `P`, accepting Go-style single-dash long flags.
///
/// On a bad flag or value clap prints one `error:` line plus usage and exits with code 2;
/// `-h`/`--help` and `--version` print and exit 0.
pub fn parse<P: Parser>() -> P {
    parse_from(std::env::args_os())
}

/// [`parse`] over a given argv (first item is the program name), for tests.
pub fn parse_from<P, I>(args: I) -> P
where
    P: Parser,
    I: IntoIterator<Item = OsString>,
{
    let command = with_documentation_flags(P::command());
    let mut long_names: Vec<String> = command
        .get_arguments()
        .filter_map(|arg| arg.get_long_and_visible_aliases())
        .flatten()
        .map(str::to_owned)
        .collect();
    long_names.extend(["help".to_owned(), "version".to_owned()]);
    let names: Vec<&str> = long_names.iter().map(String::as_str).collect();
    let matches = match command.try_get_matches_from(normalize_go_flags(args, &names)) {
        Ok(matches) => matches,
        Err(error) if !error.use_stderr() => error.exit(),
        Err(error) => usage_error::<P>(error),
    };
    if matches.get_flag(MAN) {
        print_and_exit(|out| clap_mangen::Man::new(P::command()).render(out));
    }
    if let Some(shell) = matches.get_one::<Shell>(COMPLETIONS) {
        let mut command = P::command();
        let name = command.get_name().to_owned();
        print_and_exit(|out| {
            clap_complete::generate(*shell, &mut command, name, out);
            Ok(())
        });
    }
    match P::from_arg_matches(&matches) {
        Ok(parsed) => parsed,
        Err(error) => usage_error::<P>(error),
    }
}

/// `--man` prints the program's man page (roff) and exits.
const MAN: &str = "man";
/// `--completions SHELL` prints a completion script and exits.
const COMPLETIONS: &str = "completions";

/// Every binary's documentation, generated from its own clap definition so it cannot drift:
/// `PROGRAM --man > PROGRAM.1`, `PROGRAM --completions bash > /etc/bash_completion.d/PROGRAM`.
fn with_documentation_flags(command: clap::Command) -> clap::Command {
    command
        .arg(
            Arg::new(MAN)
                .long(MAN)
                .action(ArgAction::SetTrue)
                .exclusive(true)
                .help("Print the man page (roff) and exit"),
        )
        .arg(
            Arg::new(COMPLETIONS)
                .long(COMPLETIONS)
                .value_name("SHELL")
                .value_parser(clap::value_parser!(Shell))
                .exclusive(true)
                .help("Print a completion script for SHELL (bash, zsh, fish, …) and exit"),
        )
}

/// Writes what `write` produces to stdout and exits 0 (a closed stdout is success too).
fn print_and_exit(write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>) -> ! {
    let mut out = std::io::stdout().lock();
    let _ = write(&mut out).and_then(|()| std::io::Write::flush(&mut out));
    std::process::exit(0)
}

/// Exits the way every usage error here does: one `error:` line, the usage, code 2.
///
/// clap prints usage for some errors and not others (a bad value gets none); this prints it
/// always.
pub fn usage_error<P: CommandFactory>(message: impl std::fmt::Display) -> ! {
    let message = message.to_string();
    let first_line = message.lines().next().unwrap_or_default();
    let reason = first_line.strip_prefix("error: ").unwrap_or(first_line);
    let usage = P::command().render_usage();
    eprintln!("error: {reason}\n\n{usage}\n\nFor more information, try '--help'.");
    std::process::exit(2)
}

/// Rewrites `-name` and `-name=value` to `--name…` when `name` is one of `long_names`.
///
/// Short flags (`-h`), unknown words and everything after `--` pass through untouched, so clap
/// still reports a misspelt flag under the name the user typed.
pub fn normalize_go_flags<I>(args: I, long_names: &[&str]) -> Vec<OsString>
where
    I: IntoIterator<Item = OsString>,
{
    let mut normalized = Vec::new();
    let mut after_double_dash = false;
    for (index, arg) in args.into_iter().enumerate() {
        if index == 0 || after_double_dash {
            normalized.push(arg);
            continue;
        }
        if arg == "--" {
            after_double_dash = true;
            normalized.push(arg);
            continue;
        }
        let rewritten = arg.to_str().and_then(|text| {
            let rest = text.strip_prefix('-')?;
            if rest.starts_with('-') {
                return None;
            }
            let name = rest.split_once('=').map_or(rest, |(name, _)| name);
            (name.chars().count() > 1 && long_names.contains(&name)).then(|| format!("-{text}"))
        });
        normalized.push(rewritten.map_or(arg, OsString::from));
    }
    normalized
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &[&str], expected: &[&str]) {
        let args = input.iter().map(OsString::from);
        let got = normalize_go_flags(args, &["port", "host", "help", "version", "tz"]);
        let expected: Vec<OsString> = expected.iter().map(OsString::from).collect();
        assert_eq!(got, expected, "normalising {input:?}");
    }

    #[test]
    fn go_style_long_flags_get_a_second_dash() {
        check(&["clock2", "-port", "8010"], &["clock2", "--port", "8010"]);
        check(&["clock2", "-port=8010"], &["clock2", "--port=8010"]);
        check(&["clock2", "-help"], &["clock2", "--help"]);
        check(&["clock2", "-tz", "UTC"], &["clock2", "--tz", "UTC"]);
    }

    #[test]
    fn clap_forms_short_flags_and_unknown_words_pass_through() {
        check(&["clock2", "--port", "8010"], &["clock2", "--port", "8010"]);
        check(&["clock2", "--port=8010"], &["clock2", "--port=8010"]);
        check(&["clock2", "-h"], &["clock2", "-h"]);
        check(&["clock2", "-bogus"], &["clock2", "-bogus"]);
        check(&["clock2", "-"], &["clock2", "-"]);
        check(&["-port"], &["-port"]);
    }

    #[test]
    fn nothing_after_double_dash_is_rewritten() {
        check(&["x", "--", "-port"], &["x", "--", "-port"]);
    }

    #[derive(Parser, Debug)]
    struct Demo {
        #[arg(long, default_value_t = 8000)]
        port: u16,
        #[arg(long, default_value = "localhost")]
        host: String,
    }

    #[test]
    fn parse_from_accepts_every_spelling() {
        for argv in [
            &["demo", "-port", "8010", "-host", "::1"][..],
            &["demo", "--port", "8010", "--host=::1"],
            &["demo", "-port=8010", "-host=::1"],
        ] {
            let demo: Demo = parse_from(argv.iter().map(OsString::from));
            assert_eq!((demo.port, demo.host.as_str()), (8010, "::1"), "{argv:?}");
        }
    }
}
