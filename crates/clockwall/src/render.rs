//! Render: a snapshot of every column's state turned into text, a table for a terminal or one
//! line for a pipe. Pure: no I/O and no clock of its own; `now` comes from the caller.

use std::time::{Duration, Instant};

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// A line older than this is marked stale: a live clock server sends one every second.
pub const STALE_AFTER: Duration = Duration::from_secs(2);

/// The narrowest a column gets: room for `HH:MM:SS (stale)` and `connecting…`.
pub const MIN_COLUMN_WIDTH: usize = 16;

/// Between two columns of the table.
const GAP: &str = "  ";

/// What the wall knows about one server's connection, as its watcher last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// The first connection attempt is under way.
    Connecting,
    /// The server could not be reached or hung up; it is retried with backoff.
    Offline,
    /// Connected at `since`; `last` is the latest line, if any has come yet.
    Connected {
        since: Instant,
        last: Option<Received>,
    },
}

impl Link {
    /// True when the server has sent a line on its current connection (what `--once` awaits).
    pub fn has_line(&self) -> bool {
        matches!(self, Link::Connected { last: Some(_), .. })
    }
}

/// One sanitised line from a server and when it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The line as it is safe to print (see [`crate::sanitize`]).
    pub text: String,
    /// When it arrived, to tell a fresh line from a stale one.
    pub at: Instant,
}

/// The text of one column's cell at `now`, fitted to `width` display columns.
pub fn cell(link: &Link, now: Instant, width: usize) -> String {
    let is_stale = |at: Instant| now.saturating_duration_since(at) > STALE_AFTER;
    match link {
        Link::Connecting => fit("connecting…", width),
        Link::Offline => fit("offline", width),
        Link::Connected { since, last: None } if is_stale(*since) => fit("waiting (stale)", width),
        Link::Connected { last: None, .. } => fit("waiting", width),
        Link::Connected {
            last: Some(received),
            ..
        } if is_stale(received.at) => {
            const MARK: &str = " (stale)";
            let text = fit(&received.text, width.saturating_sub(MARK.len()));
            fit(&format!("{text}{MARK}"), width)
        }
        Link::Connected {
            last: Some(received),
            ..
        } => fit(&received.text, width),
    }
}

/// Each column's width: its name's display width, at least [`MIN_COLUMN_WIDTH`].
pub fn column_widths(names: &[String]) -> Vec<usize> {
    names
        .iter()
        .map(|name| name.width().max(MIN_COLUMN_WIDTH))
        .collect()
}

/// Column widths that fit `total` display columns with the gaps between them: when the
/// natural `widths` are too wide, the widest are narrowed first, all to one cap (the largest
/// that fits), with any columns left over shared one each among the narrowed ones. With too
/// many columns for even one column each, every column is one wide.
pub fn fit_widths(widths: &[usize], total: usize) -> Vec<usize> {
    let gaps = GAP.len() * widths.len().saturating_sub(1);
    let room = total.saturating_sub(gaps);
    let used = |cap: usize| widths.iter().map(|&width| width.min(cap)).sum::<usize>();
    if used(usize::MAX) <= room {
        return widths.to_vec();
    }
    let widest = widths.iter().copied().max().unwrap_or(0);
    let cap = (1..widest)
        .rev()
        .find(|&cap| used(cap) <= room)
        .unwrap_or(1);
    let mut spare = room.saturating_sub(used(cap));
    widths
        .iter()
        .map(|&width| {
            if width > cap && spare > 0 {
                spare -= 1;
                cap + 1
            } else {
                width.min(cap)
            }
        })
        .collect()
}

/// The table a terminal shows: names, a rule, then each server's latest line, in argument
/// order and aligned by display width (a CJK character takes two columns).
pub fn table(names: &[String], links: &[Link], now: Instant) -> Vec<String> {
    table_within(names, links, now, usize::MAX)
}

