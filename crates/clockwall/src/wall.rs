//! Wall: the display loop. It owns stdout: one table redrawn in place on a terminal, one line
//! per update into a pipe, or a single table with `--once`.

use std::io::{self, ErrorKind, IsTerminal, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::render::{self, Link};
use crate::target::Target;
use crate::watch::{start_watchers, Board};

/// How long after each second boundary the wall redraws.
///
/// Our clock servers send on the boundary; waiting this long lets every column's line for the
/// new second arrive first, so all columns show the same instant and none repeats or skips a
/// second from one redraw to the next.
pub const REDRAW_AFTER_BOUNDARY: Duration = Duration::from_millis(250);

/// The first redraw comes at least this long after start-up, so it can show real times.
pub const FIRST_REDRAW_AFTER: Duration = Duration::from_millis(500);

/// What the wall was asked to do, checked before anything connects.
#[derive(Debug, Clone)]
pub struct Config {
    /// The clocks, one column each, in argument order.
    pub targets: Vec<Target>,
    /// Print one table once every clock has answered (or `timeout` passed), then exit.
    pub once: bool,
    /// How long `once` waits for the clocks.
    pub timeout: Duration,
}

/// How a run of the wall ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `--once`: every clock sent a line in time (exit 0).
    AllAnswered,
    /// `--once`: some clock did not (exit 1).
    SomeSilent,
    /// Whoever read our output went away, as in `clockwall … | head -5` (exit 0).
    OutputClosed,
    /// Ctrl-C or another termination signal (exit 130, as a shell reports SIGINT).
    Interrupted,
}

/// Runs the wall until it is done (`--once`), stdout closes, or a signal arrives.
///
/// Network trouble never ends it: it shows in the table. Errors are only a refused thread, a
/// signal handler that cannot be set, or stdout failing for a reason other than a closed pipe.
pub fn run(config: &Config) -> io::Result<Outcome> {
    let names: Vec<String> = config.targets.iter().map(|t| t.name.clone()).collect();
    let board = Arc::new(Board::new(names.len()));
    start_watchers(&config.targets, &board)?;
    let result = if config.once {
        run_once(&names, &board, config.timeout)
    } else if io::stdout().is_terminal() {
        run_on_terminal(&names, &board)
    } else {
        run_piped(&names, &board)
    };
    match result {
        Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(Outcome::OutputClosed),
        other => other,
    }
}

/// Waits for every clock's first line (or the timeout) and prints one table.
fn run_once(names: &[String], board: &Board, timeout: Duration) -> io::Result<Outcome> {
    let links = board.wait_until(Instant::now() + timeout, |links| {
        links.iter().all(Link::has_line)
    });
    let mut text = render::table(names, &links, Instant::now()).join("\n");
    text.push('\n');
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(if links.iter().all(Link::has_line) {
        Outcome::AllAnswered
    } else {
        Outcome::SomeSilent
    })
}

/// One line per redraw, for pipes and files; ends when the reader goes away.
fn run_piped(names: &[String], board: &Board) -> io::Result<Outcome> {
    let mut stdout = io::stdout().lock();
    let mut due = next_redraw(SystemTime::now() + FIRST_REDRAW_AFTER);
    loop {
        thread::sleep(until(due));
        let mut text = render::line(names, &board.snapshot(), Instant::now());
        text.push('\n');
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
        due = next_redraw(due.max(SystemTime::now()));
    }
}

/// What wakes the terminal loop besides its redraw time.
enum Wake {
    /// Ctrl-C, SIGTERM or SIGHUP: restore the terminal and end.
    Interrupt,
    /// SIGWINCH: the terminal changed size; redraw now at the new width.
    Resize,
}

/// One table redrawn in place, cursor hidden, until Ctrl-C (or SIGTERM/SIGHUP), fitted to the
/// terminal's width and redrawn at once when the terminal is resized.
fn run_on_terminal(names: &[String], board: &Board) -> io::Result<Outcome> {
    let (wake_tx, wakes) = mpsc::channel();
    let interrupt_tx = wake_tx.clone();
    ctrlc::set_handler(move || {
        let _ = interrupt_tx.send(Wake::Interrupt);
    })
    .map_err(|error| io::Error::other(format!("cannot handle ctrl-c: {error}")))?;
    forward_resizes(wake_tx)?;
    let draw = |screen: &mut Screen<io::Stdout>| {
        // The last column stays empty: with auto-wrap off the cursor stays on it after the
        // last character, and the erase-to-end-of-line after each row would wipe that.
        let width = terminal_width().map_or(usize::MAX, |columns| columns - 1);
        screen.draw(&render::table_within(
            names,
            &board.snapshot(),
            Instant::now(),
            width,
        ))
    };
    let mut due = next_redraw(SystemTime::now() + FIRST_REDRAW_AFTER);
    let mut screen = Screen::take(io::stdout())?;
    draw(&mut screen)?;
    loop {
        match wakes.recv_timeout(until(due)) {
            Err(RecvTimeoutError::Timeout) => {
                draw(&mut screen)?;
                due = next_redraw(due.max(SystemTime::now()));
            }
            // Out of turn: the next redraw stays on its second boundary.
            Ok(Wake::Resize) => draw(&mut screen)?,
            Ok(Wake::Interrupt) | Err(RecvTimeoutError::Disconnected) => {
                return Ok(Outcome::Interrupted)
            }
        }
    }
}

