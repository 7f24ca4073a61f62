//! Who may reach the authentication at all: the `allow` list, per-address
//! lockout of password guessing, the bounded set of connections waiting to
//! authenticate, and the tallies that turn a flood of refusals into one
//! journal line a minute. Plain data with the clock passed in, so every
//! rule is tested without sockets or sleeps; `listener` does the I/O and
//! writes the lines this decides.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::AllowList;

/// Connections waiting to authenticate, at most; a newcomer beyond this
/// drops the oldest one. The gateway sends its authentication at once, so
/// only a flood faster than one round trip could push it out.
pub(super) const MAX_HANDSHAKES: usize = 16;
/// Of those, from one address (or IPv6 /64): a newcomer beyond this drops
/// that address's own oldest, so one address cannot push out another's.
pub(super) const HANDSHAKES_PER_SOURCE: usize = 4;
/// Addresses whose failed logins are remembered. Beyond this the stalest
/// is forgotten: memory stays bounded however many addresses guess.
pub(super) const MAX_SOURCES: usize = 1024;
/// An address with no failure for this long is forgotten, and with it how
/// many lockouts it had.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Addresses named in one line each when first refused for not being in
/// `allow`, or at their first failed login, per summary period; the rest
/// are only counted.
const NAMED_PER_PERIOD: u32 = 3;
/// Lockouts announced in a line each per summary period (with their end);
/// beyond that, many addresses guessing at once are one summary line.
const LOCKOUTS_PER_PERIOD: u32 = 10;
/// Closed-before-authenticating connections in a period worth a summary on
/// their own (a monitoring probe now and then is not news).
const UNAUTHENTICATED_NEWS: u64 = 10;

/// The thresholds, from [`super::DwgOptions`].
#[derive(Debug, Clone)]
pub struct GuardOptions {
    /// Failed logins from one address within `failure_window` that lock it
    /// out.
    pub max_failures: u32,
    pub failure_window: Duration,
    /// The first lockout; each further one doubles, up to `max_lockout`.
    pub lockout: Duration,
    pub max_lockout: Duration,
    /// How often refusals are summed up in one journal line.
    pub summary_every: Duration,
}

impl Default for GuardOptions {
    fn default() -> Self {
        Self {
            // A gateway with the right password never fails; one with a
            // wrong one fails on every try, so a few are enough to tell.
            max_failures: 5,
            failure_window: Duration::from_secs(600),
            // Short at first: a technician who just fixed the password on
            // the gateway waits a minute, not an hour.
            lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(1800),
            summary_every: Duration::from_secs(60),
        }
    }
}

/// Where a connection comes from, as the rules count it: the IPv4 address,
/// or the /64 of an IPv6 one (one host usually holds a whole /64, and
/// counting its addresses one by one would let it guess for ever).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                Self(IpAddr::V6(bits.into()))
            }
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => write!(f, "{a}/64"),
        }
    }
}

/// What to do with a new connection, before reading anything from it.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Admit,
    /// Not in `allow`; `name_it` says this refusal gets a line of its own.
    NotAllowed {
        name_it: bool,
    },
    /// Locked out until then.
    LockedOut,
}

/// A failed login, and what the journal should say about it.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// The first in its window: worth a line.
    First,
    /// Counted, nothing to say.
    Counted,
    /// This one locked the address out.
    LockedOut { failures: u32, lockout: Duration },
    /// Locked out too, but too many addresses were this period: counted
    /// in the summary only.
    LockedOutQuietly,
    /// Arrived while locked out (a handshake that started before): not
    /// checked, not counted again.
    AlreadyLocked,
}

/// Something the periodic tick has to say.
#[derive(Debug, PartialEq, Eq)]
pub enum Notice {
    LockoutOver(Source),
    Summary(String),
}

#[derive(Debug)]
struct Record {
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
    /// Whether the current lockout got a line (so its end gets one too).
    announced: bool,
    lockouts: u32,
    last: Instant,
}

/// Counts since the last summary.
#[derive(Debug, Default)]
struct Tally {
    not_allowed: u64,
    not_allowed_from: HashSet<Source>,
    named: u32,
    first_failures: u32,
    lockouts: u32,
    quiet_lockouts: u64,
    locked: u64,
    locked_from: HashSet<Source>,
    unauthenticated: u64,
    takeovers: u64,
}

