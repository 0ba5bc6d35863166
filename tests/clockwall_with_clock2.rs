//! clockwall against three real clock2 servers in three time zones, on ephemeral ports:
//! `--once`, the piped updates, a server killed and restarted on its port, `| head -5`, and
//! the terminal mode on a real pseudo-terminal through tmux.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use chrono::{Offset, Utc};
use chrono_tz::Tz;
use testkit::{
    clock_line_seconds, require_tool, run_with_timeout, seconds_apart, workspace_binary,
    LineClient, Server,
};

/// Column name and tz database name of each server; Kolkata's half-hour offset catches a wall
/// that gets minutes wrong.
const ZONES: [(&str, &str); 3] = [
    ("NewYork", "America/New_York"),
    ("東京", "Asia/Tokyo"),
    ("Kolkata", "Asia/Kolkata"),
];

fn start_clock2(zone: &str, port: u16) -> Server {
    let port = port.to_string();
    Server::start(
        workspace_binary("clock2"),
        &["--host", "127.0.0.1", "--port", &port, "--tz", zone],
    )
}

fn start_clocks() -> Vec<Server> {
    ZONES
        .iter()
        .map(|(_, zone)| start_clock2(zone, 0))
        .collect()
}

fn wall_args(servers: &[Server]) -> Vec<String> {
    ZONES
        .iter()
        .zip(servers)
        .map(|((name, _), server)| format!("{name}={}", server.addr))
        .collect()
}

/// The zone's offset from UTC in seconds, as it is now.
fn utc_offset(zone: &str) -> i64 {
    let tz: Tz = zone.parse().expect("known zone");
    i64::from(
        Utc::now()
            .with_timezone(&tz)
            .offset()
            .fix()
            .local_minus_utc(),
    )
}

/// A time of day shown for `zone`, taken back to UTC seconds since midnight.
fn to_utc(shown: u32, zone: &str) -> u32 {
    let seconds = i64::from(shown) - utc_offset(zone);
    u32::try_from(seconds.rem_euclid(86_400)).expect("time of day")
}

fn utc_now_of_day() -> u32 {
    u32::try_from(Utc::now().timestamp().rem_euclid(86_400)).expect("time of day")
}

/// Each column's value in a piped line `NAME=TEXT  NAME=TEXT…`, in `ZONES` order.
fn fields(line: &str) -> Vec<String> {
    let mut values = Vec::new();
    for (index, (name, _)) in ZONES.iter().enumerate() {
        let start = line
            .find(&format!("{name}="))
            .unwrap_or_else(|| panic!("no {name} column in {line:?}"))
            + name.len()
            + 1;
        let end = ZONES
            .get(index + 1)
            .and_then(|(next, _)| line.find(&format!("  {next}=")))
            .unwrap_or(line.len());
        values.push(line[start..end].to_owned());
    }
    values
}

/// The UTC second every column of a piped line shows, if every column shows a clock time and
/// they all agree on it.
fn common_instant(line: &str) -> Option<u32> {
    let instants: Vec<u32> = fields(line)
        .iter()
        .zip(ZONES)
        .map(|(value, (_, zone))| clock_line_seconds(value).map(|shown| to_utc(shown, zone)))
        .collect::<Option<_>>()?;
    instants
        .iter()
        .all(|&instant| instant == instants[0])
        .then_some(instants[0])
}

fn next_line(client: &LineClient) -> String {
    client
        .next_line(Duration::from_secs(3))
        .expect("clockwall prints a line every second")
}

/// Reads lines until `wanted` holds for one, failing after `timeout`.
fn wait_for(client: &LineClient, timeout: Duration, wanted: impl Fn(&[String]) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some(line) = client.next_line(left) else {
            break;
        };
        if wanted(&fields(&line)) {
            return line;
        }
        seen.push(line);
    }
    panic!("no wanted line within {timeout:?}; saw {seen:#?}");
}