/// Sends a [`Wake::Resize`] to `wake_tx` on every SIGWINCH, from a thread that waits for
/// nothing else and lives as long as the process (or until the loop has gone).
fn forward_resizes(wake_tx: mpsc::Sender<Wake>) -> io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGWINCH])
        .map_err(|error| io::Error::other(format!("cannot handle SIGWINCH: {error}")))?;
    thread::Builder::new()
        .name("resize".to_owned())
        .spawn(move || {
            for _ in signals.forever() {
                if wake_tx.send(Wake::Resize).is_err() {
                    break;
                }
            }
        })
        .map(drop)
        .map_err(|error| io::Error::new(error.kind(), format!("cannot start a thread: {error}")))
}

/// The terminal's width in columns, read afresh for every redraw; `None` when stdout is not
/// a terminal or the terminal does not say.
fn terminal_width() -> Option<usize> {
    rustix::termios::tcgetwinsize(io::stdout())
        .ok()
        .map(|size| usize::from(size.ws_col))
        .filter(|&columns| columns > 0)
}

/// The terminal while the wall owns it: cursor hidden and line wrap off (so a narrow window
/// cuts lines instead of wrapping them into a scroll), both restored on drop, whatever ends
/// the run.
struct Screen<W: Write> {
    out: W,
    drawn_lines: usize,
}

impl<W: Write> Screen<W> {
    /// Hides the cursor and turns auto-wrap off.
    fn take(mut out: W) -> io::Result<Screen<W>> {
        out.write_all(b"\x1b[?25l\x1b[?7l")?;
        out.flush()?;
        Ok(Screen {
            out,
            drawn_lines: 0,
        })
    }

    /// Replaces the previous frame with `lines`, in one write so the terminal never shows half.
    fn draw(&mut self, lines: &[String]) -> io::Result<()> {
        let frame = frame(self.drawn_lines, lines);
        self.out.write_all(frame.as_bytes())?;
        self.out.flush()?;
        self.drawn_lines = lines.len();
        Ok(())
    }
}

impl<W: Write> Drop for Screen<W> {
    fn drop(&mut self) {
        // The prompt goes below the table; cursor and wrapping as they were.
        let _ = self.out.write_all(b"\r\n\x1b[?7h\x1b[?25h");
        let _ = self.out.flush();
    }
}

/// The bytes that replace a frame of `previous` lines (0: none yet) with `lines`: back to the
/// first line's start, then each line followed by erase-to-end-of-line. The cursor is left at
/// the end of the last line, so nothing ever scrolls.
fn frame(previous: usize, lines: &[String]) -> String {
    let mut frame = String::from("\r");
    if previous > 1 {
        frame.push_str(&format!("\x1b[{}A", previous - 1));
    }
    frame.push_str(&lines.join("\x1b[K\r\n"));
    frame.push_str("\x1b[K");
    frame
}

/// The first redraw time strictly after `after`: [`REDRAW_AFTER_BOUNDARY`] past a second
/// boundary.
///
/// The loops pass the later of the last due time and now, so a wake-up a hair early (the
/// wall clock and the sleep's clock may disagree by microseconds) cannot redraw twice, and a
/// late one does not skip the next second.
fn next_redraw(after: SystemTime) -> SystemTime {
    let since_epoch = after.duration_since(UNIX_EPOCH).unwrap_or_default();
    let whole = Duration::from_secs(since_epoch.as_secs());
    let mut due = whole + REDRAW_AFTER_BOUNDARY;
    if due <= since_epoch {
        due += Duration::from_secs(1);
    }
    UNIX_EPOCH + due
}

/// Time left until `when`, zero if it has passed.
fn until(when: SystemTime) -> Duration {
    when.duration_since(SystemTime::now()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(millis)
    }

    #[test]
    fn redraws_come_just_after_each_second_boundary() {
        assert_eq!(next_redraw(at(1_600)), at(2_250));
        assert_eq!(next_redraw(at(2_100)), at(2_250));
        assert_eq!(next_redraw(at(2_249)), at(2_250));
        // Exactly on time (or woken a hair early and clamped to the due time): the next one.
        assert_eq!(next_redraw(at(2_250)), at(3_250));
        assert_eq!(next_redraw(at(2_999)), at(3_250));
    }

    #[test]
    fn the_first_redraw_waits_for_the_clocks_to_answer() {
        // Started just before a redraw time: that one is skipped, it would show no times.
        let first = |started: u64| next_redraw(at(started) + FIRST_REDRAW_AFTER);
        assert_eq!(first(10_100), at(11_250));
        assert_eq!(first(10_800), at(12_250));
    }

    #[test]
    fn frames_overwrite_the_previous_frame_in_place() {
        let lines = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        assert_eq!(frame(0, &lines), "\ra\x1b[K\r\nb\x1b[K\r\nc\x1b[K");
        assert_eq!(frame(3, &lines), "\r\x1b[2Aa\x1b[K\r\nb\x1b[K\r\nc\x1b[K");
    }

    #[test]
    fn the_terminal_is_given_back_whatever_ends_the_run() {
        let mut out = Vec::new();
        {
            let mut screen = Screen::take(&mut out).unwrap();
            screen.draw(&["x".to_owned()]).unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("\x1b[?25l\x1b[?7l"), "{text:?}");
        assert!(text.ends_with("\x1b[?7h\x1b[?25h"), "{text:?}");
    }
}
