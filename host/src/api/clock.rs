//! Times as Ollama's clients read them: RFC 3339 in UTC, with nanoseconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `time` as `2026-12-04T11:30:00.123456789Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since_epoch.subsec_nanos()
    )
}

/// A Unix time in milliseconds, as hearth's scheduler reports times, in RFC 3339.
pub fn rfc3339_from_ms(unix_ms: u64) -> String {
    rfc3339(UNIX_EPOCH + Duration::from_millis(unix_ms))
}

/// The calendar date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_rfc3339_in_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        // 2024-02-29 12:34:56.789 UTC, a leap day.
        assert_eq!(rfc3339_from_ms(1_709_210_096_789), "2024-02-29T12:34:56.789000000Z");
        assert_eq!(rfc3339_from_ms(1_798_761_599_000), "2026-12-31T23:59:59.000000000Z");
    }
}
