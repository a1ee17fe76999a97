//! The pace of our outgoing connection attempts, process-wide: at most
//! [`MAX_HALF_OPEN`] TCP connects in flight at once, and new ones started
//! at most [`DIAL_RATE`] a second (after a burst of [`DIAL_BURST`]). A
//! tracker answer of a thousand addresses that never answer therefore opens
//! a few sockets at a time, not a thousand, as libtorrent
//! (`connection_speed`) and anacrolix (half-open limits) do too.
//!
//! Pure policy with time passed in ([`DialPacer`]); the counter of connects
//! in flight ([`Dialling`]) is shared by the torrents' manager threads, which
//! take a [`DialPermit`] before they spawn a dialling thread, and the peer
//! threads, which drop it as soon as their `connect()` returns, whatever it
//! returned. Not owned here: which address is dialled (the peer list), nor
//! the budget of connections once open ([`super::ConnectionBudget`]).

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

/// The connects in flight, their limit and the pace of new ones; shared by
/// every torrent of the process (through the connection budget).
#[derive(Debug)]
pub struct Dialling {
    max: usize,
    in_flight: AtomicUsize,
    /// The most in flight at once so far, for the logs and the tests.
    most: AtomicUsize,
    pacer: Mutex<DialPacer>,
}

/// One connect in flight; dropping it ends it.
#[derive(Debug)]
pub struct DialPermit(Arc<Dialling>);

impl Dialling {
    /// At most `max` connects in flight, started at `rate` a second after
    /// a burst of `burst`.
    pub fn new(max: usize, rate: u32, burst: u32, now: Instant) -> Arc<Dialling> {
        Arc::new(Dialling {
            max,
            in_flight: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            pacer: Mutex::new(DialPacer::new(rate, burst, now)),
        })
    }

    /// A permit for one more connect at `now`, unless [`Dialling::max`] are
    /// in flight or the pace allows none yet.
    pub fn try_start(self: &Arc<Self>, now: Instant) -> Option<DialPermit> {
        let reserved = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        let mut pacer = self.pacer.lock().unwrap_or_else(|p| p.into_inner());
        if !pacer.try_take(now) {
            drop(pacer);
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        drop(pacer);
        self.most.fetch_max(reserved + 1, Ordering::AcqRel);
        Some(DialPermit(Arc::clone(self)))
    }

    /// The limit of connects in flight.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Connects in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// The most connects that were in flight at once.
    pub fn most_in_flight(&self) -> usize {
        self.most.load(Ordering::Acquire)
    }
}

impl DialPermit {
    /// Gives the permit back unused: the attempt did not start, so neither
    /// its place nor its token of the pace is spent.
    pub fn unused(self) {
        self.0
            .pacer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .give_back();
    }
}

impl Drop for DialPermit {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
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
        let held: Vec<DialPermit> = (0..10).filter_map(|_| dialling.try_start(now)).collect();
        assert_eq!(held.len(), 4);
        assert_eq!(dialling.in_flight(), 4);
        let mut held = held;
        drop(held.pop());
        assert_eq!(dialling.in_flight(), 3);
        held.extend(dialling.try_start(now));
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
        let mut left = 1000usize;
        let mut hanging: Vec<(Instant, DialPermit)> = Vec::new();
        let mut now = start;
        let mut most = 0;
        while left > 0 || !hanging.is_empty() {
            hanging.retain(|(until, _)| *until > now);
            while left > 0 {
                let Some(permit) = dialling.try_start(now) else {
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
        let mut now = start;
        let mut started = 0;
        while now < start + Duration::from_secs(10) {
            while let Some(permit) = dialling.try_start(now) {
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
        let permit = dialling.try_start(now).expect("a token");
        assert!(dialling.try_start(now).is_none(), "no token left");
        permit.unused();
        assert_eq!(dialling.in_flight(), 0);
        assert!(dialling.try_start(now).is_some(), "the token came back");
    }
}
