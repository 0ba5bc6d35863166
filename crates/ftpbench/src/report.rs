//! Report: the figures a run collected (every round's value per server and metric), their
//! medians, ratios against vsftpd, fractions of the loopback limit and the targets,
//! rendered as a Markdown table. Pure: no I/O.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::fixture::Profile;

/// The name the loopback limit is recorded under.
pub const LOOPBACK: &str = "loopback";

/// One measured quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    Loopback,
    RetrBig,
    RetrBigTls,
    RetrMid,
    Stor,
    SessionsSequential,
    SessionsThreaded,
    SmallFiles,
    ListTime,
    ListBytes,
    NlstTime,
    NlstBytes,
    ConcurrentThroughput,
    ConcurrentFailures,
    MemoryPerSession,
    MemoryRssPerSession,
    MemoryTotal,
    MemoryProcesses,
}

/// What the issue asks of ours against vsftpd.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// ours / vsftpd at least this.
    AtLeast(f64),
    /// ours / vsftpd at most this.
    AtMost(f64),
}

/// Every metric, in table order.
pub const METRICS: [Metric; 18] = [
    Metric::Loopback,
    Metric::RetrBig,
    Metric::RetrBigTls,
    Metric::RetrMid,
    Metric::Stor,
    Metric::SessionsSequential,
    Metric::SessionsThreaded,
    Metric::SmallFiles,
    Metric::ListTime,
    Metric::ListBytes,
    Metric::NlstTime,
    Metric::NlstBytes,
    Metric::ConcurrentThroughput,
    Metric::ConcurrentFailures,
    Metric::MemoryPerSession,
    Metric::MemoryRssPerSession,
    Metric::MemoryTotal,
    Metric::MemoryProcesses,
];

fn size_label(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    if bytes >= 1 << 30 && bytes & ((1 << 30) - 1) == 0 {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

impl Metric {
    /// The row label, with the profile's sizes.
    pub fn label(self, profile: &Profile) -> String {
        match self {
            Metric::Loopback => format!(
                "loopback limit, {} (sendfile → 1 MiB reads)",
                size_label(profile.big)
            ),
            Metric::RetrBig => format!("RETR {}", size_label(profile.big)),
            Metric::RetrBigTls => format!("RETR {} over TLS (PROT P)", size_label(profile.big)),
            Metric::RetrMid => format!("RETR {} (SHA-256 checked)", size_label(profile.mid)),
            Metric::Stor => format!("STOR {} from memory", size_label(profile.stor)),
            Metric::SessionsSequential => "sessions/s, sequential".to_owned(),
            Metric::SessionsThreaded => "sessions/s, 8 threads".to_owned(),
            Metric::SmallFiles => format!("{} × 4 KiB files, one session", profile.small_files),
            Metric::ListTime => format!("LIST {} entries, time", profile.listing_entries),
            Metric::ListBytes => format!("LIST {} entries, bytes", profile.listing_entries),
            Metric::NlstTime => format!("NLST {} entries, time", profile.listing_entries),
            Metric::NlstBytes => format!("NLST {} entries, bytes", profile.listing_entries),
            Metric::ConcurrentThroughput => format!(
                "{} idle + {} × RETR {}, aggregate",
                profile.idle_sessions,
                profile.concurrent_clients,
                size_label(profile.mid)
            ),
            Metric::ConcurrentFailures => "  failures (RETR or idle NOOP)".to_owned(),
            Metric::MemoryPerSession => format!(
                "PSS per idle session ({} sessions)",
                profile.memory_sessions
            ),
            Metric::MemoryRssPerSession => "  RSS per idle session (summed RSS)".to_owned(),
            Metric::MemoryTotal => {
                format!("  server PSS with {} sessions", profile.memory_sessions)
            }
            Metric::MemoryProcesses => "  server processes".to_owned(),
        }
    }

    /// The unit values are recorded in.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::Loopback
            | Metric::RetrBig
            | Metric::RetrBigTls
            | Metric::RetrMid
            | Metric::Stor
            | Metric::ConcurrentThroughput => "GB/s",
            Metric::SessionsSequential | Metric::SessionsThreaded => "/s",
            Metric::SmallFiles => "files/s",
            Metric::ListTime | Metric::NlstTime => "ms",
            Metric::ListBytes | Metric::NlstBytes => "B",
            Metric::ConcurrentFailures | Metric::MemoryProcesses => "",
            Metric::MemoryPerSession | Metric::MemoryRssPerSession => "KiB",
            Metric::MemoryTotal => "MiB",
        }
    }

    /// Bytes per second figures, shown also as a fraction of the loopback limit.
    pub fn is_throughput(self) -> bool {
        self.unit() == "GB/s" && self != Metric::Loopback
    }

    /// The target for ours / vsftpd, if it sets one.
    pub fn goal(self) -> Option<Goal> {
        match self {
            Metric::RetrBig | Metric::RetrMid => Some(Goal::AtLeast(1.0)),
            Metric::Stor => Some(Goal::AtLeast(1.2)),
            Metric::SessionsSequential | Metric::SessionsThreaded => Some(Goal::AtLeast(3.0)),
            Metric::SmallFiles => Some(Goal::AtLeast(1.5)),
            Metric::ListTime => Some(Goal::AtMost(0.8)),
            Metric::MemoryPerSession => Some(Goal::AtMost(0.1)),
            _ => None,
        }
    }
}

