//! Dates and durations as promfleet reads and writes them: RFC 3339 UTC timestamps (state
//! files, Alertmanager `endsAt`, Prometheus `lastScrape`) and Prometheus-style durations.
//!
//! The civil-date arithmetic is Howard Hinnant's (`days_from_civil` / `civil_from_days`),
//! written out rather than taken from a crate: it is twenty lines, and `humantime` cannot
//! read the `+08:00` offsets Prometheus writes while `time`/`chrono` would add a dependency
//! tree for three call sites.

use std::time::Duration;

/// Now as Unix seconds (0 if the clock is before 1970).
pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Now as RFC 3339 UTC to the second (`2024-05-01T12:00:00Z`).
pub fn now_rfc3339() -> String {
    rfc3339_secs(now_unix().floor() as i64)
}

/// Unix seconds → RFC 3339 UTC to the second.
pub fn rfc3339_secs(unix: i64) -> String {
    let (date, rem) = date_and_rest(unix);
    format!(
        "{date}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Unix seconds → RFC 3339 UTC with milliseconds (what Alertmanager accepts as `endsAt`).
pub fn rfc3339_millis(unix: f64) -> String {
    let secs = unix.floor() as i64;
    let ms = ((unix - secs as f64) * 1000.0) as i64;
    let (date, rem) = date_and_rest(secs);
    format!(
        "{date}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `YYYY-MM-DD` of a Unix time, and the seconds into that day.
fn date_and_rest(unix: i64) -> (String, i64) {
    let (y, m, d) = civil_from_days(unix.div_euclid(86400));
    (format!("{y:04}-{m:02}-{d:02}"), unix.rem_euclid(86400))
}

/// An RFC 3339 timestamp, UTC (`Z`) or with an offset (`+08:00`), fractional seconds
/// allowed, as Unix seconds; `None` if it cannot be read.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let (date, rest) = s.trim().split_once(['T', 't'])?;
    let mut d = date.split('-');
    let y: i64 = d.next()?.parse().ok()?;
    let mo: i64 = d.next()?.parse().ok()?;
    let da: i64 = d.next()?.parse().ok()?;
    if d.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&da) {
        return None;
    }
    // Split the clock from the zone: `Z`, `+hh:mm` or `-hh:mm`.
    let (clock, offset) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let i = rest.rfind(['+', '-'])?;
        let (c, z) = rest.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let (hh, mm) = z[1..].split_once(':')?;
        (
            c,
            sign * (hh.parse::<i64>().ok()? * 3600 + mm.parse::<i64>().ok()? * 60),
        )
    };
    let mut t = clock.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let mi: i64 = t.next()?.parse().ok()?;
    let sec: f64 = t.next()?.parse().ok()?;
    if t.next().is_some() || h > 23 || mi > 59 || !(0.0..61.0).contains(&sec) {
        return None;
    }
    let days = days_from_civil(y, mo, da);
    Some((days * 86400 + h * 3600 + mi * 60 - offset) as f64 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A Prometheus-style duration: `500ms`, `30s`, `5m`, `1h30m`, `1d`, `1w` (fractions
/// allowed; a bare number is not a duration there). `None` if unreadable or too large.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.trim().chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            'h' => 3600.0,
            'd' => 86400.0,
            'w' => 604800.0,
            _ => return None,
        };
        total += n * unit;
        any = true;
    }
    if !any || !num.is_empty() {
        return None;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// A duration given on the command line: a Prometheus-style duration, or a bare number of
/// seconds (`--pause 30`).
pub fn parse_cli_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    t.parse::<u64>()
        .ok()
        .map(Duration::from_secs)
        .or_else(|| parse_duration(t))
        .ok_or_else(|| format!("`{s}` is not a duration such as 30s, 5m, 1h30m or 500ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_across_leap_days_and_centuries() {
        // Table: Unix seconds and the timestamp GNU `date -u -d @N +%FT%TZ` prints for them.
        for (unix, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_709_164_799, "2024-02-28T23:59:59Z"),
            (1_709_251_199, "2024-02-29T23:59:59Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
            (-1, "1969-12-31T23:59:59Z"),
        ] {
            assert_eq!(rfc3339_secs(unix), text);
            assert_eq!(parse_rfc3339(text), Some(unix as f64), "{text}");
        }
        assert_eq!(rfc3339_millis(1714564800.25), "2024-05-01T12:00:00.250Z");
        assert_eq!(
            parse_rfc3339("2024-05-01T20:00:00+08:00"),
            Some(1714564800.0)
        );
        assert_eq!(
            parse_rfc3339("2024-05-01T10:30:00-01:30"),
            Some(1714564800.0)
        );
        assert_eq!(parse_rfc3339("2024-05-01T12:00:00.5Z"), Some(1714564800.5));
        for bad in [
            "garbage",
            "2024-13-01T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations_prometheus_grammar_and_cli_seconds() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1w"), Some(Duration::from_secs(604_800)));
        for bad in [
            "5",
            "5x",
            "",
            "s",
            "-5s",
            "1.2.3s",
            "99999999999999999999999w",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(parse_cli_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_cli_duration(" 5m "), Ok(Duration::from_secs(300)));
        assert!(parse_cli_duration("soon").is_err());
    }
}
