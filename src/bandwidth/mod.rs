//! Process-wide rate limits: `--max-download-rate` and `--max-upload-rate`.
//!
//! Owns the parsing of a rate (`500K`, `1.5MiB`, ...: [`parse_rate`], in
//! `rate.rs`), the token bucket ([`TokenBucket`], pure, time passed in)
//! and its shared, locked form ([`RateLimiter`]) that every peer thread of
//! the process draws from. The [`client`](crate::client) holds one [`Bandwidth`] and each
//! torrent's peers reach it through their
//! [`PeerContext`](crate::peer::PeerContext). Not owned here: where the
//! bytes are counted (the peer connection charges each block it receives
//! or sends, [`crate::peer::conn`]).
//!
//! Only payload is counted: the data of `piece` messages. Protocol
//! overhead (headers, requests, `have`, extension messages) is small next
//! to it and left out, as other clients do by default.
//!
//! # The bucket
//! Tokens are bytes. They flow in at the rate, up to a small burst
//! ([`burst_for`]: 1/20 of a second's worth, at least one 16 KiB block),
//! so the limit is smooth over the second rather than a second's bytes at
//! once. A taker is always charged at once and told how long to wait: the
//! balance may go negative, and each later taker waits behind the debt of
//! those before it. A thread that waits before its next read (or send)
//! therefore gets its turn in the order it asked, so twenty peers sharing
//! a limit each get about a twentieth of it, and no taker can starve
//! another by retrying faster. With no limit there is no bucket at all: the
//! peer thread tests an `Option` that is `None` and takes no lock.

mod rate;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use rate::parse_rate;

/// Smallest burst, in bytes: one block, so a single block never waits on
/// an idle bucket.
pub const MIN_BURST: u64 = 16 * 1024;
/// The burst is this fraction (1/N) of a second's worth of the rate.
pub const BURST_FRACTION: u64 = 20;

const NANOS_PER_SEC: i128 = 1_000_000_000;

/// The burst for a limit of `rate` bytes a second: 50 ms of it, at least
/// [`MIN_BURST`]. 50 ms is far above the precision of a sleep (well under
/// a millisecond on Linux), so threads can wait for their turn accurately,
/// and small enough that no more than a twentieth of a second's bytes go
/// out at once after a pause. Over 10 s the burst adds at most 0.5% to the
/// bytes allowed.
pub fn burst_for(rate: u64) -> u64 {
    (rate / BURST_FRACTION).max(MIN_BURST)
}

