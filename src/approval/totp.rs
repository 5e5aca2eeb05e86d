//! RFC 6238 time-based one-time passwords: HMAC-SHA-1, 6 digits, 30-second steps, the form
//! every authenticator app reads from an `otpauth://` URI.

use ring::hmac;

/// Seconds per step.
pub const STEP: i64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Steps either side of now that are accepted, for clock drift and typing time.
pub const WINDOW: i64 = 1;

/// The code for time step `step`.
pub fn code(secret: &[u8], step: u64) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = hmac::sign(&key, &step.to_be_bytes());
    let mac = mac.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([
        mac[offset],
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]) & 0x7fff_ffff;
    binary % 10u32.pow(DIGITS)
}

/// The step `code` is valid for at time `now`, within [`WINDOW`] steps and after `last_step`
/// (a code is accepted once: its step and every earlier one are spent). Compares every
/// candidate, in constant time each, whatever matches.
pub fn check(secret: &[u8], text: &str, now: i64, last_step: u64) -> Option<u64> {
    use subtle::ConstantTimeEq as _;
    let text = text.trim();
    if text.len() != DIGITS as usize || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let given: u32 = text.parse().ok()?;
    let current = now.div_euclid(STEP);
    let mut found = None;
    for step in (current - WINDOW)..=(current + WINDOW) {
        let Ok(step) = u64::try_from(step) else {
            continue;
        };
        let matches = code(secret, step).to_be_bytes().ct_eq(&given.to_be_bytes());
        if bool::from(matches) && step > last_step {
            found = Some(step);
        }
    }
    found
}

/// RFC 4648 base32, upper case, no padding: how authenticator apps take secrets.
pub fn base32(bytes: &[u8]) -> String {
    crate::ids::base32(bytes).to_ascii_uppercase()
}

/// The `otpauth://` URI an authenticator app scans.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let label = format!("{}:{}", encode(issuer), encode(account));
    format!(
        "otpauth://totp/{label}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP}",
        base32(secret),
        encode(issuer)
    )
}

/// Percent-encodes everything but unreserved characters.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 (the last six of its eight digits).
    #[test]
    fn rfc_6238_known_answers() {
        let secret = b"12345678901234567890";
        for (time, expected) in [
            (59, 94_287_082),
            (1_111_111_109, 7_081_804),
            (1_111_111_111, 14_050_471),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
            (20_000_000_000_i64, 65_353_130),
        ] {
            assert_eq!(
                code(secret, (time / STEP) as u64),
                expected % 1_000_000,
                "{time}"
            );
        }
    }

    #[test]
    fn a_code_is_accepted_once_and_within_the_window() {
        let secret = b"12345678901234567890";
        let now = 1_111_111_111;
        let step = (now / STEP) as u64;
        let text = format!("{:06}", code(secret, step));
        assert_eq!(check(secret, &text, now, 0), Some(step));
        // Spent: the same code, or one from an earlier step, is refused.
        assert_eq!(check(secret, &text, now, step), None);
        let previous = format!("{:06}", code(secret, step - 1));
        assert_eq!(check(secret, &previous, now, step), None);
        // Drift of one step either way is fine; two is not.
        assert_eq!(check(secret, &text, now + STEP, 0), Some(step));
        assert_eq!(check(secret, &text, now - STEP, 0), Some(step));
        assert_eq!(check(secret, &text, now + 2 * STEP, 0), None);
        for bad in ["", "12345", "1234567", "12a456", "-12345"] {
            assert_eq!(check(secret, bad, now, 0), None, "{bad}");
        }
    }

    #[test]
    fn the_uri_is_what_apps_read() {
        let uri = otpauth_uri("sshsign", "usr_abc", b"12345678901234567890");
        assert_eq!(
            uri,
            "otpauth://totp/sshsign:usr_abc?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=sshsign\
             &algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
