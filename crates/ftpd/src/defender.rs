//! Defender: judges client addresses across sessions. Each address gathers a score over a
//! sliding window from what it does wrong (failed logins, refused bounces, HTTP verbs,
//! over-long lines, connection-rate overruns); past a threshold it is banned, each new ban of
//! the same address twice as long as the last (capped). A banned address is refused at
//! connect, before any thread or TLS work, and at PASS on sessions it already has open.
//! Safelisted networks are never banned nor rate-limited. It judges addresses, never
//! accounts: an attack on `alice` from one address does not lock `alice` out elsewhere.
//!
//! The state lives for the whole process (bans survive a reload); the thresholds come with
//! each configuration generation. One mutex, held only for map updates, never across I/O.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cidr::Cidr;

/// Most addresses tracked at once; beyond it, new addresses go unscored until old records
/// expire, so an attacker with many addresses cannot grow the map without bound.
pub const MAX_TRACKED: usize = 100_000;

/// The operator's thresholds (`--defender-*`, `--connection-rate`, `--safelist`).
#[derive(Debug, Clone, PartialEq)]
pub struct DefenderSettings {
    /// Off: nothing is scored or banned (the rate limit still applies if set).
    pub enabled: bool,
    /// Score at which an address is banned.
    pub threshold: u32,
    /// How long an offence counts towards the score.
    pub window: Duration,
    /// The first ban's length; each later one doubles.
    pub ban: Duration,
    /// The longest ban.
    pub max_ban: Duration,
    /// Never banned nor rate-limited.
    pub safelist: Vec<Cidr>,
    /// New control connections per second allowed from one address, with its burst; `None`
    /// for no limit.
    pub rate: Option<ConnectionRate>,
}

impl Default for DefenderSettings {
    fn default() -> DefenderSettings {
        DefenderSettings {
            enabled: true,
            threshold: 10,
            window: Duration::from_secs(600),
            ban: Duration::from_secs(300),
            max_ban: Duration::from_secs(86_400),
            safelist: Vec::new(),
            rate: None,
        }
    }
}

impl DefenderSettings {
    fn safe(&self, ip: IpAddr) -> bool {
        self.safelist.iter().any(|net| net.contains(ip))
    }
}

/// A token bucket's refill rate and size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionRate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Most tokens held (the burst).
    pub burst: f64,
}

/// What an address did wrong, and what it costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offence {
    /// A wrong password, or an unknown name.
    FailedLogin,
    /// PORT/EPRT to somebody else's address.
    Bounce,
    /// An HTTP request on the FTP port.
    HttpVerb,
    /// A control line over the limit.
    OverlongLine,
    /// More connections than `--connection-rate` allows.
    RateExceeded,
}

impl Offence {
    /// Points towards the threshold: a real user's typo costs one.
    pub fn weight(self) -> u32 {
        match self {
            Offence::FailedLogin | Offence::RateExceeded => 1,
            Offence::OverlongLine => 2,
            Offence::Bounce => 3,
            Offence::HttpVerb => 5,
        }
    }

    /// The fixed word for logs.
    pub fn label(self) -> &'static str {
        match self {
            Offence::FailedLogin => "failed_login",
            Offence::Bounce => "bounce",
            Offence::HttpVerb => "http_verb",
            Offence::OverlongLine => "overlong_line",
            Offence::RateExceeded => "connection_rate",
        }
    }
}

/// What the defender says about a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Serve it.
    Allowed,
    /// Banned for this much longer.
    Banned(Duration),
    /// Over the connection rate (and scored for it).
    RateLimited,
}

/// A login attempt's place: verification may go ahead while it is held. Counting attempts
/// before their result keeps parallel guessers from overshooting the threshold.
#[derive(Debug)]
#[must_use = "finish the attempt with its result"]
pub struct Attempt {
    ip: IpAddr,
    counted: bool,
}

/// Per-address records, shared by every session and generation.
#[derive(Debug, Default)]
pub struct Defender {
    records: Mutex<HashMap<IpAddr, Record>>,
}