#[test]
fn once_shows_each_zone_its_own_time() {
    let servers = start_clocks();
    let mut command = Command::new(workspace_binary("clockwall"));
    command.arg("--once").args(wall_args(&servers));
    let output = run_with_timeout(command, Duration::from_secs(10));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let headings: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(headings, ["NewYork", "東京", "Kolkata"], "{stdout}");
    let times: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(times.len(), 3, "{stdout}");
    let now = utc_now_of_day();
    for (time, (name, zone)) in times.iter().zip(ZONES) {
        let shown = clock_line_seconds(time).unwrap_or_else(|| panic!("{name}: {time:?}"));
        let off_by = seconds_apart(to_utc(shown, zone), now);
        assert!(
            off_by <= 2,
            "{name} shows {time}, {off_by} s from now in {zone}"
        );
    }
}

#[test]
fn piped_updates_show_one_instant_per_line_a_second_apart() {
    let servers = start_clocks();
    let mut command = Command::new(workspace_binary("clockwall"));
    command.args(wall_args(&servers));
    let client = LineClient::spawn(command);
    let first = wait_for(&client, Duration::from_secs(4), |_| true);
    let mut previous = common_instant(&first);
    for _ in 0..3 {
        let line = next_line(&client);
        let instant = common_instant(&line)
            .unwrap_or_else(|| panic!("columns disagree or are not times: {line:?}"));
        if let Some(previous) = previous {
            // No column repeats or skips a second from one redraw to the next.
            assert_eq!(
                (instant + 86_400 - previous) % 86_400,
                1,
                "after {previous}: {line}"
            );
        }
        previous = Some(instant);
    }
}

#[test]
fn a_killed_server_goes_offline_and_comes_back_on_its_port() {
    let mut servers = start_clocks();
    let mut command = Command::new(workspace_binary("clockwall"));
    command.args(wall_args(&servers));
    let client = LineClient::spawn(command);
    let is_time = |value: &String| clock_line_seconds(value).is_some();
    wait_for(&client, Duration::from_secs(4), |values| {
        values.iter().all(is_time)
    });

    let port = servers[1].addr.port();
    servers[1].kill();
    wait_for(&client, Duration::from_secs(3), |values| {
        values[1] == "offline" && is_time(&values[0]) && is_time(&values[2])
    });
    // The others keep ticking while it is gone.
    let before = fields(&next_line(&client));
    let after = fields(&next_line(&client));
    assert_eq!(after[1], "offline", "{after:?}");
    for column in [0, 2] {
        assert_ne!(before[column], after[column], "column {column} stopped");
    }

    // clock2 binds with SO_REUSEADDR, so it gets its port straight back; clockwall's next
    // attempt (1 s, then 2 s, then 4 s after the hang-up) finds it.
    servers[1] = start_clock2(ZONES[1].1, port);
    let line = wait_for(&client, Duration::from_secs(8), |values| {
        values.iter().all(is_time)
    });
    assert!(
        common_instant(&line).is_some(),
        "columns disagree after the restart: {line}"
    );
}

/// clockwall's `watch::SILENCE_TIMEOUT` (this package does not link clockwall): how long a
/// connected server may send no line before its column goes offline.
const SILENCE_TIMEOUT: Duration = Duration::from_secs(3);

#[test]
fn a_stopped_server_goes_offline_and_comes_back_when_continued_issue_15() {
    let servers = start_clocks();
    let mut command = Command::new(workspace_binary("clockwall"));
    command.args(wall_args(&servers));
    let client = LineClient::spawn(command);
    let is_time = |value: &String| clock_line_seconds(value).is_some();
    wait_for(&client, Duration::from_secs(4), |values| {
        values.iter().all(is_time)
    });

    // A stopped process keeps its socket open and its kernel keeps accepting: only the
    // silence tells the wall it is gone.
    servers[1].signal("STOP");
    let stopped = Instant::now();
    wait_for(
        &client,
        SILENCE_TIMEOUT + Duration::from_secs(3),
        |values| values[1] == "offline" && is_time(&values[0]) && is_time(&values[2]),
    );
    // Its last line came at most a second before the stop, so the silence rule (and not
    // something quicker) is what took it offline.
    assert!(
        stopped.elapsed() >= SILENCE_TIMEOUT - Duration::from_secs(1),
        "offline {:?} after SIGSTOP",
        stopped.elapsed()
    );

    servers[1].signal("CONT");
    let line = wait_for(&client, Duration::from_secs(6), |values| {
        values.iter().all(is_time)
    });
    assert!(
        common_instant(&line).is_some(),
        "columns disagree after SIGCONT: {line}"
    );
}

