//! The pace of our outgoing connection attempts, process-wide: at most
//! [`MAX_HALF_OPEN`] TCP connects in flight at once, and new ones started
//! at most [`DIAL_RATE`] a second (after a burst of [`DIAL_BURST`]). A
//! tracker answer of a thousand addresses that never answer therefore opens
//! a few sockets at a time, not a thousand, as libtorrent
//! (`connection_speed`) and anacrolix (half-open limits) do too.
//!
//! Pure policy with time passed in ([`DialPacer`], [`Dialling`]); the
//! counter of connects in flight ([`Dialling`]) is shared by the torrents'
//! manager threads, which take a [`DialPermit`] through their torrent's
//! [`DialShare`] before they spawn a dialling thread, and the peer threads,
//! which drop it as soon as their `connect()` returns, whatever it
//! returned. The places are shared fairly among the torrents that want
//! them, so one torrent's dead addresses do not starve another's live
//! ones. Not owned here: which address is dialled (the peer list), nor
//! the budget of connections once open ([`super::ConnectionBudget`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most TCP connects of ours in flight at once, in the whole process.
pub const MAX_HALF_OPEN: usize = 16;
/// New connection attempts a second, in the whole process, once the burst
/// is spent.
pub const DIAL_RATE: u32 = 50;
/// Attempts that may start at once after a quiet time: a torrent's manager
/// dials on its half-second tick, so this is what a tick can start.
pub const DIAL_BURST: u32 = 25;

/// A token bucket of connection attempts: [`DIAL_RATE`] tokens a second,
/// at most [`DIAL_BURST`] saved up.
#[derive(Debug, Clone)]
pub struct DialPacer {
    rate: u32,
    burst: u32,
    /// Tokens, in thousandths, so a millisecond adds a whole number of them.
    milli_tokens: u64,
    refilled: Instant,
}

impl DialPacer {
    /// A full bucket of `burst` attempts, refilled at `rate` a second.
    pub fn new(rate: u32, burst: u32, now: Instant) -> DialPacer {
        DialPacer {
            rate,
            burst,
            milli_tokens: u64::from(burst) * 1000,
            refilled: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled);
        let added = elapsed.as_millis() as u64 * u64::from(self.rate);
        if added > 0 {
            let full = u64::from(self.burst) * 1000;
            self.milli_tokens = (self.milli_tokens + added).min(full);
            // Only whole milliseconds were counted: the rest carries over.
            self.refilled += Duration::from_millis(elapsed.as_millis() as u64);
        }
    }

    /// Takes one attempt's token, if there is one at `now`.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }

    /// Gives back a token taken for an attempt that did not start.
    pub fn give_back(&mut self) {
        let full = u64::from(self.burst) * 1000;
        self.milli_tokens = (self.milli_tokens + 1000).min(full);
    }
}

/// How long a torrent refused a place still counts as wanting one: longer
/// than a manager's half-second tick, at which it asks again.
pub const STILL_WANTING: Duration = Duration::from_secs(1);

/// The connects in flight, their limit and the pace of new ones; shared by
/// every torrent of the process (through the connection budget), each
/// asking through its own [`DialShare`].
///
/// The places are shared fairly: while `n` torrents want to dial (they
/// have connects in flight, or were refused within [`STILL_WANTING`]),
/// each may hold at most `max / n` of them (at least one). A torrent whose
/// dials to a thousand dead addresses end one by one therefore cannot take
/// every freed place back at once, before another torrent's next tick:
/// it shrinks to its share, and the freed places wait for the others.
#[derive(Debug)]
pub struct Dialling {
    max: usize,
    state: Mutex<DialState>,
    /// The most in flight at once so far, for the logs and the tests.
    most: AtomicUsize,
}

#[derive(Debug)]
struct DialState {
    pacer: DialPacer,
    in_flight: usize,
    /// Each torrent's connects in flight and when it was last refused,
    /// by the id of its [`DialShare`].
    torrents: HashMap<u64, TorrentDials>,
    next_id: u64,
}

#[derive(Debug, Default)]
struct TorrentDials {
    in_flight: usize,
    refused_at: Option<Instant>,
}

impl TorrentDials {
    fn wants_at(&self, now: Instant) -> bool {
        self.in_flight > 0
            || self
                .refused_at
                .is_some_and(|at| now.saturating_duration_since(at) < STILL_WANTING)
    }
}