#[derive(Debug)]
struct Record {
    /// Offences in the window: when, and their weight.
    offences: VecDeque<(Instant, u32)>,
    /// Login attempts being verified now, counted as failures until they end.
    pending: u32,
    banned_until: Option<Instant>,
    /// Bans so far, for the doubling.
    bans: u32,
    last_seen: Instant,
    tokens: f64,
    /// When `tokens` was last brought up to date.
    refilled: Instant,
}

impl Record {
    fn new(now: Instant, settings: &DefenderSettings) -> Record {
        Record {
            offences: VecDeque::new(),
            pending: 0,
            banned_until: None,
            bans: 0,
            last_seen: now,
            tokens: settings.rate.map_or(0.0, |rate| rate.burst),
            refilled: now,
        }
    }

    fn score(&mut self, now: Instant, window: Duration) -> u32 {
        while self
            .offences
            .front()
            .is_some_and(|(when, _)| now.duration_since(*when) >= window)
        {
            self.offences.pop_front();
        }
        self.offences.iter().map(|(_, weight)| weight).sum()
    }

    fn banned_for(&self, now: Instant) -> Option<Duration> {
        self.banned_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    /// Forgettable: no ban running, nothing in the window, no attempt pending, and no
    /// ban history worth keeping (a day after the last sighting, the doubling restarts).
    fn idle(&self, now: Instant, settings: &DefenderSettings) -> bool {
        self.pending == 0
            && self.banned_for(now).is_none()
            && self
                .offences
                .back()
                .is_none_or(|(when, _)| now.duration_since(*when) >= settings.window)
            && (self.bans == 0 || now.duration_since(self.last_seen) >= settings.max_ban)
    }
}

/// A ban just imposed, logged once the lock is released.
struct NewBan {
    ip: IpAddr,
    length: Duration,
    score: u32,
    offence: Offence,
}

impl Defender {
    /// A defender with nothing recorded.
    pub fn new() -> Defender {
        Defender::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Record>> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new control connection from `ip`: banned, over its rate, or allowed (taking a token).
    pub fn admit(&self, settings: &DefenderSettings, ip: IpAddr) -> Verdict {
        if settings.safe(ip) {
            return Verdict::Allowed;
        }
        let now = Instant::now();
        let mut new_ban = None;
        let verdict = {
            let mut records = self.lock();
            let Some(record) = record_for(&mut records, ip, now, settings) else {
                return Verdict::Allowed;
            };
            record.last_seen = now;
            if let Some(left) = record.banned_for(now) {
                return Verdict::Banned(left);
            }
            match settings.rate {
                Some(rate) => {
                    let elapsed = now.duration_since(record.refilled).as_secs_f64();
                    record.tokens = (record.tokens + elapsed * rate.per_second).min(rate.burst);
                    record.refilled = now;
                    if record.tokens >= 1.0 {
                        record.tokens -= 1.0;
                        Verdict::Allowed
                    } else {
                        new_ban = score(record, ip, Offence::RateExceeded, now, settings);
                        Verdict::RateLimited
                    }
                }
                None => Verdict::Allowed,
            }
        };
        if let Some(ban) = new_ban {
            log_ban(&ban);
        }
        verdict
    }

    /// Records an offence; true when it got the address banned just now.
    pub fn offend(&self, settings: &DefenderSettings, ip: IpAddr, offence: Offence) -> bool {
        if !settings.enabled || settings.safe(ip) {
            return false;
        }
        let now = Instant::now();
        let new_ban = {
            let mut records = self.lock();
            let Some(record) = record_for(&mut records, ip, now, settings) else {
                return false;
            };
            record.last_seen = now;
            score(record, ip, offence, now, settings)
        };
        match new_ban {
            Some(ban) => {
                log_ban(&ban);
                true
            }
            None => false,
        }
    }

    /// Before a password check: `None` when the address is banned, or when the attempts
    /// already being checked would reach the threshold should they fail.
    pub fn begin_attempt(&self, settings: &DefenderSettings, ip: IpAddr) -> Option<Attempt> {
        if !settings.enabled || settings.safe(ip) {
            return Some(Attempt { ip, counted: false });
        }
        let now = Instant::now();
        let mut records = self.lock();
        let Some(record) = record_for(&mut records, ip, now, settings) else {
            return Some(Attempt { ip, counted: false });
        };
        record.last_seen = now;
        if record.banned_for(now).is_some() {
            return None;
        }
        let score = record.score(now, settings.window);
        if score + (record.pending + 1) * Offence::FailedLogin.weight() > settings.threshold {
            return None;
        }
        record.pending += 1;
        Some(Attempt { ip, counted: true })
    }

    /// After the password check: a failure scores (and may ban); true when it banned. The
    /// attempt leaves `pending` and its failure enters the score under one lock, so no other
    /// attempt can slip in between.
    pub fn finish_attempt(
        &self,
        settings: &DefenderSettings,
        attempt: Attempt,
        succeeded: bool,
    ) -> bool {
        if !attempt.counted {
            return !succeeded && self.offend(settings, attempt.ip, Offence::FailedLogin);
        }
        let now = Instant::now();
        let new_ban = {
            let mut records = self.lock();
            let Some(record) = records.get_mut(&attempt.ip) else {
                return false;
            };
            record.pending = record.pending.saturating_sub(1);
            if succeeded {
                return false;
            }
            record.last_seen = now;
            score(record, attempt.ip, Offence::FailedLogin, now, settings)
        };
        match new_ban {
            Some(ban) => {
                log_ban(&ban);
                true
            }
            None => false,
        }
    }

    /// Time left on `ip`'s ban, if it has one.
    pub fn banned_for(&self, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        self.lock()
            .get(&ip)
            .and_then(|record| record.banned_for(now))
    }

    /// Every ban in force, with its time left, ordered by address.
    pub fn bans(&self) -> Vec<(IpAddr, Duration)> {
        let now = Instant::now();
        let mut bans: Vec<(IpAddr, Duration)> = self
            .lock()
            .iter()
            .filter_map(|(ip, record)| record.banned_for(now).map(|left| (*ip, left)))
            .collect();
        bans.sort();
        bans
    }
}

/// The record for `ip`, making room for it when the map is full; `None` when there is none.
fn record_for<'a>(
    records: &'a mut HashMap<IpAddr, Record>,
    ip: IpAddr,
    now: Instant,
    settings: &DefenderSettings,
) -> Option<&'a mut Record> {
    if !records.contains_key(&ip) && records.len() >= MAX_TRACKED {
        records.retain(|_, record| !record.idle(now, settings));
        if records.len() >= MAX_TRACKED {
            return None;
        }
    }
    Some(
        records
            .entry(ip)
            .or_insert_with(|| Record::new(now, settings)),
    )
}

