//! Hook: one hook run under its deadline. A command hook gets the event in its environment
//! and as JSON on stdin, in a process group of its own that is killed (the whole group) when
//! it overruns; an HTTP hook gets the JSON in a POST, retried with backoff on a failed
//! connection or a 5xx. [`HookChildren`] knows every hook process still running, so a
//! stopping server leaves none behind.

use std::collections::BTreeSet;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Event;

/// Most bytes kept of a hook's stdout or stderr; the rest is read and thrown away.
const MAX_OUTPUT: usize = 4096;

/// Longest text of a hook's line shown in a reply or a log line.
const MAX_SHOWN: usize = 200;

/// Backoff before the second and third HTTP tries.
const HTTP_BACKOFF: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(800)];

/// Where an event goes: a command line (split on whitespace, no shell) or an HTTP(S) URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    /// Run `program args…` with the event in the environment and on stdin.
    Command {
        /// The program (a path, or a name looked up in `PATH`).
        program: String,
        /// Its arguments.
        args: Vec<String>,
    },
    /// POST the event's JSON here.
    Http {
        /// An `http://` or `https://` URL.
        url: String,
    },
}

impl FromStr for Hook {
    type Err = String;

    fn from_str(value: &str) -> Result<Hook, String> {
        let value = value.trim();
        if value.starts_with("http://") || value.starts_with("https://") {
            if value.contains(char::is_whitespace) {
                return Err(format!("hook URL '{value}' contains a space"));
            }
            return Ok(Hook::Http { url: value.into() });
        }
        let mut words = value.split_whitespace().map(str::to_owned);
        let program = words
            .next()
            .ok_or_else(|| String::from("a hook needs a command line or an http(s) URL"))?;
        Ok(Hook::Command {
            program,
            args: words.collect(),
        })
    }
}

impl Hook {
    /// The hook as `check-config` shows it: a URL's user and password and its query (where
    /// webhook tokens live) replaced by `REDACTED`, so no secret is printed and the text still
    /// loads as a hook.
    pub fn redacted(&self) -> Hook {
        let Hook::Http { url } = self else {
            return self.clone();
        };
        let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
        let (authority, path) = rest
            .find('/')
            .map_or((rest, ""), |slash| rest.split_at(slash));
        let host = match authority.rsplit_once('@') {
            Some((_, host)) => format!("REDACTED@{host}"),
            None => authority.to_owned(),
        };
        let path = match path.split_once('?') {
            Some((path, _)) => format!("{path}?REDACTED"),
            None => path.to_owned(),
        };
        Hook::Http {
            url: format!("{scheme}://{host}{path}"),
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hook::Command { program, args } => {
                f.write_str(program)?;
                args.iter().try_for_each(|arg| write!(f, " {arg}"))
            }
            Hook::Http { url } => f.write_str(url),
        }
    }
}

serde_as_string!(Hook);

/// How a hook run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Exit 0, or an HTTP 2xx.
    Ok,
    /// A non-zero exit or another HTTP status; the hook's first line (stdout, else stderr;
    /// the response body for HTTP), sanitized and bounded.
    Refused(String),
    /// It overran its timeout (a command's process group was killed).
    TimedOut,
    /// It could not run at all (no such program, no connection).
    Failed(String),
}

impl Verdict {
    /// The verdict as a fixed metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Refused(_) => "refused",
            Verdict::TimedOut => "timeout",
            Verdict::Failed(_) => "failed",
        }
    }
}

/// The process groups of running hook commands, so they can be killed when the server stops.
/// The lock is held only to add or remove a number.
#[derive(Debug, Default)]
pub struct HookChildren {
    groups: Mutex<BTreeSet<i32>>,
}

impl HookChildren {
    fn add(&self, group: i32) {
        self.lock().insert(group);
    }