#[test]
fn piped_into_head_ends_quietly() {
    let servers = start_clocks();
    let script = format!(
        "set -o pipefail; '{}' {} | head -5",
        workspace_binary("clockwall").display(),
        wall_args(&servers).join(" ")
    );
    let mut command = Command::new("bash");
    command.args(["-c", &script]);
    let output = run_with_timeout(command, Duration::from_secs(15));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(stderr.is_empty(), "clockwall complained: {stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().count(), 5, "{stdout}");
    for line in stdout.lines() {
        assert_eq!(fields(line).len(), 3, "{line}");
    }
}

/// A tmux server of its own (`-L`), so tests never touch the user's sessions; killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// A detached 100×10 session running `shell_command`.
    fn start(shell_command: &str) -> Tmux {
        // One tmux server per test: tests run in parallel, and a shared server would let one
        // test capture or kill another's pane.
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        require_tool("tmux", "tmux");
        let tmux = Tmux {
            socket: format!(
                "clockwall-e2e-{}-{}",
                std::process::id(),
                STARTED.fetch_add(1, Ordering::Relaxed)
            ),
        };
        let output = tmux.run(&["new-session", "-d", "-x", "100", "-y", "10", shell_command]);
        assert!(output.status.success(), "tmux new-session: {output:?}");
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket]).args(args);
        run_with_timeout(command, Duration::from_secs(10))
    }

    /// The visible screen, one string per row, trailing blank rows dropped.
    fn screen(&self) -> Vec<String> {
        let output = self.run(&["capture-pane", "-p"]);
        assert!(output.status.success(), "tmux capture-pane: {output:?}");
        let mut rows: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|row| row.trim_end().to_owned())
            .collect();
        while rows.last().is_some_and(|row| row.is_empty()) {
            rows.pop();
        }
        rows
    }

    /// A pane format variable, e.g. `cursor_flag`.
    fn pane_flag(&self, name: &str) -> String {
        let output = self.run(&["display-message", "-p", &format!("#{{{name}}}")]);
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Polls the screen until `wanted` holds, failing after `timeout`.
    fn wait_for_screen(
        &self,
        timeout: Duration,
        wanted: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if wanted(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "screen not as wanted after {timeout:?}:\n{}",
                screen.join("\n")
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

#[test]
fn on_a_terminal_one_table_is_redrawn_in_place() {
    let servers = start_clocks();
    // bash stays after clockwall ends, to show its exit status below the table.
    let shell_command = format!(
        "bash -c \"'{}' {}; echo exit \\$?; sleep 60\"",
        workspace_binary("clockwall").display(),
        wall_args(&servers).join(" ")
    );
    let tmux = Tmux::start(&shell_command);
    let times_row = |screen: &[String]| -> Option<Vec<String>> {
        let row = screen.get(2)?;
        let times: Vec<String> = row.split_whitespace().map(str::to_owned).collect();
        (times.len() == 3 && times.iter().all(|t| clock_line_seconds(t).is_some())).then_some(times)
    };
    let first = tmux.wait_for_screen(Duration::from_secs(5), |screen| times_row(screen).is_some());
    let first_times = times_row(&first);
    let second = tmux.wait_for_screen(Duration::from_secs(5), |screen| {
        times_row(screen).is_some_and(|times| Some(times) != first_times)
    });
    let second_times = times_row(&second);
    let later = tmux.wait_for_screen(Duration::from_secs(3), |screen| {
        times_row(screen).is_some_and(|times| Some(times) != second_times)
    });
    // Three redraws later the screen still holds exactly one table: headings, rule, times.
    assert_eq!(later.len(), 3, "not one table:\n{}", later.join("\n"));
    let headings: Vec<&str> = later[0].split_whitespace().collect();
    assert_eq!(headings, ["NewYork", "東京", "Kolkata"]);
    // Aligned by display width: 東京 is four columns wide, so Kolkata starts at column 36.
    assert_eq!(
        later[0],
        format!("NewYork{}東京{}Kolkata", " ".repeat(11), " ".repeat(14))
    );
    assert!(
        later[1].chars().all(|c| c == '─' || c == ' '),
        "{}",
        later[1]
    );
    assert_eq!(
        tmux.pane_flag("cursor_flag"),
        "0",
        "cursor shown while running"
    );

    tmux.run(&["send-keys", "C-c"]);
    let after = tmux.wait_for_screen(Duration::from_secs(3), |screen| {
        screen.iter().any(|row| row == "exit 130")
    });
    assert_eq!(after.len(), 4, "{}", after.join("\n"));
    assert_eq!(tmux.pane_flag("cursor_flag"), "1", "cursor not restored");
}

/// Display columns of `text`, counting a CJK character as two (enough for these tests).
fn display_width(text: &str) -> usize {
    text.chars()
        .map(|c| {
            if ('\u{3000}'..='\u{9fff}').contains(&c) {
                2
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn on_a_resized_terminal_the_table_fits_and_stays_aligned_issue_15() {
    let servers = start_clocks();
    // Twenty display columns: wider than a column gets on a 41-column terminal.
    let long = "東京都千代田区丸の内";
    let names = ["NewYork", long, "Kolkata"];
    let args: Vec<String> = names
        .iter()
        .zip(&servers)
        .map(|(name, server)| format!("{name}={}", server.addr))
        .collect();
    let shell_command = format!(
        "bash -c \"'{}' {}; echo exit \\$?; sleep 60\"",
        workspace_binary("clockwall").display(),
        args.join(" ")
    );
    let tmux = Tmux::start(&shell_command);
    let has_times = |screen: &[String]| {
        screen.get(2).is_some_and(|row| {
            let times: Vec<&str> = row.split_whitespace().collect();
            times.len() == 3 && times.iter().all(|t| clock_line_seconds(t).is_some())
        })
    };
    let wide = tmux.wait_for_screen(Duration::from_secs(5), |screen| {
        has_times(screen) && screen[0].contains(long)
    });
    assert_eq!(
        wide[0],
        format!("NewYork{}{long}{}Kolkata", " ".repeat(11), " ".repeat(2)),
        "100 columns hold every name whole"
    );

    // 41 columns: the wall leaves the last one empty, and 40 less two gaps is three columns of
    // 12; the long name is cut by display width, never through a character, and every row
    // keeps the same column starts.
    let output = tmux.run(&["resize-window", "-x", "41", "-y", "10"]);
    assert!(output.status.success(), "tmux resize-window: {output:?}");
    let resized = Instant::now();
    let narrow = tmux.wait_for_screen(Duration::from_secs(3), |screen| {
        has_times(screen) && screen[0].contains('…')
    });
    eprintln!("redrawn {:?} after the resize", resized.elapsed());
    assert_eq!(narrow.len(), 3, "not one table:\n{}", narrow.join("\n"));
    assert_eq!(
        narrow[0],
        format!(
            "NewYork{}東京都千代…{}Kolkata",
            " ".repeat(7),
            " ".repeat(3)
        )
    );
    for row in &narrow {
        assert!(display_width(row) <= 40, "wider than the terminal: {row}");
    }
    let times_row = &narrow[2];
    for (time, column) in times_row.split_whitespace().zip([0, 14, 28]) {
        let byte = times_row.find(time).expect("time in its row");
        assert_eq!(
            display_width(&times_row[..byte]),
            column,
            "misaligned: {times_row}"
        );
    }
    let rules: Vec<&str> = narrow[1].split_whitespace().collect();
    assert_eq!(rules, ["─".repeat(12), "─".repeat(12), "─".repeat(12)]);

    // Wide again: the whole name comes back.
    let output = tmux.run(&["resize-window", "-x", "100", "-y", "10"]);
    assert!(output.status.success(), "tmux resize-window: {output:?}");
    tmux.wait_for_screen(Duration::from_secs(3), |screen| {
        has_times(screen) && screen[0].contains(long) && !screen[0].contains('…')
    });
}
