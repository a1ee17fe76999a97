//! Announce tokens (BEP 5, "get_peers" and "announce_peer"): what we give a
//! node in answer to `get_peers` and check when it then sends `announce_peer`,
//! so that a node can only announce the address it queries us from.
//!
//! A token is the first [`TOKEN_LEN`] bytes of SHA-1 over a secret and the
//! requester's IP address. The secret is replaced every [`ROTATE_EVERY`];
//! tokens made with the previous one are still accepted, so a token is
//! good for 5 to 10 minutes. Owns only the secrets: no state per node, so
//! the memory it takes does not grow with the queries. Pure code, time
//! passed in, randomness from a seedable generator.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

/// Bytes in the tokens we give out.
pub const TOKEN_LEN: usize = 8;

/// How often the secret changes (BEP 5 suggests 5 minutes).
pub const ROTATE_EVERY: Duration = Duration::from_secs(5 * 60);

/// A token we give out.
pub type Token = [u8; TOKEN_LEN];

/// The current and previous secrets.
#[derive(Debug)]
pub struct TokenSecrets {
    rng: fastrand::Rng,
    current: [u8; 20],
    previous: [u8; 20],
    rotated_at: Instant,
}

impl TokenSecrets {
    /// Fresh secrets drawn from `rng` (seed it for deterministic tests).
    pub fn new(mut rng: fastrand::Rng, now: Instant) -> TokenSecrets {
        let mut current = [0; 20];
        let mut previous = [0; 20];
        rng.fill(&mut current);
        rng.fill(&mut previous);
        TokenSecrets {
            rng,
            current,
            previous,
            rotated_at: now,
        }
    }

    /// The token for a node querying from `ip`, to send in a `get_peers` response.
    pub fn token_for(&mut self, ip: IpAddr, now: Instant) -> Token {
        self.rotate(now);
        make_token(&self.current, ip)
    }

    /// Whether `token`, presented in an `announce_peer` from `ip`, is one we
    /// gave that address within the last one or two periods.
    pub fn check(&mut self, token: &[u8], ip: IpAddr, now: Instant) -> bool {
        self.rotate(now);
        token == make_token(&self.current, ip) || token == make_token(&self.previous, ip)
    }

    fn rotate(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.rotated_at);
        if elapsed < ROTATE_EVERY {
            return;
        }
        self.previous = self.current;
        self.rng.fill(&mut self.current);
        // After two periods of silence, the old current secret is too old to keep.
        if elapsed >= 2 * ROTATE_EVERY {
            self.rng.fill(&mut self.previous);
        }
        self.rotated_at = now;
    }
}

fn make_token(secret: &[u8; 20], ip: IpAddr) -> Token {
    let mut sha = Sha1::new();
    sha.update(secret);
    match ip {
        // An IPv4-mapped IPv6 source is the same node as its IPv4 address.
        IpAddr::V4(v4) => sha.update(v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => sha.update(v4.octets()),
            None => sha.update(v6.octets()),
        },
    }
    let digest: [u8; 20] = sha.finalize().into();
    let mut out = [0; TOKEN_LEN];
    out.copy_from_slice(&digest[..TOKEN_LEN]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn secrets() -> (TokenSecrets, Instant) {
        let now = Instant::now();
        (TokenSecrets::new(fastrand::Rng::with_seed(5), now), now)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn token_is_sha1_of_the_secret_and_the_address() {
        let (mut s, t0) = secrets();
        let mut sha = Sha1::new();
        sha.update(s.current);
        sha.update([127, 0, 0, 1]);
        let digest: [u8; 20] = sha.finalize().into();
        assert_eq!(s.token_for(ip("127.0.0.1"), t0), digest[..TOKEN_LEN]);
    }

    #[test]
    fn a_token_is_accepted_only_from_the_address_it_was_given_to() {
        let (mut s, t0) = secrets();
        let token = s.token_for(ip("127.0.0.1"), t0);
        assert!(s.check(&token, ip("127.0.0.1"), t0));
        assert!(!s.check(&token, ip("127.0.0.2"), t0));
        assert!(!s.check(&token[..4], ip("127.0.0.1"), t0));
        assert!(!s.check(b"", ip("127.0.0.1"), t0));
        let v6 = s.token_for(ip("::1"), t0);
        assert!(s.check(&v6, ip("::1"), t0));
        assert!(s.check(&token, ip("::ffff:127.0.0.1"), t0));
    }

    #[test]
    fn tokens_outlive_one_rotation_but_not_two() {
        let (mut s, t0) = secrets();
        let old = s.token_for(ip("127.0.0.1"), t0 + 4 * MIN);
        let newer = s.token_for(ip("127.0.0.1"), t0 + 5 * MIN);
        assert_ne!(old, newer, "the secret rotated at minute 5");
        assert!(s.check(&old, ip("127.0.0.1"), t0 + 9 * MIN));
        assert!(s.check(&newer, ip("127.0.0.1"), t0 + 9 * MIN));
        assert!(!s.check(&old, ip("127.0.0.1"), t0 + 10 * MIN));
        assert!(s.check(&newer, ip("127.0.0.1"), t0 + 10 * MIN));
        assert!(!s.check(&newer, ip("127.0.0.1"), t0 + 15 * MIN));
    }

    #[test]
    fn after_a_long_silence_no_old_token_is_accepted() {
        let (mut s, t0) = secrets();
        let token = s.token_for(ip("127.0.0.1"), t0);
        assert!(!s.check(&token, ip("127.0.0.1"), t0 + 11 * MIN));
        assert!(!s.check(&token, ip("127.0.0.1"), t0 + 60 * MIN));
    }
}
