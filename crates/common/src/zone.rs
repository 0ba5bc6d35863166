//! Zone: the time zone a clock speaks, from `--tz`, `TZ` or the system, resolved once.
//!
//! Zones come from chrono-tz's embedded database, so `TZ=Asia/Tokyo` works on a machine without
//! /usr/share/zoneinfo. Resolving at start-up means an unknown name is an error before any
//! client connects, and no connection thread ever reads zone files.

use std::fmt;

use chrono::format::{DelayedFormat, Item};
use chrono::{DateTime, Local, Utc};
use chrono_tz::Tz;

/// A resolved time zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    /// A zone from the tz database, named by `--tz`, `TZ` or the system's /etc/localtime.
    Named(Tz),
    /// The C library's local time, used only when the system zone has no tz database name.
    SystemLocal,
}

/// A zone name that the tz database does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownZone(pub String);

impl fmt::Display for UnknownZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown time zone '{}' (expected a tz database name such as Asia/Tokyo or UTC)",
            self.0
        )
    }
}

impl std::error::Error for UnknownZone {}

impl Zone {
    /// Parses a `TZ`-style value: `Asia/Tokyo`, POSIX's `:Asia/Tokyo` form, or `UTC`.
    ///
    /// An empty value (`TZ=`, or `TZ=:`) means UTC, as in the C library and Go: clap hands a
    /// set-but-empty `TZ` to this parser, so this is where that rule has to live.
    pub fn parse(value: &str) -> Result<Zone, UnknownZone> {
        let name = value.strip_prefix(':').unwrap_or(value).trim();
        if name.is_empty() {
            return Ok(Zone::Named(Tz::UTC));
        }
        name.parse::<Tz>()
            .map(Zone::Named)
            .map_err(|_| UnknownZone(value.to_owned()))
    }

    /// The zone for an optional `--tz`/`TZ` value; with none, the system's own zone.
    ///
    /// An empty `TZ` means UTC, as in the C library.
    pub fn resolve(value: Option<&str>) -> Result<Zone, UnknownZone> {
        value.map_or_else(|| Ok(Zone::system()), Zone::parse)
    }

    /// The system's zone, named when /etc/localtime points into the tz database.
    pub fn system() -> Zone {
        iana_time_zone::get_timezone()
            .ok()
            .and_then(|name| name.parse::<Tz>().ok())
            .map_or(Zone::SystemLocal, Zone::Named)
    }

    /// Formats `instant` in this zone with pre-parsed strftime `items`.
    pub fn format<'a>(
        &self,
        instant: DateTime<Utc>,
        items: &'a [Item<'a>],
    ) -> DelayedFormat<std::slice::Iter<'a, Item<'a>>> {
        match self {
            Zone::Named(tz) => instant.with_timezone(tz).format_with_items(items.iter()),
            Zone::SystemLocal => instant
                .with_timezone(&Local)
                .format_with_items(items.iter()),
        }
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Named(tz) => f.write_str(tz.name()),
            Zone::SystemLocal => f.write_str("system local time"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn book_zones_parse_in_both_forms() {
        for (value, name) in [
            ("US/Eastern", "US/Eastern"),
            ("Asia/Tokyo", "Asia/Tokyo"),
            (":Asia/Tokyo", "Asia/Tokyo"),
            ("Europe/London", "Europe/London"),
            ("UTC", "UTC"),
        ] {
            assert_eq!(Zone::parse(value).unwrap().to_string(), name, "{value}");
        }
    }

    #[test]
    fn unknown_zone_is_an_error_naming_the_value() {
        let error = Zone::parse("Mars/Olympus").unwrap_err();
        assert!(error.to_string().contains("'Mars/Olympus'"), "{error}");
    }

    #[test]
    fn empty_tz_means_utc_and_absent_tz_means_system_issue_15() {
        assert_eq!(Zone::resolve(Some("")).unwrap(), Zone::Named(Tz::UTC));
        assert_eq!(Zone::parse("").unwrap(), Zone::Named(Tz::UTC));
        assert_eq!(Zone::parse(":").unwrap(), Zone::Named(Tz::UTC));
        assert_eq!(Zone::resolve(None).unwrap(), Zone::system());
    }

    #[test]
    fn formats_in_the_zone() {
        let instant = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let items: Vec<_> = chrono::format::StrftimeItems::new("%H:%M:%S").collect();
        let tokyo = Zone::parse("Asia/Tokyo").unwrap();
        assert_eq!(tokyo.format(instant, &items).to_string(), "12:04:05");
    }
}
