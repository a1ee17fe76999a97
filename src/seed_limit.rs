//! How long a torrent keeps seeding: `--seed-ratio` and `--seed-time`,
//! and the parsing of their values. Pure code, time passed in.
//!
//! The ratio is the bytes uploaded in this run, during the download too (as
//! aria2 counts it), over the size downloaded (with `--files`, that of the
//! chosen files' pieces); the time runs from the moment the content is
//! complete (at the end of the download, or at the start of
//! a seed run, `-s`). The first limit reached ends the torrent. Owns no
//! state of the run: the piece manager asks [`SeedLimit::reached`].

use std::fmt;
use std::time::Duration;

/// When a complete torrent stops seeding; no limit at all means "never by
/// itself" (a seed run with neither option ends with Ctrl-C).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SeedLimit {
    /// Stop once bytes uploaded / size reaches this (`--seed-ratio`).
    pub ratio: Option<f64>,
    /// Stop once seeding has lasted this long (`--seed-time`).
    pub time: Option<Duration>,
}

/// Which limit ended the seeding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reached {
    /// The ratio was reached: this is the ratio at that moment.
    Ratio(f64),
    /// The seed time was over.
    Time(Duration),
}

impl fmt::Display for Reached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reached::Ratio(ratio) => write!(f, "share ratio {ratio:.2} reached"),
            Reached::Time(time) => write!(f, "seed time {} over", show_duration(*time)),
        }
    }
}

impl SeedLimit {
    /// Whether any limit is set.
    pub fn is_set(&self) -> bool {
        self.ratio.is_some() || self.time.is_some()
    }

    /// Whether seeding should end, after `seeding_for` of seeding, with
    /// `uploaded` bytes sent this run of a torrent of `total_len` bytes.
    /// An empty torrent has reached any ratio.
    pub fn reached(&self, uploaded: u64, total_len: u64, seeding_for: Duration) -> Option<Reached> {
        if let Some(ratio) = self.ratio {
            let now = if total_len == 0 {
                f64::INFINITY
            } else {
                uploaded as f64 / total_len as f64
            };
            if now >= ratio {
                return Some(Reached::Ratio(now));
            }
        }
        match self.time {
            Some(time) if seeding_for >= time => Some(Reached::Time(time)),
            _ => None,
        }
    }
}

impl fmt::Display for SeedLimit {
    /// "ratio 1.50 or 30m", "ratio 2.00", "2h", or "Ctrl-C".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ratio, self.time) {
            (Some(ratio), Some(time)) => write!(f, "ratio {ratio:.2} or {}", show_duration(time)),
            (Some(ratio), None) => write!(f, "ratio {ratio:.2}"),
            (None, Some(time)) => f.write_str(&show_duration(time)),
            (None, None) => f.write_str("Ctrl-C"),
        }
    }
}

/// A duration in its largest whole unit: `90s`, `30m`, `2h`, `1h30m`.
pub fn show_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 && d.subsec_millis() > 0 {
        return format!("{}ms", d.subsec_millis());
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// Longest `--seed-time` taken: a year (beyond that, Ctrl-C is the limit).
const MAX_SEED_TIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// Parses a `--seed-time`: a whole number with a unit, `s` (seconds), `m`
/// (minutes) or `h` (hours), or a bare number meaning minutes, as aria2's
/// `--seed-time` does: `90s`, `30m`, `2h`, `5`.
///
/// # Errors
/// What is wrong with `text`, for clap to show with the flag's name.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "m"),
    };
    if number.is_empty() {
        return Err(format!(
            "{text:?} is not a duration: give a whole number with s, m or h, as in 90s, 30m, 2h \
             (a bare number is minutes)"
        ));
    }
    let per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit {unit:?}: use s, m or h, as in 90s, 30m, 2h"
            ));
        }
    };
    let seconds = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(per_unit))
        .map(Duration::from_secs)
        .filter(|d| *d <= MAX_SEED_TIME)
        .ok_or_else(|| format!("{text:?} is longer than a year, the most taken"))?;
    Ok(seconds)
}

/// Parses a `--seed-ratio`: a number of 0 or more, such as `1`, `1.5` or
/// `0.25` (0 ends the seeding at once).
///
/// # Errors
/// What is wrong with `text`: not a number, negative, not finite.
pub fn parse_ratio(text: &str) -> Result<f64, String> {
    let ratio: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number: give a ratio such as 1 or 1.5"))?;
    if !ratio.is_finite() || ratio < 0.0 {
        return Err(format!("{text:?} is not a ratio of 0 or more"));
    }
    Ok(ratio)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_seconds_minutes_hours_and_bare_minutes() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(30 * 60)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(2 * 3600)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5 * 60)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
    }

    #[test]
    fn bad_durations_say_what_is_wrong() {
        for (bad, says) in [
            ("", "not a duration"),
            ("s", "not a duration"),
            ("-5m", "not a duration"),
            ("1.5h", "unknown unit"),
            ("10d", "unknown unit"),
            ("10 m", "unknown unit"),
            ("99999999999999999999h", "longer than a year"),
            ("9000h", "longer than a year"),
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn ratios_are_finite_and_not_negative() {
        assert_eq!(parse_ratio("1"), Ok(1.0));
        assert_eq!(parse_ratio("1.5"), Ok(1.5));
        assert_eq!(parse_ratio("0"), Ok(0.0));
        for bad in ["-1", "abc", "", "inf", "NaN", "1e999"] {
            assert!(parse_ratio(bad).is_err(), "{bad:?} taken");
        }
    }

    #[test]
    fn the_first_limit_reached_ends_the_seeding() {
        let both = SeedLimit {
            ratio: Some(1.0),
            time: Some(Duration::from_secs(60)),
        };
        assert_eq!(both.reached(999, 1000, Duration::from_secs(59)), None);
        assert_eq!(
            both.reached(1000, 1000, Duration::ZERO),
            Some(Reached::Ratio(1.0))
        );
        assert_eq!(
            both.reached(10, 1000, Duration::from_secs(60)),
            Some(Reached::Time(Duration::from_secs(60)))
        );
        let ratio = SeedLimit {
            ratio: Some(2.0),
            time: None,
        };
        assert_eq!(
            ratio.reached(1999, 1000, Duration::from_secs(1 << 30)),
            None
        );
        assert!(
            ratio.reached(0, 0, Duration::ZERO).is_some(),
            "empty torrent"
        );
        assert_eq!(
            SeedLimit::default().reached(u64::MAX, 1, Duration::MAX),
            None
        );
        let zero = SeedLimit {
            ratio: None,
            time: Some(Duration::ZERO),
        };
        assert!(zero.reached(0, 1000, Duration::ZERO).is_some());
    }

    #[test]
    fn limits_and_durations_read_as_given() {
        assert_eq!(show_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(show_duration(Duration::from_secs(1800)), "30m");
        assert_eq!(show_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(show_duration(Duration::ZERO), "0s");
        assert_eq!(show_duration(Duration::from_millis(1500)), "1s");
        let both = SeedLimit {
            ratio: Some(1.5),
            time: Some(Duration::from_secs(1800)),
        };
        assert_eq!(both.to_string(), "ratio 1.50 or 30m");
        assert_eq!(SeedLimit::default().to_string(), "Ctrl-C");
        assert_eq!(Reached::Ratio(1.02).to_string(), "share ratio 1.02 reached");
    }
}
