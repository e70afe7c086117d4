//! Absolute times in RTSP: `clock=` ranges (`YYYYMMDDThhmmss[.f]Z`) and ISO 8601 positions in
//! URLs, to and from µs since the Unix epoch (UTC, no leap seconds).

use rtsp_types::headers::UtcTime;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// µs since the epoch of a date and time, `None` if a field is out of range.
fn to_us(year: i64, month: u32, day: u32, hms: (u32, u32, u32), frac_us: u32) -> Option<i64> {
    let (h, m, s) = hms;
    let valid = (1..=12).contains(&month) && (1..=31).contains(&day) && h < 24 && m < 60 && s < 61;
    if !valid || !(1970..=9999).contains(&year) {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + i64::from(h * 3600 + m * 60 + s);
    Some(secs * 1_000_000 + i64::from(frac_us))
}

/// µs since the epoch of an RTSP `clock=` time.
pub fn utc_to_us(t: &UtcTime) -> Option<i64> {
    let frac_us = t.nanoseconds.unwrap_or(0) / 1_000;
    let (date, time) = (t.date, t.time);
    let hms = (time / 10_000, time / 100 % 100, time % 100);
    to_us(i64::from(date / 10_000), date / 100 % 100, date % 100, hms, frac_us)
}

/// An RTSP `clock=` time of µs since the epoch (whole ms kept).
pub fn us_to_utc(time_us: i64) -> UtcTime {
    let secs = time_us.div_euclid(1_000_000);
    let frac_us = time_us.rem_euclid(1_000_000) as u32;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400) as u32;
    UtcTime {
        date: (y.clamp(0, 9999) as u32) * 10_000 + mo * 100 + d,
        time: (sod / 3600) * 10_000 + (sod / 60 % 60) * 100 + sod % 60,
        nanoseconds: (frac_us > 0).then_some(frac_us / 1_000 * 1_000_000),
    }
}

/// µs since the epoch of a URL position: ms since the epoch (`1733212800000`) or ISO 8601 UTC
/// (`2026-12-03T06:00:00Z`, `2026-12-03T06:00:00.250Z`; a missing `Z` means UTC too).
pub fn position_to_us(text: &str) -> Option<i64> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().ok()?.checked_mul(1_000);
    }
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = text.split_once('T')?;
    let mut date_parts = date.split('-');
    let year: i64 = date_parts.next()?.parse().ok()?;
    let month: u32 = date_parts.next()?.parse().ok()?;
    let day: u32 = date_parts.next()?.parse().ok()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut time_parts = hms.split(':');
    let h: u32 = time_parts.next()?.parse().ok()?;
    let m: u32 = time_parts.next()?.parse().ok()?;
    let s: u32 = time_parts.next().unwrap_or("0").parse().ok()?;
    if date_parts.next().is_some() || time_parts.next().is_some() {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    let frac_us = format!("{frac:0<6}")[..6].parse::<u32>().ok()?;
    to_us(year, month, day, (h, m, s), frac_us)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn iso_positions_and_epoch_ms_mean_the_same_instant() {
        let iso = position_to_us("2026-12-03T06:00:00.250Z").unwrap();
        assert_eq!(iso, 1_796_277_600_250_000);
        assert_eq!(position_to_us("1796277600250"), Some(iso));
        assert_eq!(position_to_us("2026-12-03T06:00:00.25"), Some(iso));
        for bad in ["", "2026-13-01T00:00:00Z", "yesterday", "2026-12-03T25:00:00Z", "-5"] {
            assert_eq!(position_to_us(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn clock_times_round_trip(ms in 0i64..253_402_300_799_000) {
            let us = ms * 1_000;
            prop_assert_eq!(utc_to_us(&us_to_utc(us)), Some(us));
        }
    }
}
