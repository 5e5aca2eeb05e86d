//! Wall-clock time as the appliance records it: whole seconds since the Unix epoch, shown to users
//! as RFC 3339 UTC timestamps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// How long from this moment until the second `unix` begins (zero if it has).
pub fn until(unix: i64) -> Duration {
    match UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(unix).unwrap_or(0))) {
        Some(at) => at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
        None => Duration::MAX,
    }
}

/// The last second RFC 3339 can write: 9999-12-31T23:59:59Z.
const LAST_RFC3339: i64 = 253_402_300_799;

/// The furthest an expiry may lie: ten years (of 365.25 days, as `10y` reads).
pub const MAX_EXPIRY: Duration = Duration::from_secs(10 * 31_557_600);

/// `2026-11-23T19:40:00Z`. Never panics: a time before 1970 shows as 1970-01-01T00:00:00Z and
/// one past the year 9999 (which only a record stored before expiries were bounded can hold)
/// as 9999-12-31T23:59:59Z.
pub fn rfc3339(unix: i64) -> String {
    let secs = u64::try_from(unix.clamp(0, LAST_RFC3339)).unwrap_or(0);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// Parses an expiry given relative to `now` (`90d`, `12h`, `1h 30m`) or as an RFC 3339
/// timestamp; it must lie in the future, and at most [`MAX_EXPIRY`] away.
pub fn parse_expiry(text: &str, now: i64) -> Result<i64, String> {
    if text.len() > 64 {
        return Err("expiry is longer than 64 bytes".to_owned());
    }
    let at = if let Ok(duration) = humantime::parse_duration(text) {
        let secs = i64::try_from(duration.as_secs()).map_err(|_| "expiry is too far away")?;
        now.checked_add(secs).ok_or("expiry is too far away")?
    } else if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        let secs = time
            .duration_since(UNIX_EPOCH)
            .map_err(|_| "expiry is before 1970")?
            .as_secs();
        i64::try_from(secs).map_err(|_| "expiry is too far away")?
    } else {
        return Err(format!(
            "expiry {text:?} is neither a duration (90d, 12h) nor an RFC 3339 time"
        ));
    };
    if at <= now {
        return Err(format!("expiry {text:?} is not in the future"));
    }
    let furthest = now.saturating_add(MAX_EXPIRY.as_secs() as i64);
    if at > furthest {
        return Err(format!(
            "expiry {text:?} is more than 10 years away; the furthest is {}",
            rfc3339(furthest)
        ));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_forms() {
        let now = 1_800_000_000;
        assert_eq!(parse_expiry("90d", now), Ok(now + 90 * 86_400));
        assert_eq!(parse_expiry("1h 30m", now), Ok(now + 5_400));
        assert_eq!(parse_expiry("2030-01-01T00:00:00Z", now), Ok(1_893_456_000));
        assert!(parse_expiry("0s", now).is_err());
        assert!(parse_expiry("2020-01-01T00:00:00Z", now).is_err());
        assert!(parse_expiry("-5d", now).is_err());
        assert!(parse_expiry("soon", now).is_err());
        // At most ten years: no year 10000, however it is written.
        assert_eq!(parse_expiry("10y", now), Ok(now + 315_576_000));
        let refused = parse_expiry("8000y", now).unwrap_err();
        assert!(refused.contains("more than 10 years away"), "{refused}");
        for too_far in [
            "10y 1s",
            "8000y",
            "7974y",
            "9999-12-31T23:59:59Z",
            "584942417355y",
        ] {
            assert!(parse_expiry(too_far, now).is_err(), "{too_far}");
        }
        assert!(parse_expiry(&"1d ".repeat(40), now).is_err());
    }

    #[test]
    fn every_stored_time_can_be_shown() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(LAST_RFC3339), "9999-12-31T23:59:59Z");
        // The year 10000 made humantime panic; it shows as the last second RFC 3339 can write.
        assert_eq!(rfc3339(253_402_300_800), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn until_counts_to_the_start_of_a_second() {
        let target = now() + 2;
        assert_eq!(until(target - 10), Duration::ZERO);
        assert!(until(i64::MAX) > Duration::from_secs(1 << 40));
        let at = UNIX_EPOCH + Duration::from_secs(target as u64);
        let before = SystemTime::now();
        let wait = until(target);
        let after = SystemTime::now();
        assert!(wait <= at.duration_since(before).unwrap(), "{wait:?}");
        assert!(wait >= at.duration_since(after).unwrap(), "{wait:?}");
    }

    #[test]
    fn rfc3339_rendering() {
        assert_eq!(rfc3339(1_893_456_000), "2030-01-01T00:00:00Z");
    }
}