/// One torrent's way to the process's connects in flight; dropping it
/// forgets the torrent (its permits still end their connects).
#[derive(Debug)]
pub struct DialShare {
    dialling: Arc<Dialling>,
    id: u64,
}

/// One connect in flight; dropping it ends it.
#[derive(Debug)]
pub struct DialPermit {
    dialling: Arc<Dialling>,
    torrent: u64,
}

impl Dialling {
    /// At most `max` connects in flight, started at `rate` a second after
    /// a burst of `burst`.
    pub fn new(max: usize, rate: u32, burst: u32, now: Instant) -> Arc<Dialling> {
        Arc::new(Dialling {
            max,
            state: Mutex::new(DialState {
                pacer: DialPacer::new(rate, burst, now),
                in_flight: 0,
                torrents: HashMap::new(),
                next_id: 0,
            }),
            most: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DialState> {
        // Every statement leaves the state whole: a panic elsewhere while
        // holding it leaves nothing half done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A share for one more torrent.
    pub fn torrent(self: &Arc<Self>) -> DialShare {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.torrents.insert(id, TorrentDials::default());
        DialShare {
            dialling: Arc::clone(self),
            id,
        }
    }

    /// The limit of connects in flight.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Connects in flight now.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// The most connects that were in flight at once.
    pub fn most_in_flight(&self) -> usize {
        self.most.load(Ordering::Acquire)
    }
}

impl DialShare {
    /// A permit for one more connect of this torrent at `now`, unless
    /// [`Dialling::max`] are in flight, this torrent holds its fair share
    /// of them (see [`Dialling`]), or the pace allows none yet.
    pub fn try_start(&self, now: Instant) -> Option<DialPermit> {
        let max = self.dialling.max;
        let mut state = self.dialling.lock();
        let wanting = state
            .torrents
            .iter()
            .filter(|&(&id, torrent)| id == self.id || torrent.wants_at(now))
            .count();
        let fair = (max / wanting.max(1)).max(1);
        let full = state.in_flight >= max;
        let DialState {
            pacer, torrents, ..
        } = &mut *state;
        let ours = torrents.entry(self.id).or_default();
        if full || ours.in_flight >= fair || !pacer.try_take(now) {
            ours.refused_at = Some(now);
            return None;
        }
        ours.in_flight += 1;
        ours.refused_at = None;
        state.in_flight += 1;
        self.dialling
            .most
            .fetch_max(state.in_flight, Ordering::AcqRel);
        Some(DialPermit {
            dialling: Arc::clone(&self.dialling),
            torrent: self.id,
        })
    }

    /// This torrent's connects in flight now.
    pub fn in_flight(&self) -> usize {
        self.dialling
            .lock()
            .torrents
            .get(&self.id)
            .map_or(0, |torrent| torrent.in_flight)
    }
}

impl Drop for DialShare {
    fn drop(&mut self) {
        self.dialling.lock().torrents.remove(&self.id);
    }
}

impl DialPermit {
    /// Gives the permit back unused: the attempt did not start, so neither
    /// its place nor its token of the pace is spent.
    pub fn unused(self) {
        self.dialling.lock().pacer.give_back();
    }
}

impl Drop for DialPermit {
    fn drop(&mut self) {
        let mut state = self.dialling.lock();
        state.in_flight -= 1;
        if let Some(torrent) = state.torrents.get_mut(&self.torrent) {
            torrent.in_flight -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_allows_a_burst_then_its_rate() {
        let start = Instant::now();
        let mut pacer = DialPacer::new(50, 25, start);
        let burst = (0..100).filter(|_| pacer.try_take(start)).count();
        assert_eq!(burst, 25);
        // 50 a second: one per 20 ms.
        assert!(!pacer.try_take(start + Duration::from_millis(19)));
        assert!(pacer.try_take(start + Duration::from_millis(20)));
        assert!(!pacer.try_take(start + Duration::from_millis(20)));
        let mut now = start + Duration::from_millis(20);
        let mut taken = 0;
        for _ in 0..10_000 {
            now += Duration::from_millis(1);
            taken += usize::from(pacer.try_take(now));
        }
        assert_eq!(taken, 500, "50 a second over 10 s");
    }

    #[test]
    fn a_quiet_pacer_saves_no_more_than_its_burst() {
        let start = Instant::now();
        let mut pacer = DialPacer::new(50, 25, start);
        let later = start + Duration::from_secs(3600);
        let taken = (0..1000).filter(|_| pacer.try_take(later)).count();
        assert_eq!(taken, 25);
        pacer.give_back();
        assert!(pacer.try_take(later), "a token given back is there again");
        assert!(!pacer.try_take(later));
    }

    #[test]
    fn fractions_of_a_token_are_not_lost_between_calls() {
        let start = Instant::now();
        // 3 a second: one every 333.3 ms.
        let mut pacer = DialPacer::new(3, 1, start);
        assert!(pacer.try_take(start));
        let mut now = start;
        let mut taken = 0;
        for _ in 0..3000 {
            now += Duration::from_micros(3333);
            taken += usize::from(pacer.try_take(now));
        }
        // 3000 x 3.333 ms is 10 s: 30 tokens, less the rounding of the last.
        assert!((29..=30).contains(&taken), "{taken}");
    }

    #[test]
    fn at_most_max_connects_are_in_flight_and_ending_one_frees_its_place() {
        let now = Instant::now();
        let dialling = Dialling::new(4, 1000, 1000, now);
        let torrent = dialling.torrent();
        let held: Vec<DialPermit> = (0..10).filter_map(|_| torrent.try_start(now)).collect();
        assert_eq!(held.len(), 4);
        assert_eq!(dialling.in_flight(), 4);
        let mut held = held;
        drop(held.pop());
        assert_eq!(dialling.in_flight(), 3);
        held.extend(torrent.try_start(now));
        assert_eq!(dialling.in_flight(), 4);
        drop(held);
        assert_eq!(dialling.in_flight(), 0);
        assert_eq!(dialling.most_in_flight(), 4);
    }

    #[test]
    fn a_thousand_addresses_never_have_more_than_the_limit_in_flight() {
        // A fake run: every 10 ms the manager dials what it may; each
        // connect hangs for 5 s (a blackholed address) and then fails.
        let start = Instant::now();
        let dialling = Dialling::new(MAX_HALF_OPEN, DIAL_RATE, DIAL_BURST, start);
        let torrent = dialling.torrent();
        let mut left = 1000usize;
        let mut hanging: Vec<(Instant, DialPermit)> = Vec::new();
        let mut now = start;
        let mut most = 0;
        while left > 0 || !hanging.is_empty() {
            hanging.retain(|(until, _)| *until > now);
            while left > 0 {
                let Some(permit) = torrent.try_start(now) else {
                    break;
                };
                left -= 1;
                hanging.push((now + Duration::from_secs(5), permit));
            }
            most = most.max(hanging.len());
            assert!(dialling.in_flight() <= MAX_HALF_OPEN);
            now += Duration::from_millis(10);
        }
        assert_eq!(most, MAX_HALF_OPEN);
        assert_eq!(dialling.most_in_flight(), MAX_HALF_OPEN);
        // 16 every 5 s: the thousand take about 5 minutes, never a storm.
        let took = now - start;
        assert!(took >= Duration::from_secs(300), "{took:?}");
    }

    #[test]
    fn refused_connects_are_paced_by_the_rate() {
        // Connects that fail at once free their place at once: the rate
        // alone paces them.
        let start = Instant::now();
        let dialling = Dialling::new(MAX_HALF_OPEN, DIAL_RATE, DIAL_BURST, start);
        let torrent = dialling.torrent();
        let mut now = start;
        let mut started = 0;
        while now < start + Duration::from_secs(10) {
            while let Some(permit) = torrent.try_start(now) {
                started += 1;
                drop(permit);
            }
            now += Duration::from_millis(500);
        }
        // The burst, then 50 a second over 9.5 s.
        assert_eq!(started, DIAL_BURST as usize + 475);
    }

    #[test]
    fn an_unused_permit_gives_back_its_place_and_its_token() {
        let now = Instant::now();
        let dialling = Dialling::new(2, 1, 1, now);
        let torrent = dialling.torrent();
        let permit = torrent.try_start(now).expect("a token");
        assert!(torrent.try_start(now).is_none(), "no token left");
        permit.unused();
        assert_eq!(dialling.in_flight(), 0);
        assert!(torrent.try_start(now).is_some(), "the token came back");
    }

    /// A fake run of two torrents on one process: `a` has only addresses
    /// whose connects hang for 5 s, and dials at once whenever a place
    /// frees (as a manager does on each ended dial); `b` has one address
    /// and asks on its half-second tick. Returns when `b` first got a
    /// place, and the most `a` held at once after that.
    fn a_dead_torrent_beside_a_live_one(until: Duration) -> (Option<Duration>, usize) {
        let start = Instant::now();
        let dialling = Dialling::new(MAX_HALF_OPEN, DIAL_RATE, DIAL_BURST, start);
        let a = dialling.torrent();
        let b = dialling.torrent();
        let mut hanging: Vec<(Instant, DialPermit)> = Vec::new();
        let (mut b_started, mut a_most_after) = (None, 0);
        let mut b_permit = None;
        let mut now = start;
        while now < start + until {
            hanging.retain(|(ends, _)| *ends > now);
            while let Some(permit) = a.try_start(now) {
                hanging.push((now + Duration::from_secs(5), permit));
            }
            let tick = (now - start).as_millis() % 500 == 100;
            if tick && b_permit.is_none() {
                b_permit = b.try_start(now);
                if b_permit.is_some() {
                    b_started = Some(now - start);
                }
            }
            if b_started.is_some() {
                a_most_after = a_most_after.max(a.in_flight());
            }
            assert!(dialling.in_flight() <= MAX_HALF_OPEN);
            now += Duration::from_millis(10);
        }
        (b_started, a_most_after)
    }

    #[test]
    fn a_torrent_dialling_dead_addresses_leaves_places_to_another() {
        // `a` takes all 16 places first; once its first connects give up
        // (5 s), it may hold only half while `b` wants one, so `b` gets the
        // next free place at its next tick instead of never.
        let (b_started, a_most_after) = a_dead_torrent_beside_a_live_one(Duration::from_secs(20));
        let b_started = b_started.expect("the live torrent got a place");
        assert!(b_started <= Duration::from_secs(6), "{b_started:?}");
        assert!(a_most_after < MAX_HALF_OPEN, "{a_most_after}");
    }

    #[test]
    fn torrents_wanting_to_dial_share_the_places_evenly() {
        let now = Instant::now();
        let dialling = Dialling::new(16, 1000, 1000, now);
        let a = dialling.torrent();
        let b = dialling.torrent();
        // Alone, a torrent may take every place.
        let mut held: Vec<DialPermit> = std::iter::from_fn(|| a.try_start(now)).collect();
        assert_eq!(held.len(), 16);
        assert!(b.try_start(now).is_none(), "no place free");
        // `b` wants one now: places `a` gives up are not `a`'s again
        // while it holds more than half.
        for _ in 0..8 {
            drop(held.pop());
            assert!(a.try_start(now).is_none(), "over its share");
        }
        assert_eq!(a.in_flight(), 8);
        held.extend(std::iter::from_fn(|| b.try_start(now)));
        assert_eq!(b.in_flight(), 8, "the other half");
        assert_eq!(dialling.in_flight(), 16);
        // A third torrent's share is 16 / 3 = 5: a place freed by `a`
        // (still at 7, over 5) goes to it, not back to `a`.
        let c = dialling.torrent();
        assert!(c.try_start(now).is_none());
        drop(held.remove(0));
        assert!(a.try_start(now).is_none());
        let c_permit = c.try_start(now).expect("a place for the third");
        drop(c_permit);
        drop(held);
        assert_eq!(dialling.in_flight(), 0);
        assert_eq!((a.in_flight(), b.in_flight(), c.in_flight()), (0, 0, 0));
    }

    #[test]
    fn a_torrent_that_stopped_asking_gives_its_share_back() {
        let now = Instant::now();
        let dialling = Dialling::new(16, 1000, 1000, now);
        let a = dialling.torrent();
        let b = dialling.torrent();
        let held: Vec<DialPermit> = std::iter::from_fn(|| a.try_start(now)).collect();
        assert!(b.try_start(now).is_none(), "refused: `b` now wants");
        drop(held);
        // While `b` counts as wanting, `a` gets half.
        let half: Vec<DialPermit> = std::iter::from_fn(|| a.try_start(now)).collect();
        assert_eq!(half.len(), 8);
        drop(half);
        // `b` asked nothing since: `a` alone again.
        let later = now + STILL_WANTING;
        let all: Vec<DialPermit> = std::iter::from_fn(|| a.try_start(later)).collect();
        assert_eq!(all.len(), 16);
        drop(all);
        // A torrent that ends is forgotten, its permits still counted.
        let p = b.try_start(later).expect("free places");
        drop(b);
        assert_eq!(dialling.in_flight(), 1);
        drop(p);
        assert_eq!(dialling.in_flight(), 0);
    }
}