/// Adds an offence to the record; bans when the score reaches the threshold.
fn score(
    record: &mut Record,
    ip: IpAddr,
    offence: Offence,
    now: Instant,
    settings: &DefenderSettings,
) -> Option<NewBan> {
    if !settings.enabled {
        return None;
    }
    record.offences.push_back((now, offence.weight()));
    let score = record.score(now, settings.window);
    if score < settings.threshold || record.banned_for(now).is_some() {
        return None;
    }
    let doubling = 1u32 << record.bans.min(20);
    let length = settings.ban.saturating_mul(doubling).min(settings.max_ban);
    record.bans += 1;
    record.banned_until = Some(now + length);
    record.offences.clear();
    Some(NewBan {
        ip,
        length,
        score,
        offence,
    })
}

/// One line per ban, in a fixed shape for fail2ban and friends:
/// `defender: banned 203.0.113.9 for 300s (score 10, last offence failed_login)`.
fn log_ban(ban: &NewBan) {
    let address = ban.ip.to_string();
    log::warn!(
        event = "ban", peer = address.as_str(), seconds = ban.length.as_secs(),
        score = ban.score, offence = ban.offence.label();
        "defender: banned {} for {}s (score {}, last offence {})",
        ban.ip,
        ban.length.as_secs(),
        ban.score,
        ban.offence.label()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn typos_pass_a_guesser_is_banned_and_bans_double() {
        let settings = DefenderSettings {
            ban: Duration::from_millis(40),
            ..DefenderSettings::default()
        };
        let defender = Defender::new();
        let guesser = ip("192.0.2.9");
        for _ in 0..3 {
            let attempt = defender.begin_attempt(&settings, guesser).unwrap();
            assert!(!defender.finish_attempt(&settings, attempt, false));
        }
        assert_eq!(defender.admit(&settings, guesser), Verdict::Allowed);
        let mut banned = false;
        for _ in 3..10 {
            let attempt = defender.begin_attempt(&settings, guesser).unwrap();
            banned = defender.finish_attempt(&settings, attempt, false);
        }
        assert!(banned);
        assert!(defender.begin_attempt(&settings, guesser).is_none());
        assert!(matches!(
            defender.admit(&settings, guesser),
            Verdict::Banned(_)
        ));
        assert_eq!(defender.bans().len(), 1);
        // Others are untouched; the same account from elsewhere still gets its attempts.
        assert_eq!(
            defender.admit(&settings, ip("192.0.2.10")),
            Verdict::Allowed
        );
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(defender.admit(&settings, guesser), Verdict::Allowed);
        for _ in 0..2 {
            defender.offend(&settings, guesser, Offence::HttpVerb);
        }
        let Verdict::Banned(left) = defender.admit(&settings, guesser) else {
            panic!("second ban expected");
        };
        assert!(left > Duration::from_millis(40), "{left:?}");
    }

    #[test]
    fn an_attempt_ending_never_opens_a_gap_for_another() {
        let settings = DefenderSettings::default();
        let defender = Arc::new(Defender::new());
        let guesser = ip("192.0.2.77");
        let checked = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..200 {
                        if let Some(attempt) = defender.begin_attempt(&settings, guesser) {
                            checked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            defender.finish_attempt(&settings, attempt, false);
                        }
                    }
                });
            }
        });
        assert_eq!(
            checked.load(std::sync::atomic::Ordering::Relaxed),
            settings.threshold as usize
        );
    }

    #[test]
    fn parallel_attempts_never_overshoot_the_threshold() {
        let settings = DefenderSettings::default();
        let defender = Defender::new();
        let guesser = ip("2001:db8::9");
        let attempts: Vec<Attempt> = (0..100)
            .filter_map(|_| defender.begin_attempt(&settings, guesser))
            .collect();
        assert_eq!(attempts.len(), settings.threshold as usize);
        for attempt in attempts {
            defender.finish_attempt(&settings, attempt, false);
        }
        assert!(defender.banned_for(guesser).is_some());
    }

    #[test]
    fn the_safelist_and_the_off_switch_are_never_banned() {
        let settings = DefenderSettings {
            safelist: vec!["192.0.2.0/24".parse().unwrap()],
            ..DefenderSettings::default()
        };
        let defender = Defender::new();
        for _ in 0..50 {
            defender.offend(&settings, ip("192.0.2.9"), Offence::HttpVerb);
        }
        assert!(defender.bans().is_empty());
        let off = DefenderSettings {
            enabled: false,
            ..DefenderSettings::default()
        };
        for _ in 0..50 {
            defender.offend(&off, ip("198.51.100.1"), Offence::HttpVerb);
        }
        assert!(defender.bans().is_empty());
    }

    #[test]
    fn the_rate_limit_is_a_token_bucket() {
        let settings = DefenderSettings {
            rate: Some(ConnectionRate {
                per_second: 1000.0,
                burst: 3.0,
            }),
            ..DefenderSettings::default()
        };
        let defender = Defender::new();
        let client = ip("192.0.2.5");
        let verdicts: Vec<Verdict> = (0..5).map(|_| defender.admit(&settings, client)).collect();
        assert_eq!(&verdicts[..3], &[Verdict::Allowed; 3]);
        assert_eq!(verdicts[3], Verdict::RateLimited);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(defender.admit(&settings, client), Verdict::Allowed);
    }
}