    fn remove(&self, group: i32) {
        self.lock().remove(&group);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<i32>> {
        self.groups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// SIGKILLs every running hook's process group; returns how many there were.
    pub fn kill_all(&self) -> usize {
        let groups: Vec<i32> = self.lock().iter().copied().collect();
        for group in &groups {
            kill_group(*group);
        }
        groups.len()
    }
}

fn kill_group(group: i32) {
    if let Some(pid) = rustix::process::Pid::from_raw(group) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Runs `hook` for `event`, giving it until `timeout` (each try, for HTTP; `retry` allows
/// three tries for HTTP).
pub fn run(
    hook: &Hook,
    event: &Event,
    timeout: Duration,
    retry: bool,
    children: &HookChildren,
) -> Verdict {
    match hook {
        Hook::Command { program, args } => run_command(program, args, event, timeout, children),
        Hook::Http { url } => {
            let tries = if retry { 1 + HTTP_BACKOFF.len() } else { 1 };
            let (mut verdict, mut again) = post(url, event, timeout);
            for pause in HTTP_BACKOFF.iter().take(tries - 1) {
                if !again {
                    break;
                }
                std::thread::sleep(*pause);
                (verdict, again) = post(url, event, timeout);
            }
            verdict
        }
    }
}

/// One POST of the event, and whether another try is worth it: after a failed connection,
/// a timeout or a 5xx, yes; a 2xx or 4xx is an answer.
fn post(url: &str, event: &Event, timeout: Duration) -> (Verdict, bool) {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let response = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(event.to_json());
    match response {
        Ok(response) if response.status().is_success() => (Verdict::Ok, false),
        Ok(response) => {
            let status = response.status().as_u16();
            let mut body = Vec::new();
            let _ = response
                .into_body()
                .into_reader()
                .take(MAX_OUTPUT as u64)
                .read_to_end(&mut body);
            let line = first_line(&body);
            let text = if line.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {line}")
            };
            (Verdict::Refused(text), status >= 500)
        }
        Err(ureq::Error::Timeout(_)) => (Verdict::TimedOut, true),
        Err(error) => (Verdict::Failed(bounded(&error.to_string())), true),
    }
}

fn run_command(
    program: &str,
    args: &[String],
    event: &Event,
    timeout: Duration,
    children: &HookChildren,
) -> Verdict {
    let deadline = Instant::now() + timeout;
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(event.environment())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: a timeout kills the hook and whatever it started.
        .process_group(0);
    // SAFETY: runs in the child between fork and exec and only calls prctl, which is
    // async-signal-safe and allocates nothing.
    unsafe {
        // Should the server die without stopping, the hook goes with it.
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return Verdict::Failed(format!("cannot run {program}: {error}")),
    };
    let group = child.id() as i32;
    children.add(group);
    let verdict = supervise(&mut child, event, deadline, group);
    children.remove(group);
    verdict
}

/// Feeds the child its JSON, collects the start of its output and waits for it until the
/// deadline, killing its process group then.
fn supervise(child: &mut Child, event: &Event, deadline: Instant, group: i32) -> Verdict {
    if let Some(mut stdin) = child.stdin.take() {
        // The pipe is non-blocking so a hook that never reads stdin cannot hold us; an event
        // (paths are at most one 4 KiB control line) fits a pipe's buffer anyway.
        let _ = rustix::io::ioctl_fionbio(&stdin, true);
        let mut json = event.to_json();
        json.push('\n');
        let _ = stdin.write_all(json.as_bytes());
    }
    let mut stdout = child.stdout.take().map(Output::new);
    let mut stderr = child.stderr.take().map(Output::new);
    let mut pause = Duration::from_millis(2);
    let status: ExitStatus = loop {
        stdout.iter_mut().for_each(Output::drain);
        stderr.iter_mut().for_each(Output::drain);
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(error) => {
                kill_group(group);
                let _ = child.wait();
                return Verdict::Failed(format!("cannot wait for the hook: {error}"));
            }
        }
        let now = Instant::now();
        if now >= deadline {
            kill_group(group);
            let _ = child.wait();
            return Verdict::TimedOut;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    stdout.iter_mut().for_each(Output::drain);
    stderr.iter_mut().for_each(Output::drain);
    if status.success() {
        return Verdict::Ok;
    }
    let kept = |output: Option<&Vec<u8>>| output.map(|kept| first_line(kept)).unwrap_or_default();
    let mut said = kept(stdout.as_ref().map(|output| &output.kept));
    if said.is_empty() {
        said = kept(stderr.as_ref().map(|output| &output.kept));
    }
    Verdict::Refused(if said.is_empty() {
        format!("hook {status}")
    } else {
        said
    })
}

/// The start of a child's stdout or stderr, read without blocking.
struct Output<R> {
    pipe: R,
    kept: Vec<u8>,
    open: bool,
}

impl<R: Read + std::os::fd::AsFd> Output<R> {
    fn new(pipe: R) -> Output<R> {
        let open = rustix::io::ioctl_fionbio(&pipe, true).is_ok();
        Output {
            pipe,
            kept: Vec::new(),
            open,
        }
    }

    /// Reads whatever is there now, keeping the first [`MAX_OUTPUT`] bytes.
    fn drain(&mut self) {
        let mut buffer = [0u8; 4096];
        while self.open {
            match self.pipe.read(&mut buffer) {
                Ok(0) => self.open = false,
                Ok(count) => {
                    let room = MAX_OUTPUT.saturating_sub(self.kept.len());
                    self.kept.extend_from_slice(&buffer[..count.min(room)]);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
}

/// The first non-empty line of `bytes`, without control characters, at most [`MAX_SHOWN`]
/// characters: safe in a reply or a log line.
pub fn first_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line = text
        .split(['\r', '\n'])
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or_default();
    bounded(line)
}

fn bounded(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_SHOWN)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_a_url_are_not_shown() {
        let hook: Hook = "https://bot:s3cret@hooks.example.org/in?token=abc"
            .parse()
            .unwrap();
        assert_eq!(
            hook.redacted().to_string(),
            "https://REDACTED@hooks.example.org/in?REDACTED"
        );
        let plain: Hook = "https://hooks.example.org/in".parse().unwrap();
        assert_eq!(plain.redacted(), plain);
        let command: Hook = "sh /etc/ftpd/hook.sh token".parse().unwrap();
        assert_eq!(command.redacted(), command);
    }
    use crate::events::EventKind;

    fn event() -> Event {
        Event::new(
            EventKind::Upload,
            "ann",
            "127.0.0.1:1".parse().unwrap(),
            "/a".into(),
        )
    }

    #[test]
    fn hooks_parse_as_commands_or_urls() {
        assert_eq!(
            "/usr/bin/notify --to ops".parse::<Hook>().unwrap(),
            Hook::Command {
                program: "/usr/bin/notify".into(),
                args: vec!["--to".into(), "ops".into()],
            }
        );
        assert_eq!(
            "https://example.org/hook".parse::<Hook>().unwrap(),
            Hook::Http {
                url: "https://example.org/hook".into()
            }
        );
        assert!("  ".parse::<Hook>().is_err());
        let shown = "sh -c x".parse::<Hook>().unwrap().to_string();
        assert_eq!(shown, "sh -c x");
    }

    #[test]
    fn first_lines_are_sanitized_and_bounded() {
        assert_eq!(first_line(b"\n  closed \x1b[31m\r\nmore"), "closed [31m");
        assert_eq!(first_line(&[b'x'; 1000]).len(), MAX_SHOWN);
        assert_eq!(first_line(b""), "");
    }

    #[test]
    fn a_command_hook_reads_its_event_and_its_verdict_is_its_exit() {
        let children = HookChildren::default();
        let timeout = Duration::from_secs(10);
        let ok = "sh -c read_line_then_exit".parse::<Hook>().unwrap();
        // Whitespace splitting gives `sh -c read_line_then_exit`: an unknown command, exit 127.
        assert!(matches!(
            run(&ok, &event(), timeout, false, &children),
            Verdict::Refused(_)
        ));
        let script = Hook::Command {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                "read line; test \"$FTPD_PATH\" = /a && case $line in *'\"path\":\"/a\"'*) exit 0;; esac; echo bad; exit 1"
                    .into(),
            ],
        };
        assert_eq!(
            run(&script, &event(), timeout, false, &children),
            Verdict::Ok
        );
        let refuse = Hook::Command {
            program: "sh".into(),
            args: vec!["-c".into(), "echo 'closed for maintenance'; exit 1".into()],
        };
        assert_eq!(
            run(&refuse, &event(), timeout, false, &children),
            Verdict::Refused("closed for maintenance".into())
        );
        let missing = "/nonexistent/hook".parse::<Hook>().unwrap();
        assert!(matches!(
            run(&missing, &event(), timeout, false, &children),
            Verdict::Failed(_)
        ));
    }

    #[test]
    fn an_overrunning_hook_is_killed_at_its_timeout() {
        let children = HookChildren::default();
        let slow = Hook::Command {
            program: "sh".into(),
            args: vec!["-c".into(), "sleep 30".into()],
        };
        let started = Instant::now();
        assert_eq!(
            run(
                &slow,
                &event(),
                Duration::from_millis(300),
                false,
                &children
            ),
            Verdict::TimedOut
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(children.kill_all(), 0);
    }
}
