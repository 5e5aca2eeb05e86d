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

/// `2026-11-23T19:40:00Z`.
pub fn rfc3339(unix: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Parses an expiry given relative to `now` (`90d`, `12h`, `1h 30m`) or as an RFC 3339
/// timestamp; it must lie in the future.
pub fn parse_expiry(text: &str, now: i64) -> Result<i64, String> {
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