/// [`table`] no wider than `total` display columns (a terminal's width): columns are narrowed
/// by [`fit_widths`] and what no longer fits ends in `…`, never half a wide character, so
/// every row stays aligned.
pub fn table_within(names: &[String], links: &[Link], now: Instant, total: usize) -> Vec<String> {
    let widths = fit_widths(&column_widths(names), total);
    let row = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, &width)| pad(cell, width))
            .collect();
        fit(padded.join(GAP).trim_end(), total)
    };
    let headings = names
        .iter()
        .zip(&widths)
        .map(|(name, &width)| fit(name, width))
        .collect();
    let rules = widths.iter().map(|&width| "─".repeat(width)).collect();
    let cells = links
        .iter()
        .zip(&widths)
        .map(|(link, &width)| cell(link, now, width))
        .collect();
    vec![row(headings), row(rules), row(cells)]
}

/// The line a pipe gets for one update: every column as `NAME=TEXT`, two spaces apart.
pub fn line(names: &[String], links: &[Link], now: Instant) -> String {
    let widths = column_widths(names);
    let fields: Vec<String> = names
        .iter()
        .zip(links)
        .zip(&widths)
        .map(|((name, link), &width)| format!("{name}={}", cell(link, now, width)))
        .collect();
    fields.join(GAP)
}

/// `text` cut to at most `width` display columns, ending in `…` when something was cut.
pub fn fit(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_owned();
    }
    let mut fitted = String::new();
    let mut used = 0;
    for c in text.chars() {
        let char_width = c.width().unwrap_or(0);
        // Leave one column for the ellipsis.
        if used + char_width + 1 > width {
            break;
        }
        fitted.push(c);
        used += char_width;
    }
    if width > 0 {
        fitted.push('…');
    }
    fitted
}