/// Every value recorded, per server and metric, and every failure.
#[derive(Debug, Default)]
pub struct Results {
    values: BTreeMap<(String, Metric), Vec<f64>>,
    failures: Vec<String>,
}

impl Results {
    /// Adds one round's value.
    pub fn record(&mut self, server: &str, metric: Metric, value: f64) {
        self.values
            .entry((server.to_owned(), metric))
            .or_default()
            .push(value);
    }

    /// Notes a failed workload; the run then exits with an error.
    pub fn fail(&mut self, message: String) {
        self.failures.push(message);
    }

    /// The failures so far.
    pub fn failures(&self) -> &[String] {
        &self.failures
    }

    /// Every value recorded for `server` and `metric`.
    pub fn values(&self, server: &str, metric: Metric) -> &[f64] {
        self.values
            .get(&(server.to_owned(), metric))
            .map_or(&[], Vec::as_slice)
    }

    /// The median of the recorded values, if any.
    pub fn median(&self, server: &str, metric: Metric) -> Option<f64> {
        median(self.values(server, metric))
    }
}

/// The median (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    })
}

fn format_value(metric: Metric, value: f64) -> String {
    let unit = metric.unit();
    let number = match metric.unit() {
        "GB/s" => format!("{value:.2}"),
        "ms" => format!("{value:.1}"),
        "KiB" | "MiB" => format!("{value:.1}"),
        _ => format!("{value:.0}"),
    };
    if unit.is_empty() {
        number
    } else if unit == "/s" {
        format!("{number}/s")
    } else {
        format!("{number} {unit}")
    }
}

fn cell(results: &Results, server: &str, metric: Metric, loopback: Option<f64>) -> String {
    match results.median(server, metric) {
        None => "—".to_owned(),
        Some(value) => match loopback.filter(|_| metric.is_throughput()) {
            Some(limit) if limit > 0.0 => format!(
                "{} ({:.0} %)",
                format_value(metric, value),
                100.0 * value / limit
            ),
            _ => format_value(metric, value),
        },
    }
}

/// The verdict on one metric: met, missed, or nothing to judge.
pub fn verdict(metric: Metric, ratio: Option<f64>, ours_of_loopback: Option<f64>) -> String {
    let (Some(goal), Some(ratio)) = (metric.goal(), ratio) else {
        return String::new();
    };
    let (met, wanted) = match goal {
        Goal::AtLeast(target) => (ratio >= target, format!("≥ {target:.1}×")),
        Goal::AtMost(target) => (ratio <= target, format!("≤ {target:.1}×")),
    };
    let mut text = format!("{wanted}: {}", if met { "met" } else { "missed" });
    if metric == Metric::RetrBig {
        if let Some(fraction) = ours_of_loopback {
            let near = fraction >= 0.9;
            let _ = write!(
                text,
                "; ≥ 90 % of loopback: {}",
                if near { "met" } else { "missed" }
            );
        }
    }
    text
}

