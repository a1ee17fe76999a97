//! The clocks of the UDP tracker protocol (BEP 15), pure with time passed
//! in: how long to wait for an answer before sending a request again, and
//! how long a connection id may be used.

use std::time::{Duration, Instant};

/// How long a connection id may be reused after the connect answer.
pub const CONNECTION_ID_LIFETIME: Duration = Duration::from_secs(60);
/// The first wait for an answer; it doubles after each silence.
const FIRST_WAIT: Duration = Duration::from_secs(15);
/// The largest `n` of the wait `15 × 2^n` seconds (3,840 s).
pub const MAX_RETRANSMITS: u32 = 8;

/// The retransmit schedule: after sending a request, wait `15 × 2^n`
/// seconds for its answer, then send it again with `n + 1`, up to
/// `n = 8`. An answer resets `n` to 0. It outlives one announce attempt:
/// an attempt cut short by the tracker timeout leaves `n` where it was,
/// and the next attempt goes on from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retransmit {
    n: u32,
}

impl Retransmit {
    /// The wait for an answer to a request sent now.
    pub fn wait(self) -> Duration {
        FIRST_WAIT * (1 << self.n)
    }

    /// The current `n`.
    pub fn n(self) -> u32 {
        self.n
    }

    /// A request went unanswered: `true` to send it again (with a longer
    /// wait), `false` once the `n = 8` wait passed too (`n` stays 8).
    pub fn timed_out(&mut self) -> bool {
        if self.n >= MAX_RETRANSMITS {
            return false;
        }
        self.n += 1;
        true
    }

    /// The tracker answered.
    pub fn answered(&mut self) {
        self.n = 0;
    }
}

/// One send of a request and the wait for its answer, with a deadline for
/// the whole attempt (the tracker timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    resend_at: Instant,
    deadline: Instant,
}

/// What to do when a wait for an answer ends with none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// Keep waiting until this instant.
    Wait(Instant),
    /// Send the request again, then wait until this instant.
    Resend(Instant),
    /// Give up this attempt.
    GiveUp,
}

impl Attempt {
    /// An attempt whose first request is sent at `now`, given up at `deadline`.
    pub fn new(schedule: Retransmit, now: Instant, deadline: Instant) -> Attempt {
        Attempt {
            resend_at: now + schedule.wait(),
            deadline,
        }
    }

    /// When to stop waiting for the current send's answer.
    pub fn wait_until(&self) -> Instant {
        self.resend_at.min(self.deadline)
    }

    /// No answer came by `now`: what next, moving `schedule` on when a
    /// wait of the schedule passed.
    pub fn silence(&mut self, schedule: &mut Retransmit, now: Instant) -> Silence {
        if now < self.resend_at && now < self.deadline {
            return Silence::Wait(self.wait_until());
        }
        if now >= self.resend_at && !schedule.timed_out() {
            return Silence::GiveUp;
        }
        if now >= self.deadline {
            return Silence::GiveUp;
        }
        self.resend_at = now + schedule.wait();
        Silence::Resend(self.wait_until())
    }
}

/// The connection id of a UDP tracker, and when it was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Connection {
    id: Option<(u64, Instant)>,
}

impl Connection {
    /// The id, while younger than [`CONNECTION_ID_LIFETIME`] at `now`.
    pub fn id(&self, now: Instant) -> Option<u64> {
        self.id
            .filter(|&(_, at)| now.saturating_duration_since(at) < CONNECTION_ID_LIFETIME)
            .map(|(id, _)| id)
    }

    /// A connect answer gave `id` at `now`.
    pub fn set(&mut self, id: u64, now: Instant) {
        self.id = Some((id, now));
    }

    /// Drops the id (the tracker answered with an error, which may mean it
    /// no longer knows it).
    pub fn forget(&mut self) {
        self.id = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn waits_are_15_times_powers_of_two_up_to_n_8() {
        let mut r = Retransmit::default();
        let mut waits = vec![r.wait().as_secs()];
        while r.timed_out() {
            waits.push(r.wait().as_secs());
        }
        assert_eq!(waits, [15, 30, 60, 120, 240, 480, 960, 1920, 3840]);
        assert_eq!(r.n(), 8);
        assert!(!r.timed_out(), "no wait after n = 8");
        r.answered();
        assert_eq!(r.wait(), secs(15));
    }

    #[test]
    fn an_attempt_resends_on_the_schedule_until_its_deadline() {
        let t0 = Instant::now();
        let mut schedule = Retransmit::default();
        let mut attempt = Attempt::new(schedule, t0, t0 + secs(100));
        assert_eq!(attempt.wait_until(), t0 + secs(15));
        // Woken early (a datagram of another transaction): wait on.
        assert_eq!(
            attempt.silence(&mut schedule, t0 + secs(3)),
            Silence::Wait(t0 + secs(15))
        );
        assert_eq!(
            attempt.silence(&mut schedule, t0 + secs(15)),
            Silence::Resend(t0 + secs(45))
        );
        assert_eq!(
            attempt.silence(&mut schedule, t0 + secs(45)),
            Silence::Resend(t0 + secs(100)),
            "the 60 s wait is cut at the deadline"
        );
        assert_eq!(
            attempt.silence(&mut schedule, t0 + secs(100)),
            Silence::GiveUp
        );
        assert_eq!(schedule.n(), 2);
        // The next attempt goes on where this one left off.
        let t1 = t0 + secs(500);
        let attempt = Attempt::new(schedule, t1, t1 + secs(1000));
        assert_eq!(attempt.wait_until(), t1 + secs(60));
    }

    #[test]
    fn a_tracker_timeout_shorter_than_the_first_wait_gives_up_after_one_send() {
        let t0 = Instant::now();
        let mut schedule = Retransmit::default();
        let mut attempt = Attempt::new(schedule, t0, t0 + secs(5));
        assert_eq!(attempt.wait_until(), t0 + secs(5));
        assert_eq!(
            attempt.silence(&mut schedule, t0 + secs(5)),
            Silence::GiveUp
        );
        assert_eq!(schedule.n(), 0, "no wait of the schedule passed");
    }

    #[test]
    fn the_schedule_gives_up_after_the_n_8_wait() {
        let t0 = Instant::now();
        let mut schedule = Retransmit::default();
        for _ in 0..MAX_RETRANSMITS {
            assert!(schedule.timed_out());
        }
        let far = t0 + secs(100_000);
        let mut attempt = Attempt::new(schedule, t0, far);
        assert_eq!(attempt.wait_until(), t0 + secs(3840));
        assert_eq!(
            attempt.silence(&mut schedule, t0 + secs(3840)),
            Silence::GiveUp
        );
    }

    #[test]
    fn a_connection_id_is_used_for_a_minute() {
        let t0 = Instant::now();
        let mut c = Connection::default();
        assert_eq!(c.id(t0), None);
        c.set(42, t0);
        assert_eq!(c.id(t0), Some(42));
        assert_eq!(c.id(t0 + secs(59)), Some(42));
        assert_eq!(c.id(t0 + secs(60)), None);
        c.set(43, t0 + secs(60));
        assert_eq!(c.id(t0 + secs(61)), Some(43));
        c.forget();
        assert_eq!(c.id(t0 + secs(61)), None);
    }
}