/// `text` followed by spaces up to `width` display columns.
fn pad(text: &str, width: usize) -> String {
    let fill = width.saturating_sub(text.width());
    format!("{text}{}", " ".repeat(fill))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    fn connected(now: Instant, text: &str, age_ms: u64) -> Link {
        let at = now - Duration::from_millis(age_ms);
        Link::Connected {
            since: at,
            last: Some(Received {
                text: text.to_owned(),
                at,
            }),
        }
    }

    #[test]
    fn cells_name_each_state() {
        let now = Instant::now();
        let waiting_since = |age| Link::Connected {
            since: now - Duration::from_millis(age),
            last: None,
        };
        let check = |link: Link, expected: &str| assert_eq!(cell(&link, now, 16), expected);
        check(Link::Connecting, "connecting…");
        check(Link::Offline, "offline");
        check(waiting_since(500), "waiting");
        check(waiting_since(2500), "waiting (stale)");
        check(connected(now, "10:04:05", 250), "10:04:05");
        check(connected(now, "10:04:05", 2000), "10:04:05");
        check(connected(now, "10:04:05", 2001), "10:04:05 (stale)");
        check(
            connected(now, "a line far too long to fit", 3000),
            "a line … (stale)",
        );
    }

    #[test]
    fn fitting_counts_display_columns() {
        assert_eq!(fit("10:04:05", 8), "10:04:05");
        assert_eq!(fit("10:04:05", 7), "10:04:…");
        assert_eq!(fit("東京東京", 8), "東京東京");
        assert_eq!(fit("東京東京", 7), "東京東…");
        // A wide character never straddles the edge.
        assert_eq!(fit("東京東京", 6), "東京…");
        assert_eq!(fit("abc", 1), "…");
        assert_eq!(fit("abc", 0), "");
    }

    #[test]
    fn the_table_aligns_wide_names() {
        let now = Instant::now();
        let links = [
            connected(now, "21:04:05", 200),
            connected(now, "10:04:05", 200),
            Link::Offline,
        ];
        let table = table(&names(&["NewYork", "東京", "London"]), &links, now);
        let expected = [
            "NewYork           東京              London",
            "────────────────  ────────────────  ────────────────",
            "21:04:05          10:04:05          offline",
        ];
        assert_eq!(table, expected);
        // The second column starts at the same display offset on every row.
        for line in &table {
            let second = line.find("10:04:05").or_else(|| line.find('東'));
            if let Some(byte) = second {
                assert_eq!(line[..byte].width(), 18, "{line}");
            }
        }
    }

    #[test]
    fn a_long_name_widens_its_column() {
        let now = Instant::now();
        let long = "Ulaanbaatar-Mongolia";
        let table = table(&names(&[long, "x"]), &[Link::Offline, Link::Offline], now);
        assert_eq!(table[0], format!("{long}  x"));
        assert_eq!(table[2], format!("offline{}  offline", " ".repeat(13)));
    }

    #[test]
    fn widths_that_fit_are_kept_and_the_widest_narrow_first() {
        assert_eq!(fit_widths(&[16, 16, 16], 52), [16, 16, 16]);
        assert_eq!(fit_widths(&[16, 16, 16], usize::MAX), [16, 16, 16]);
        // 40 columns less two gaps of two: 36, shared 12 each.
        assert_eq!(fit_widths(&[16, 16, 16], 40), [12, 12, 12]);
        // A narrow column keeps its width; the spare column goes to the first narrowed one.
        assert_eq!(fit_widths(&[16, 30, 8], 36), [12, 12, 8]);
        assert_eq!(fit_widths(&[16, 30, 8], 37), [13, 12, 8]);
        assert_eq!(fit_widths(&[16, 16], 3), [1, 1]);
    }

    #[test]
    fn a_narrow_terminal_shortens_columns_by_display_width_issue_15() {
        let now = Instant::now();
        let names = names(&["NewYork", "東京都千代田区丸の内", "London"]);
        let links = [
            connected(now, "21:04:05", 200),
            connected(now, "10:04:05", 200),
            Link::Offline,
        ];
        let table = table_within(&names, &links, now, 36);
        // 36 less two gaps: 32, so 11 + 11 + 10.
        let expected = [
            "NewYork      東京都千代…  London",
            "───────────  ───────────  ──────────",
            "21:04:05     10:04:05     offline",
        ];
        assert_eq!(table, expected);
        for line in &table {
            assert!(line.width() <= 36, "{line}");
        }
        // The second column starts at display column 13 on every row.
        let starts = [
            table[0].find('東').unwrap(),
            table[1].find("  ─").unwrap() + 2,
            table[2].find("10:").unwrap(),
        ];
        for (line, byte) in table.iter().zip(starts) {
            assert_eq!(line[..byte].width(), 13, "{line}");
        }
    }

    #[test]
    fn too_many_columns_for_the_terminal_cut_the_row_with_an_ellipsis() {
        let now = Instant::now();
        let table = table_within(
            &names(&["東京", "大阪", "京都"]),
            &[Link::Offline, Link::Offline, Link::Offline],
            now,
            5,
        );
        for line in &table {
            assert!(line.width() <= 5 && line.ends_with('…'), "{line:?}");
        }
    }

    #[test]
    fn a_garbage_line_is_cut_to_the_column() {
        let now = Instant::now();
        let garbage = "x".repeat(100);
        let table = table(
            &names(&["A", "B"]),
            &[connected(now, &garbage, 0), Link::Offline],
            now,
        );
        assert_eq!(table[2], format!("{}…  offline", "x".repeat(15)));
    }

    #[test]
    fn the_piped_line_holds_every_column() {
        let now = Instant::now();
        let links = [
            connected(now, "21:04:05", 100),
            Link::Connecting,
            connected(now, "10:04:05", 5000),
        ];
        assert_eq!(
            line(&names(&["NewYork", "東京", "London"]), &links, now),
            "NewYork=21:04:05  東京=connecting…  London=10:04:05 (stale)"
        );
    }

    #[test]
    fn only_a_line_on_the_current_connection_counts_as_an_answer() {
        let now = Instant::now();
        assert!(connected(now, "x", 0).has_line());
        assert!(!Link::Offline.has_line());
        assert!(!Link::Connected {
            since: now,
            last: None
        }
        .has_line());
    }
}
