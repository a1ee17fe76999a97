//! A rate in bytes a second, as `--max-download-rate` and
//! `--max-upload-rate` take it: `500K`, `1.5MiB`, `0` for no limit. Pure
//! text to number; what a rate limits is the [`bandwidth`](super) module's.

/// Parses a rate in bytes a second: a number (a fraction allowed, as in
/// `1.5`) and an optional unit, in any case, optionally followed by `/s`.
/// `K`, `M`, `G` and `KB`, `MB`, `GB` are powers of 1000; `KiB`, `MiB`,
/// `GiB` (or `Ki`, `Mi`, `Gi`) powers of 1024; no unit or `B` is bytes.
/// `0` means no limit. A fraction of a byte is rounded down.
///
/// # Errors
/// A message saying why `text` is not a rate: empty, negative, not a
/// number, an unknown unit, too large for 64 bits, or a rate that is not
/// zero but below one byte a second.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty rate: give bytes a second, as in 500K or 1.5MiB".into());
    }
    if trimmed.starts_with('-') {
        return Err("a rate cannot be negative (0 means no limit)".into());
    }
    let body = trimmed
        .strip_suffix("/s")
        .or_else(|| trimmed.strip_suffix("/S"))
        .unwrap_or(trimmed);
    let split = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, unit) = body.split_at(split);
    let multiplier: u128 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1000_u128.pow(2),
        "g" | "gb" => 1000_u128.pow(3),
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "unknown unit {:?}: use K, M, G (powers of 1000) or KiB, MiB, GiB (powers of 1024)",
                unit.trim_start()
            ));
        }
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err("not a number: give bytes a second, as in 500K or 1.5MiB".into());
    }
    // 19 decimals already divide a byte of GiB/s into nothing.
    if fraction.len() > 18 {
        return Err("too many decimals".into());
    }
    let too_large = || "too large: at most 2^64 - 1 bytes a second".to_string();
    let digits = |s: &str| -> Result<u128, String> {
        if s.is_empty() {
            Ok(0)
        } else {
            s.parse::<u128>().map_err(|_| too_large())
        }
    };
    let scale = 10_u128.pow(fraction.len() as u32);
    let mantissa = digits(whole)?
        .checked_mul(scale)
        .and_then(|m| m.checked_add(digits(fraction).ok()?))
        .ok_or_else(too_large)?;
    let bytes = mantissa.checked_mul(multiplier).ok_or_else(too_large)? / scale;
    if bytes == 0 && mantissa != 0 {
        return Err("below 1 byte a second (0 means no limit)".into());
    }
    u64::try_from(bytes).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_to_exact_bytes_with_1000_and_1024_units() {
        for (text, bytes) in [
            ("0", 0),
            ("100000", 100_000),
            ("500K", 500_000),
            ("500k", 500_000),
            ("750KB", 750_000),
            ("750kB/s", 750_000),
            ("10M", 10_000_000),
            ("10MB", 10_000_000),
            ("2G", 2_000_000_000),
            ("1GB", 1_000_000_000),
            ("1KiB", 1024),
            ("64ki", 65_536),
            ("1.5MiB", 1_572_864),
            ("1.5M", 1_500_000),
            ("2GiB", 2_147_483_648),
            (".5K", 500),
            ("5.", 5),
            ("1.0000001K", 1000),
            ("100 K", 100_000),
            (" 3M ", 3_000_000),
            ("12B", 12),
            ("0K", 0),
            ("0.0", 0),
            ("18446744073709551615", u64::MAX),
        ] {
            assert_eq!(parse_rate(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn bad_rates_are_errors_saying_why() {
        for (text, why) in [
            ("", "empty"),
            ("   ", "empty"),
            ("-5K", "negative"),
            ("-0", "negative"),
            ("10Q", "unknown unit"),
            ("10 kbit", "unknown unit"),
            ("K", "not a number"),
            (".", "not a number"),
            ("1.2.3", "not a number"),
            ("1e6", "unknown unit"),
            ("18446744073709551616", "too large"),
            ("20000000000G", "too large"),
            ("99999999999999999999999999999999999999999999", "too large"),
            ("0.5", "below 1 byte"),
            ("0.0001K", "below 1 byte"),
            ("1.0000000000000000000", "too many decimals"),
        ] {
            let e = parse_rate(text).unwrap_err();
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }
}