/// The table: one row per metric; with two servers, medians side by side, ours / vsftpd and
/// the verdict on the target. Throughput cells carry their fraction of the loopback
/// limit in parentheses.
pub fn render(results: &Results, servers: &[String], profile: &Profile, rounds: usize) -> String {
    let loopback = results.median(LOOPBACK, Metric::Loopback);
    let mut out = String::new();
    let compare = servers.len() == 2;
    let _ = write!(
        out,
        "| workload ({} profile, median of {rounds}) |",
        profile.name
    );
    for server in servers {
        let _ = write!(out, " {server} |");
    }
    if compare {
        let _ = write!(
            out,
            " {0} / {1} | target (ours / {1}) |",
            servers[0], servers[1]
        );
    }
    out.push('\n');
    out.push('|');
    for _ in 0..servers.len() + if compare { 3 } else { 1 } {
        out.push_str("---|");
    }
    out.push('\n');
    for metric in METRICS {
        if metric == Metric::Loopback {
            let Some(limit) = loopback else { continue };
            let _ = write!(out, "| {} |", metric.label(profile));
            for _ in servers {
                let _ = write!(out, " {} |", format_value(metric, limit));
            }
            if compare {
                out.push_str(" | |");
            }
            out.push('\n');
            continue;
        }
        if servers
            .iter()
            .all(|server| results.median(server, metric).is_none())
        {
            continue;
        }
        let _ = write!(out, "| {} |", metric.label(profile));
        for server in servers {
            let _ = write!(out, " {} |", cell(results, server, metric, loopback));
        }
        if compare {
            let ours = results.median(&servers[0], metric);
            let theirs = results.median(&servers[1], metric);
            let ratio = match (ours, theirs) {
                (Some(ours), Some(theirs)) if theirs > 0.0 => Some(ours / theirs),
                _ => None,
            };
            let ratio_text = ratio.map_or(String::new(), |ratio| format!("{ratio:.2}×"));
            let of_loopback = ours.zip(loopback).map(|(ours, limit)| ours / limit);
            let _ = write!(
                out,
                " {ratio_text} | {} |",
                verdict(metric, ratio, of_loopback)
            );
        }
        out.push('\n');
    }
    out
}

/// Every round's value, one line per server and metric, to show the spread behind a median.
pub fn render_rounds(results: &Results, servers: &[String], profile: &Profile) -> String {
    let mut out = String::new();
    let mut names: Vec<&str> = vec![LOOPBACK];
    names.extend(servers.iter().map(String::as_str));
    for metric in METRICS {
        for name in &names {
            let values = results.values(name, metric);
            if values.is_empty() {
                continue;
            }
            let shown: Vec<String> = values
                .iter()
                .map(|value| format_value(metric, *value))
                .collect();
            let _ = writeln!(
                out,
                "{:<8} {}: {}",
                name,
                metric.label(profile).trim(),
                shown.join(", ")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn verdicts_follow_the_goal_direction() {
        assert_eq!(verdict(Metric::Stor, Some(1.3), None), "≥ 1.2×: met");
        assert_eq!(verdict(Metric::ListTime, Some(0.9), None), "≤ 0.8×: missed");
        assert_eq!(
            verdict(Metric::RetrBig, Some(1.1), Some(0.85)),
            "≥ 1.0×: met; ≥ 90 % of loopback: missed"
        );
        assert_eq!(verdict(Metric::NlstTime, Some(0.5), None), "");
    }

    #[test]
    fn table_shows_ratio_and_loopback_fraction() {
        let mut results = Results::default();
        results.record(LOOPBACK, Metric::Loopback, 2.0);
        results.record("ours", Metric::RetrBig, 1.9);
        results.record("vsftpd", Metric::RetrBig, 1.8);
        let servers = ["ours".to_owned(), "vsftpd".to_owned()];
        let table = render(&results, &servers, &Profile::smoke(), 1);
        assert!(
            table.contains("| RETR 4 MiB | 1.90 GB/s (95 %) | 1.80 GB/s (90 %) | 1.06× |"),
            "{table}"
        );
        assert!(table.contains("≥ 90 % of loopback: met"), "{table}");
    }
}