/// A token bucket of `rate` bytes a second, pure: every call is given the
/// time. See the module docs.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    /// The balance, in bytes times 10^9 (byte-nanoseconds per second), so
    /// that refilling is exact integer arithmetic (`elapsed ns × rate`) and
    /// no rounding drifts over a long run. Negative while takers wait.
    balance: i128,
    /// When the balance was last brought up to date.
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate` bytes a second (at least 1) at `now`, with
    /// the burst of [`burst_for`].
    pub fn new(rate: u64, now: Instant) -> TokenBucket {
        let rate = rate.max(1);
        TokenBucket::with_burst(rate, burst_for(rate), now)
    }

    /// A full bucket of `rate` bytes a second holding at most `burst` bytes.
    pub fn with_burst(rate: u64, burst: u64, now: Instant) -> TokenBucket {
        let burst = burst.max(1);
        TokenBucket {
            rate: rate.max(1),
            burst,
            balance: i128::from(burst) * NANOS_PER_SEC,
            updated: now,
        }
    }

    /// The rate, in bytes a second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// The most bytes the bucket holds.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Whole bytes available at `now` (negative: owed by waiting takers).
    pub fn available(&mut self, now: Instant) -> i64 {
        self.refill(now);
        let bytes = self.balance / NANOS_PER_SEC;
        bytes.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// Charges `bytes` at `now` and returns how long the taker must wait
    /// before they count as sent or received: zero while the bucket had
    /// them, else the time the rate needs to pay off the balance.
    pub fn take(&mut self, bytes: u64, now: Instant) -> Duration {
        self.refill(now);
        self.balance -= i128::from(bytes) * NANOS_PER_SEC;
        if self.balance >= 0 {
            return Duration::ZERO;
        }
        let rate = i128::from(self.rate);
        let nanos = (-self.balance + rate - 1) / rate;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Charges `bytes` at `now` only if the bucket would still hold half
    /// its burst after them (or, for a burst below twice `bytes`, if it is
    /// full), and says whether it did. Takers that can wait
    /// for spare bytes use it (repeats of pieces already sent, see
    /// [`crate::peer::first_sent`]): while others keep the bucket drawn
    /// down they get nothing, and as soon as demand falls below the rate
    /// the bucket fills and they go.
    pub fn take_if_spare(&mut self, bytes: u64, now: Instant) -> bool {
        self.refill(now);
        let needed = (bytes + self.burst / 2).min(self.burst.max(bytes));
        let needed = i128::from(needed) * NANOS_PER_SEC;
        if self.balance < needed {
            return false;
        }
        self.balance -= i128::from(bytes) * NANOS_PER_SEC;
        true
    }

    /// Adds what flowed in since the last update, up to the burst. A time
    /// before the last update (another thread's clock reading, taken
    /// earlier) adds nothing.
    fn refill(&mut self, now: Instant) {
        let Some(elapsed) = now.checked_duration_since(self.updated) else {
            return;
        };
        let cap = i128::from(self.burst) * NANOS_PER_SEC;
        let added = (elapsed.as_nanos() as i128).saturating_mul(i128::from(self.rate));
        self.balance = self.balance.saturating_add(added).min(cap);
        self.updated = now;
    }
}

/// A [`TokenBucket`] shared by threads: the thin, locked wrapper that reads
/// the clock. It does not sleep itself: a peer thread told to wait goes on
/// with the rest of its loop (commands, the other direction) and holds
/// back only the transfer that was charged, until the wait is over.
#[derive(Debug)]
pub struct RateLimiter {
    rate: u64,
    bucket: Mutex<TokenBucket>,
    /// Active [`Share`]s: how many connections the rate is shared by.
    sharers: AtomicUsize,
    /// Every [`Share`], active or not.
    connections: AtomicUsize,
}

/// One connection's part of a [`RateLimiter`]: while it is active (the
/// connection is transferring) it is counted among those the rate is
/// shared by, so that each connection can size its requests to its part
/// ([`Share::fair_rate`]).
#[derive(Debug)]
pub struct Share {
    limiter: Arc<RateLimiter>,
    active: bool,
}

impl Share {
    /// The limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// Counts this connection among the sharers, or no longer. Returns
    /// whether it just became active.
    pub fn set_active(&mut self, active: bool) -> bool {
        if active == self.active {
            return false;
        }
        self.active = active;
        if active {
            self.limiter.sharers.fetch_add(1, Ordering::Relaxed);
        } else {
            self.limiter.sharers.fetch_sub(1, Ordering::Relaxed);
        }
        active
    }

    /// The rate divided by the active connections (at least 1, this one
    /// counted even if it is not active yet).
    pub fn fair_rate(&self) -> u64 {
        let others = self.limiter.sharers.load(Ordering::Relaxed) - usize::from(self.active);
        (self.limiter.rate / (others as u64 + 1)).max(1)
    }

    /// The rate divided by every connection, active or not: a cautious
    /// start for one that has no rate of its own yet, when many connect
    /// at once and few are active yet.
    pub fn start_rate(&self) -> u64 {
        let all = self.limiter.connections.load(Ordering::Relaxed).max(1);
        (self.limiter.rate / all as u64).max(1)
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.set_active(false);
        self.limiter.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RateLimiter {
    /// A limiter of `rate` bytes a second, or `None` for 0 (no limit).
    pub fn new(rate: u64) -> Option<Arc<RateLimiter>> {
        (rate > 0).then(|| {
            Arc::new(RateLimiter {
                rate,
                bucket: Mutex::new(TokenBucket::new(rate, Instant::now())),
                sharers: AtomicUsize::new(0),
                connections: AtomicUsize::new(0),
            })
        })
    }

    /// The limit, in bytes a second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// A share of the limit for one more connection, inactive at first.
    pub fn share(self: &Arc<Self>) -> Share {
        self.connections.fetch_add(1, Ordering::Relaxed);
        Share {
            limiter: Arc::clone(self),
            active: false,
        }
    }

    /// Charges `bytes` now and returns how long the caller waits before
    /// its next transfer (see [`TokenBucket::take`]).
    pub fn take(&self, bytes: u64) -> Duration {
        let mut bucket = self.lock();
        // Read inside the lock, so the bucket sees the times in order.
        bucket.take(bytes, Instant::now())
    }

    /// [`TokenBucket::take_if_spare`], now.
    pub fn take_if_spare(&self, bytes: u64) -> bool {
        let mut bucket = self.lock();
        bucket.take_if_spare(bytes, Instant::now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TokenBucket> {
        // The bucket is consistent after every statement: a panic elsewhere
        // while holding it leaves nothing half done.
        self.bucket
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The process's limits, one per direction; `None` is no limit. Cheap to
/// clone: every torrent's peers share the same buckets.
#[derive(Debug, Clone, Default)]
pub struct Bandwidth {
    /// Payload received from all peers together.
    pub download: Option<Arc<RateLimiter>>,
    /// Payload sent to all peers together.
    pub upload: Option<Arc<RateLimiter>>,
}

impl Bandwidth {
    /// Limits of `download` and `upload` bytes a second; 0 is no limit.
    pub fn new(download: u64, upload: u64) -> Bandwidth {
        Bandwidth {
            download: RateLimiter::new(download),
            upload: RateLimiter::new(upload),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: u64 = 16 * 1024;

    #[test]
    fn the_burst_is_a_twentieth_of_a_second_and_at_least_a_block() {
        assert_eq!(burst_for(1), MIN_BURST);
        assert_eq!(burst_for(100_000), MIN_BURST);
        assert_eq!(burst_for(10_000_000), 500_000);
    }

    #[test]
    fn a_full_bucket_gives_its_burst_at_once_and_then_waits() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::with_burst(100_000, 50_000, t0);
        assert_eq!(bucket.take(50_000, t0), Duration::ZERO);
        // 10,000 bytes more at 100,000 a second: 100 ms.
        assert_eq!(bucket.take(10_000, t0), Duration::from_millis(100));
        assert_eq!(bucket.available(t0), -10_000);
        assert_eq!(bucket.available(t0 + Duration::from_millis(100)), 0);
    }

    #[test]
    fn a_spare_taker_goes_only_while_half_the_burst_would_remain() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::with_burst(100_000, 50_000, t0);
        // Full (50,000): 20,000 leaves 30,000, above half the burst.
        assert!(bucket.take_if_spare(20_000, t0));
        assert_eq!(bucket.available(t0), 30_000);
        // 10,000 more would leave 20,000, below 25,000: refused, uncharged.
        assert!(!bucket.take_if_spare(10_000, t0));
        assert_eq!(bucket.available(t0), 30_000);
        // A taker in debt keeps it refused until the debt is paid and half
        // the burst has flowed back in.
        bucket.take(60_000, t0);
        let paid = t0 + Duration::from_millis(300);
        assert!(!bucket.take_if_spare(1, paid));
        let refilled = t0 + Duration::from_millis(600);
        assert!(bucket.take_if_spare(1, refilled));
        // A burst of one block: spare once the bucket is full again.
        let mut small = TokenBucket::with_burst(100_000, 16_384, t0);
        assert!(small.take_if_spare(16_384, t0));
        assert!(!small.take_if_spare(16_384, t0 + Duration::from_millis(100)));
        assert!(small.take_if_spare(16_384, t0 + Duration::from_millis(330)));
    }

    #[test]
    fn an_idle_bucket_holds_no_more_than_its_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1_000_000, t0);
        assert_eq!(bucket.burst(), 50_000);
        bucket.take(50_000, t0);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(bucket.available(later), 50_000);
        assert_eq!(bucket.take(50_000, later), Duration::ZERO);
        assert!(bucket.take(1, later) > Duration::ZERO);
    }

    #[test]
    fn a_time_before_the_last_update_adds_nothing() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut bucket = TokenBucket::with_burst(1000, 1000, t0);
        bucket.take(1000, t0);
        assert_eq!(bucket.available(t0 - Duration::from_millis(500)), 0);
        assert_eq!(bucket.available(t0 + Duration::from_millis(500)), 500);
    }

    /// Simulated time of `takers` threads that each take a block, wait as
    /// told (the block then goes), and take again, for `seconds`: the bytes
    /// of each that went before the end.
    fn run_takers(rate: u64, takers: usize, chunk: u64, seconds: u64) -> Vec<u64> {
        let t0 = Instant::now();
        let end = t0 + Duration::from_secs(seconds);
        let mut bucket = TokenBucket::new(rate, t0);
        // Each taker's next turn; the earliest goes first, as on a real clock.
        let mut next = vec![t0; takers];
        let mut taken = vec![0; takers];
        loop {
            let (who, &at) = next
                .iter()
                .enumerate()
                .min_by_key(|&(_, at)| *at)
                .expect("at least one taker");
            if at >= end {
                return taken;
            }
            let wait = bucket.take(chunk, at);
            if at + wait < end {
                taken[who] += chunk;
            }
            // A real sleep oversleeps a little: 100 µs here.
            let oversleep = if wait.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_micros(100)
            };
            next[who] = at + wait + oversleep;
        }
    }

    /// Asserts that `bytes` in `seconds` are the rate, within 1% below and
    /// at most the burst above.
    fn assert_rate(bytes: u64, rate: u64, seconds: u64) {
        let allowed = rate * seconds;
        assert!(
            bytes <= allowed + burst_for(rate),
            "rate {rate}: {bytes} bytes in {seconds} s, over the {allowed} allowed"
        );
        assert!(
            bytes as f64 >= 0.99 * allowed as f64,
            "rate {rate}: {bytes} bytes in {seconds} s, under the {allowed} allowed"
        );
    }

    #[test]
    fn one_taker_gets_the_rate_over_a_long_run_and_no_more_than_the_burst_above() {
        for rate in [20_000, 500_000, 10_000_000, 1_000_000_000] {
            let seconds = 60;
            let taken: u64 = run_takers(rate, 1, BLOCK, seconds).iter().sum();
            assert_rate(taken, rate, seconds);
        }
    }

    #[test]
    fn twenty_takers_share_the_rate_evenly() {
        let (rate, seconds) = (500_000, 60);
        let taken = run_takers(rate, 20, BLOCK, seconds);
        let total: u64 = taken.iter().sum();
        assert_rate(total, rate, seconds);
        let share = total / 20;
        for (who, &bytes) in taken.iter().enumerate() {
            let off = bytes.abs_diff(share) as f64 / share as f64;
            assert!(off < 0.02, "taker {who}: {bytes} against {share}");
        }
    }

    #[test]
    fn no_window_of_time_gets_more_than_the_rate_plus_the_burst_and_the_takers_debt() {
        // What a window of 100 ms gets: at most its share of the rate, the
        // burst, and the block each taker charged before waiting.
        let t0 = Instant::now();
        let (rate, takers) = (1_000_000_u64, 5);
        let mut bucket = TokenBucket::new(rate, t0);
        let mut next = vec![t0; takers];
        let mut log = Vec::new();
        while let Some((who, &at)) = next.iter().enumerate().min_by_key(|&(_, at)| *at) {
            if at >= t0 + Duration::from_secs(10) {
                break;
            }
            // The block goes when its wait is over.
            let wait = bucket.take(BLOCK, at);
            log.push(at + wait);
            next[who] = at + wait;
        }
        log.sort();
        let window = Duration::from_millis(100);
        let bound = rate / 10 + bucket.burst() + takers as u64 * BLOCK;
        for (i, &start) in log.iter().enumerate() {
            let in_window = log[i..].iter().take_while(|&&t| t < start + window).count() as u64;
            assert!(
                in_window * BLOCK <= bound,
                "{} bytes in 100 ms",
                in_window * BLOCK
            );
        }
    }

    #[test]
    fn zero_is_no_limit_and_takes_no_bucket() {
        let none = Bandwidth::new(0, 0);
        assert!(none.download.is_none() && none.upload.is_none());
        let some = Bandwidth::new(500_000, 0);
        assert_eq!(some.download.as_ref().map(|l| l.rate()), Some(500_000));
        assert!(some.upload.is_none());
    }

    #[test]
    fn the_fair_rate_divides_the_limit_by_the_connections_sharing_it() {
        let limiter = RateLimiter::new(1_000_000).unwrap();
        let mut a = limiter.share();
        assert_eq!(a.fair_rate(), 1_000_000);
        let mut shares: Vec<Share> = (0..19).map(|_| limiter.share()).collect();
        assert_eq!(a.fair_rate(), 1_000_000, "inactive shares are not counted");
        for share in &mut shares {
            assert!(share.set_active(true));
            assert!(!share.set_active(true), "already active");
        }
        assert_eq!(a.fair_rate(), 50_000, "19 others and this one");
        assert!(a.set_active(true));
        assert_eq!(a.fair_rate(), 50_000, "counted once when active");
        shares[0].set_active(false);
        assert_eq!(a.fair_rate(), 1_000_000 / 19);
        assert_eq!(a.start_rate(), 50_000, "every connection counts");
        drop(shares);
        assert_eq!(a.fair_rate(), 1_000_000, "dropped shares are not counted");
        assert_eq!(a.start_rate(), 1_000_000);
    }

    #[test]
    fn a_shared_limiter_charges_every_taker() {
        let limiter = RateLimiter::new(1_000_000).unwrap();
        let other = Arc::clone(&limiter);
        assert_eq!(limiter.take(50_000), Duration::ZERO, "the burst is free");
        // The burst is spent, and however long this thread pauses the
        // bucket holds at most 50,000 bytes again: the other taker waits
        // for at least the other 50,000, 50 ms.
        assert!(other.take(100_000) >= Duration::from_millis(50));
    }
}
