//! How many queries the node answers per source address: a token bucket per
//! address (IP and port), in a table of bounded size.
//!
//! Owns: the buckets and their eviction. Out of scope: what is answered
//! (the node's `server` part asks [`RateLimiter::allow`] before it answers
//! a query and drops the query when refused). Pure code, time passed in.
//!
//! The bucket is per address rather than per IP so that several nodes on
//! one machine (a test network on 127.0.0.1, or a household behind one
//! NAT) each get their share; the table's bound caps what a flood from
//! many ports can cost: when it is full, buckets idle for a while are
//! dropped, and if none is, queries from new addresses are refused until
//! some are.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Queries answered from one address in a burst.
pub const BURST: u32 = 40;

/// Queries per second answered from one address in the long run.
pub const PER_SECOND: u32 = 10;

/// Addresses tracked at once.
pub const MAX_ADDRESSES: usize = 10_000;

/// A bucket untouched for this long is full again, so it can be forgotten.
const IDLE: Duration = Duration::from_secs(BURST.div_ceil(PER_SECOND) as u64 + 1);

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The per-address buckets.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: HashMap<SocketAddr, Bucket>,
    refused: u64,
}

impl RateLimiter {
    /// An empty limiter.
    pub fn new() -> RateLimiter {
        RateLimiter::default()
    }

    /// Whether a query from `from` at `now` may be answered; takes one token
    /// from its bucket when it may.
    pub fn allow(&mut self, from: SocketAddr, now: Instant) -> bool {
        if !self.buckets.contains_key(&from) && self.buckets.len() >= MAX_ADDRESSES {
            self.buckets
                .retain(|_, b| now.saturating_duration_since(b.at) < IDLE);
            if self.buckets.len() >= MAX_ADDRESSES {
                self.refused += 1;
                return false;
            }
        }
        let bucket = self.buckets.entry(from).or_insert(Bucket {
            tokens: f64::from(BURST),
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * f64::from(PER_SECOND)).min(f64::from(BURST));
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            self.refused += 1;
            false
        }
    }

    /// Addresses tracked now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Queries refused so far.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), port)
    }

    #[test]
    fn a_burst_is_answered_then_the_rate_refills_it() {
        let mut limiter = RateLimiter::new();
        let now = Instant::now();
        for _ in 0..BURST {
            assert!(limiter.allow(addr(1), now));
        }
        assert!(!limiter.allow(addr(1), now));
        assert_eq!(limiter.refused(), 1);
        // Another address has its own bucket.
        assert!(limiter.allow(addr(2), now));
        // A tenth of a second later: one more token at 10 a second.
        let later = now + Duration::from_millis(100);
        assert!(limiter.allow(addr(1), later));
        assert!(!limiter.allow(addr(1), later));
        // Long idle: a full burst again, never more.
        let much_later = now + Duration::from_secs(3600);
        for _ in 0..BURST {
            assert!(limiter.allow(addr(1), much_later));
        }
        assert!(!limiter.allow(addr(1), much_later));
    }

    #[test]
    fn the_table_is_bounded_and_idle_buckets_make_room() {
        let mut limiter = RateLimiter::new();
        let now = Instant::now();
        for n in 0..MAX_ADDRESSES {
            let ip = IpAddr::V4(Ipv4Addr::from(n as u32 + 1));
            assert!(limiter.allow(SocketAddr::new(ip, 1), now));
        }
        assert_eq!(limiter.len(), MAX_ADDRESSES);
        assert!(!limiter.allow(addr(9), now), "full of busy addresses");
        assert!(limiter.len() <= MAX_ADDRESSES);
        let later = now + IDLE;
        assert!(limiter.allow(addr(9), later), "idle buckets were dropped");
        assert_eq!(limiter.len(), 1);
    }
}