impl Tally {
    fn is_news(&self) -> bool {
        self.not_allowed > 0
            || self.locked > 0
            || self.quiet_lockouts > 0
            || self.takeovers > 0
            || self.unauthenticated >= UNAUTHENTICATED_NEWS
    }
}

/// A connection waiting to authenticate.
struct Waiting {
    id: u64,
    source: Source,
    drop: CancellationToken,
}

pub struct Guard {
    allow: AllowList,
    opts: GuardOptions,
    records: HashMap<Source, Record>,
    /// Sources already named in a "not in allow" line (bounded with
    /// [`MAX_SOURCES`]; past it, refusals are only counted).
    named: HashSet<Source>,
    tally: Tally,
    period_start: Instant,
    waiting: VecDeque<Waiting>,
    next_id: u64,
}

fn insert_bounded(set: &mut HashSet<Source>, s: Source) {
    if set.len() < MAX_SOURCES {
        set.insert(s);
    }
}

impl Guard {
    pub fn new(allow: AllowList, opts: GuardOptions, now: Instant) -> Self {
        Self {
            allow,
            opts,
            records: HashMap::new(),
            named: HashSet::new(),
            tally: Tally::default(),
            period_start: now,
            waiting: VecDeque::new(),
            next_id: 0,
        }
    }

    pub fn allow(&self) -> &AllowList {
        &self.allow
    }

    fn locked(&self, source: Source, now: Instant) -> bool {
        self.records
            .get(&source)
            .and_then(|r| r.locked_until)
            .is_some_and(|t| t > now)
    }

