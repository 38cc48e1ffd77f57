//! Human-written quantities in the catalog: durations (`"2m"`, `"1m30s"`) and memory
//! sizes (`"16 GB"`, `"64+ GB"`).
//!
//! Hand-written rather than a crate because the grammar is tiny and the error text
//! should speak the catalog's language.

use std::time::Duration;

/// Parses `"500ms"`, `"30s"`, `"2m"`, `"1h"` and sums such as `"1h30m"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration; write e.g. \"30s\", \"2m\" or \"1h\"".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("`{s}` is not a duration; write e.g. \"30s\", \"2m\" or \"1h\""));
        }
        let value: u64 = rest[..digits].parse().map_err(|_| format!("`{s}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let millis_per_unit = match rest[..unit_len].trim() {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => {
                return Err(format!("`{s}` lacks a unit; write e.g. \"{value}s\" or \"{value}m\""))
            }
            other => {
                return Err(format!("unknown duration unit `{other}` in `{s}`; use ms, s, m or h"))
            }
        };
        let millis = value
            .checked_mul(millis_per_unit)
            .ok_or_else(|| format!("`{s}`: duration too large"))?;
        total += Duration::from_millis(millis);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Formats a duration the way the catalog writes it, for messages and `hearth models`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs, d.subsec_millis()) {
        (0, ms) => format!("{ms}ms"),
        (s, 0) if s % 3600 == 0 => format!("{}h", s / 3600),
        (s, 0) if s % 60 == 0 => format!("{}m", s / 60),
        (s, 0) => format!("{s}s"),
        _ => format!("{}ms", d.as_millis()),
    }
}

const KIB: f64 = 1024.0;

/// A memory size and whether it was written open-ended (`"64+ GB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub bytes: u64,
    pub open_ended: bool,
}

/// Parses `"4 GB"`, `"1.5GB"`, `"512 MiB"`, `"64+ GB"`.
///
/// Units are binary (1 GB = 2^30 bytes) because RAM and GPU memory are sold in binary
/// sizes: a "16 GB" laptop has 16 GiB installed, and the seed's tier tables speak of
/// such machines. `GiB`-style spellings mean the same.
pub fn parse_size(text: &str) -> Result<Size, String> {
    let s = text.trim();
    let number_len = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    if number_len == 0 {
        return Err(format!("`{s}` is not a memory size; write e.g. \"16 GB\""));
    }
    let value: f64 = s[..number_len]
        .parse()
        .map_err(|_| format!("`{s}` is not a memory size; write e.g. \"16 GB\""))?;
    let mut rest = s[number_len..].trim_start();
    let open_ended = rest.starts_with('+');
    if open_ended {
        rest = rest[1..].trim_start();
    }
    let scale = match rest.to_ascii_lowercase().as_str() {
        "b" => 1.0,
        "kb" | "kib" => KIB,
        "mb" | "mib" => KIB * KIB,
        "gb" | "gib" => KIB * KIB * KIB,
        "tb" | "tib" => KIB * KIB * KIB * KIB,
        "" => return Err(format!("`{s}` lacks a unit; write e.g. \"{value} GB\"")),
        other => {
            return Err(format!("unknown size unit `{other}` in `{s}`; use B, KB, MB, GB or TB"))
        }
    };
    let bytes = (value * scale).round();
    if bytes < 1.0 {
        return Err(format!("memory size `{s}` must be positive"));
    }
    if bytes >= u64::MAX as f64 {
        return Err(format!("memory size `{s}` is too large"));
    }
    Ok(Size { bytes: bytes as u64, open_ended })
}

/// Formats bytes in the catalog's units, e.g. `16 GB` or `1.5 GB`.
pub fn format_size(bytes: u64) -> String {
    let gb = bytes as f64 / (KIB * KIB * KIB);
    if gb >= 1.0 {
        if (gb - gb.round()).abs() < 0.05 {
            format!("{} GB", gb.round())
        } else {
            format!("{gb:.1} GB")
        }
    } else {
        format!("{} MB", (bytes as f64 / (KIB * KIB)).round())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_seconds_minutes_hours_and_sums() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2 m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_without_a_known_unit_are_refused_with_a_hint() {
        assert!(parse_duration("5").unwrap_err().contains("lacks a unit"));
        assert!(parse_duration("5 minutes").unwrap_err().contains("unknown duration unit"));
        assert!(parse_duration("m").unwrap_err().contains("not a duration"));
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn durations_format_back_to_catalog_spelling() {
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn sizes_are_binary_and_may_be_open_ended() {
        let gib = 1u64 << 30;
        assert_eq!(parse_size("16 GB"), Ok(Size { bytes: 16 * gib, open_ended: false }));
        assert_eq!(parse_size("64+ GB"), Ok(Size { bytes: 64 * gib, open_ended: true }));
        assert_eq!(parse_size("1.5GiB"), Ok(Size { bytes: 3 * gib / 2, open_ended: false }));
        assert_eq!(parse_size("512 MB").map(|s| s.bytes), Ok(512 << 20));
    }

    #[test]
    fn sizes_must_be_positive_and_carry_a_unit() {
        assert!(parse_size("0 GB").unwrap_err().contains("positive"));
        assert!(parse_size("16").unwrap_err().contains("lacks a unit"));
        assert!(parse_size("-4 GB").is_err());
        assert!(parse_size("16 parsecs").unwrap_err().contains("unknown size unit"));
    }

    #[test]
    fn sizes_format_in_whole_or_tenth_gigabytes() {
        assert_eq!(format_size(16 << 30), "16 GB");
        assert_eq!(format_size(3 << 29), "1.5 GB");
        assert_eq!(format_size(98_362_432), "94 MB");
    }
}