    /// A new connection from `ip`.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Admission {
        let source = Source::of(ip);
        if !self.allow.is_empty() && !self.allow.contains(ip) {
            self.tally.not_allowed += 1;
            insert_bounded(&mut self.tally.not_allowed_from, source);
            let fresh = !self.named.contains(&source) && self.named.len() < MAX_SOURCES;
            let name_it = fresh && self.tally.named < NAMED_PER_PERIOD;
            if name_it {
                self.named.insert(source);
                self.tally.named += 1;
            }
            return Admission::NotAllowed { name_it };
        }
        if self.locked(source, now) {
            self.tally.locked += 1;
            insert_bounded(&mut self.tally.locked_from, source);
            return Admission::LockedOut;
        }
        Admission::Admit
    }

    /// Whether the credentials of a connection from `ip` may be checked
    /// now: it may have been accepted before its address got locked out
    /// (handshakes run side by side).
    pub fn may_check(&mut self, ip: IpAddr, now: Instant) -> bool {
        let source = Source::of(ip);
        if self.locked(source, now) {
            self.tally.locked += 1;
            insert_bounded(&mut self.tally.locked_from, source);
            return false;
        }
        true
    }

    /// A failed login (wrong credentials, or not the protocol) from `ip`.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) -> Failure {
        let source = Source::of(ip);
        if self.locked(source, now) {
            return Failure::AlreadyLocked;
        }
        if !self.records.contains_key(&source) && self.records.len() >= MAX_SOURCES {
            self.forget_one(now);
        }
        let opts = &self.opts;
        let r = match self.records.entry(source) {
            MapEntry::Occupied(o) => o.into_mut(),
            MapEntry::Vacant(v) => v.insert(Record {
                failures: 0,
                window_start: now,
                locked_until: None,
                announced: false,
                lockouts: 0,
                last: now,
            }),
        };
        r.last = now;
        if r.failures == 0 || now.duration_since(r.window_start) > opts.failure_window {
            r.failures = 0;
            r.window_start = now;
        }
        r.failures += 1;
        let tally = &mut self.tally;
        if r.failures < opts.max_failures {
            return if r.failures == 1 && tally.first_failures < NAMED_PER_PERIOD {
                tally.first_failures += 1;
                Failure::First
            } else {
                Failure::Counted
            };
        }
        let factor = 1u32 << r.lockouts.min(16);
        let lockout = opts.lockout.saturating_mul(factor).min(opts.max_lockout);
        let failures = r.failures;
        r.locked_until = Some(now + lockout);
        r.lockouts = r.lockouts.saturating_add(1);
        r.failures = 0;
        r.announced = tally.lockouts < LOCKOUTS_PER_PERIOD;
        if r.announced {
            tally.lockouts += 1;
            Failure::LockedOut { failures, lockout }
        } else {
            tally.quiet_lockouts += 1;
            Failure::LockedOutQuietly
        }
    }

    /// A successful login from `ip`: its failures are forgiven.
    pub fn succeeded(&mut self, ip: IpAddr) {
        self.records.remove(&Source::of(ip));
    }

    /// Makes room for one more record: the stalest that is not locked
    /// out, else the one whose lockout ends first.
    fn forget_one(&mut self, now: Instant) {
        let victim = self
            .records
            .iter()
            .filter(|(_, r)| r.locked_until.is_none_or(|t| t <= now))
            .min_by_key(|(_, r)| r.last)
            .or_else(|| {
                self.records
                    .iter()
                    .min_by_key(|(_, r)| r.locked_until.unwrap_or(now))
            })
            .map(|(s, _)| *s);
        if let Some(s) = victim {
            self.records.remove(&s);
        }
    }

    /// A connection closed before authenticating (silent, timed out,
    /// dropped for a newcomer).
    pub fn unauthenticated(&mut self) {
        self.tally.unauthenticated += 1;
    }

    /// A login with the right credentials refused because another gateway
    /// holds the session; true when it is the first of the period (worth a
    /// line of its own).
    pub fn takeover_refused(&mut self) -> bool {
        self.tally.takeovers += 1;
        self.tally.takeovers == 1
    }

    /// A new connection waiting to authenticate: its id, and the token that
    /// drops it when newer ones need its place.
    pub fn start_handshake(&mut self, ip: IpAddr) -> (u64, CancellationToken) {
        let source = Source::of(ip);
        let id = self.next_id;
        self.next_id += 1;
        let same = self.waiting.iter().filter(|w| w.source == source).count();
        let victim = if same >= HANDSHAKES_PER_SOURCE {
            self.waiting.iter().position(|w| w.source == source)
        } else if self.waiting.len() >= MAX_HANDSHAKES {
            Some(0)
        } else {
            None
        };
        if let Some(w) = victim.and_then(|i| self.waiting.remove(i)) {
            w.drop.cancel();
        }
        let drop = CancellationToken::new();
        self.waiting.push_back(Waiting {
            id,
            source,
            drop: drop.clone(),
        });
        (id, drop)
    }

    /// The handshake ended (its first message came, or the connection
    /// did).
    pub fn end_handshake(&mut self, id: u64) {
        if let Some(i) = self.waiting.iter().position(|w| w.id == id) {
            self.waiting.remove(i);
        }
    }

    #[cfg(test)]
    pub fn handshakes(&self) -> usize {
        self.waiting.len()
    }

    /// Lockouts that ended, forgotten addresses, and the period's summary
    /// once `summary_every` has passed; call it every second or so.
    pub fn tick(&mut self, now: Instant) -> Vec<Notice> {
        let mut out = Vec::new();
        for (s, r) in &mut self.records {
            if r.locked_until.is_some_and(|t| t <= now) {
                r.locked_until = None;
                if std::mem::take(&mut r.announced) {
                    out.push(Notice::LockoutOver(*s));
                }
            }
        }
        self.records
            .retain(|_, r| r.locked_until.is_some() || now.duration_since(r.last) < FORGET_AFTER);
        if now.duration_since(self.period_start) >= self.opts.summary_every {
            out.extend(self.flush(now));
        }
        out
    }

    /// The summary of the period so far, if it has anything to say, and a
    /// new period. Also called when the listener stops.
    pub fn flush(&mut self, now: Instant) -> Option<Notice> {
        let secs = now.duration_since(self.period_start).as_secs().max(1);
        self.period_start = now;
        let t = std::mem::take(&mut self.tally);
        if !t.is_news() {
            return None;
        }
        let mut parts = Vec::new();
        let addresses = |n: usize| {
            if n >= MAX_SOURCES {
                format!("at least {n} addresses")
            } else if n == 1 {
                "1 address".to_string()
            } else {
                format!("{n} addresses")
            }
        };
        if t.not_allowed > 0 {
            parts.push(format!(
                "{} connections refused from {} not in allow",
                t.not_allowed,
                addresses(t.not_allowed_from.len())
            ));
        }
        if t.quiet_lockouts > 0 {
            parts.push(format!(
                "{} more addresses locked out for guessing passwords",
                t.quiet_lockouts
            ));
        }
        if t.locked > 0 {
            parts.push(format!(
                "{} refused from {} during a lockout",
                t.locked,
                addresses(t.locked_from.len())
            ));
        }
        if t.takeovers > 0 {
            parts.push(format!(
                "{} logins refused because another gateway holds the session",
                t.takeovers
            ));
        }
        if t.unauthenticated > 0 {
            parts.push(format!(
                "{} closed before authenticating",
                t.unauthenticated
            ));
        }
        Some(Notice::Summary(format!(
            "last {secs} s: {}",
            parts.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn guard(allow: &[&str]) -> (Guard, Instant) {
        let nets = allow
            .iter()
            .map(|a| AllowList::parse_entry(a).unwrap())
            .collect();
        let now = Instant::now();
        (
            Guard::new(AllowList::new(nets), GuardOptions::default(), now),
            now,
        )
    }

    #[test]
    fn dwg_allow_refuses_others_and_names_each_address_once() {
        let (mut g, now) = guard(&["192.0.2.10", "2001:db8::/32"]);
        assert_eq!(g.admit(ip("192.0.2.10"), now), Admission::Admit);
        assert_eq!(g.admit(ip("::ffff:192.0.2.10"), now), Admission::Admit);
        assert_eq!(g.admit(ip("2001:db8:5::1"), now), Admission::Admit);
        let refused = |g: &mut Guard, a: &str| match g.admit(ip(a), now) {
            Admission::NotAllowed { name_it } => name_it,
            other => panic!("{a}: {other:?}"),
        };
        assert!(refused(&mut g, "127.0.0.1"));
        for _ in 0..10_000 {
            assert!(!refused(&mut g, "127.0.0.1"), "named once only");
        }
        // A few more addresses get a line of their own, then only the
        // summary counts them.
        let named = (1..=50)
            .filter(|i| refused(&mut g, &format!("198.51.100.{i}")))
            .count();
        assert_eq!(named, NAMED_PER_PERIOD as usize - 1);
        let Some(Notice::Summary(s)) = g.flush(now + Duration::from_secs(60)) else {
            panic!("a summary");
        };
        assert_eq!(
            s,
            "last 60 s: 10051 connections refused from 51 addresses not in allow"
        );
        assert_eq!(g.flush(now + Duration::from_secs(120)), None, "quiet now");
    }

    #[test]
    fn dwg_guessing_locks_an_address_out_for_growing_times() {
        let (mut g, t0) = guard(&[]);
        let a = ip("203.0.113.7");
        assert_eq!(g.failed(a, t0), Failure::First);
        for _ in 0..3 {
            assert_eq!(g.failed(a, t0), Failure::Counted);
        }
        assert_eq!(
            g.failed(a, t0),
            Failure::LockedOut {
                failures: 5,
                lockout: Duration::from_secs(60)
            }
        );
        assert_eq!(g.admit(a, t0), Admission::LockedOut);
        assert!(!g.may_check(a, t0));
        assert_eq!(g.failed(a, t0), Failure::AlreadyLocked);
        // Others are not affected.
        assert_eq!(g.admit(ip("203.0.113.8"), t0), Admission::Admit);
        let t1 = t0 + Duration::from_secs(61);
        assert_eq!(
            g.tick(t1),
            vec![
                Notice::LockoutOver(Source::of(a)),
                Notice::Summary("last 61 s: 2 refused from 1 address during a lockout".into())
            ]
        );
        assert_eq!(g.admit(a, t1), Admission::Admit);
        for _ in 0..4 {
            g.failed(a, t1);
        }
        assert_eq!(
            g.failed(a, t1),
            Failure::LockedOut {
                failures: 5,
                lockout: Duration::from_secs(120)
            },
            "the second lockout is twice as long"
        );
        // Capped.
        let mut t = t1;
        let mut last = Duration::ZERO;
        for _ in 0..10 {
            t += Duration::from_secs(3600);
            g.tick(t);
            for _ in 0..5 {
                if let Failure::LockedOut { lockout, .. } = g.failed(a, t) {
                    last = lockout;
                }
            }
        }
        assert_eq!(last, Duration::from_secs(1800));
    }

    #[test]
    fn dwg_failures_are_forgiven_by_a_login_and_by_time() {
        let (mut g, t0) = guard(&[]);
        let a = ip("203.0.113.7");
        for _ in 0..4 {
            g.failed(a, t0);
        }
        g.succeeded(a);
        for _ in 0..4 {
            assert_ne!(
                g.failed(a, t0),
                Failure::LockedOut {
                    failures: 5,
                    lockout: Duration::from_secs(60)
                }
            );
        }
        // Four more, but after the window: a new count.
        let later = t0 + Duration::from_secs(601);
        assert_eq!(g.failed(a, later), Failure::First);
    }

    #[test]
    fn dwg_many_addresses_guessing_at_once_make_a_few_lines() {
        let (mut g, t0) = guard(&[]);
        let (mut firsts, mut lockouts, mut quiet) = (0, 0, 0);
        for i in 0..500u32 {
            let a = IpAddr::V4((0x0a00_0000 + i).into());
            for _ in 0..5 {
                match g.failed(a, t0) {
                    Failure::First => firsts += 1,
                    Failure::LockedOut { .. } => lockouts += 1,
                    Failure::LockedOutQuietly => quiet += 1,
                    _ => {}
                }
            }
        }
        assert_eq!((firsts, lockouts, quiet), (3, 10, 490));
        // Every address is locked out, announced or not.
        assert_eq!(
            g.admit(IpAddr::V4(0x0a00_01f3.into()), t0),
            Admission::LockedOut
        );
        let notices = g.tick(t0 + Duration::from_secs(61));
        let over = notices
            .iter()
            .filter(|n| matches!(n, Notice::LockoutOver(_)))
            .count();
        assert_eq!(over, 10, "only announced lockouts get an end line");
        assert!(notices.contains(&Notice::Summary(
            "last 61 s: 490 more addresses locked out for guessing passwords; 1 refused from 1 address during a lockout".into()
        )));
    }

    #[test]
    fn dwg_ipv6_addresses_count_by_their_64() {
        let (mut g, t0) = guard(&[]);
        for i in 1..=5 {
            g.failed(ip(&format!("2001:db8:1:2::{i:x}")), t0);
        }
        assert_eq!(
            g.admit(ip("2001:db8:1:2:ffff::1"), t0),
            Admission::LockedOut
        );
        assert_eq!(g.admit(ip("2001:db8:1:3::1"), t0), Admission::Admit);
        assert_eq!(
            Source::of(ip("2001:db8:1:2::9")).to_string(),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn dwg_the_lockout_table_stays_bounded() {
        let (mut g, t0) = guard(&[]);
        for i in 0..(MAX_SOURCES as u32 * 4) {
            let a = IpAddr::V4((0x0a00_0000 + i).into());
            for _ in 0..5 {
                g.failed(a, t0);
            }
        }
        assert!(g.records.len() <= MAX_SOURCES);
        // The newest are the ones remembered.
        let newest = IpAddr::V4((0x0a00_0000 + MAX_SOURCES as u32 * 4 - 1).into());
        assert_eq!(g.admit(newest, t0), Admission::LockedOut);
    }

    #[test]
    fn dwg_newcomers_push_out_the_oldest_waiting_handshake() {
        let (mut g, _) = guard(&[]);
        let local = ip("127.0.0.1");
        let first: Vec<_> = (0..HANDSHAKES_PER_SOURCE)
            .map(|_| g.start_handshake(local))
            .collect();
        // One address beyond its share drops its own oldest.
        let (_, _t) = g.start_handshake(local);
        assert!(first[0].1.is_cancelled());
        assert!(!first[1].1.is_cancelled());
        assert_eq!(g.handshakes(), HANDSHAKES_PER_SOURCE);
        // Many addresses: the oldest overall goes.
        let others: Vec<_> = (0..MAX_HANDSHAKES)
            .map(|i| g.start_handshake(ip(&format!("198.51.100.{}", i + 1))))
            .collect();
        assert_eq!(g.handshakes(), MAX_HANDSHAKES);
        assert!(first[1].1.is_cancelled(), "the oldest went first");
        assert!(!others.last().unwrap().1.is_cancelled());
        for (id, _) in &others {
            g.end_handshake(*id);
        }
        assert!(g.handshakes() <= HANDSHAKES_PER_SOURCE);
    }
}
