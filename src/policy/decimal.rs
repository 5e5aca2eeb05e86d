//! Exact decimal numbers for constraint bounds. JSON numbers are compared as the decimals they
//! are written as, never through `f64`: `0.150000000000000001` is above `0.15`, and
//! `9007199254740993` is above `9007199254740992`, though floating point says otherwise.
//!
//! The text comes from `serde_json` built with `arbitrary_precision`, which keeps a number's
//! digits as written.

use std::cmp::Ordering;
use std::fmt;

/// The largest decimal exponent accepted; anything beyond is refused rather than compared.
const MAX_EXPONENT: i64 = 1_000;
/// The most significant digits accepted.
const MAX_DIGITS: usize = 100;

/// A finite decimal: `sign · 0.d₁d₂…dₙ · 10^exponent`, with no leading or trailing zero digit
/// (zero has no digits).
#[derive(Clone, PartialEq, Eq)]
pub struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    exponent: i64,
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decimal({self})")
    }
}

/// Plain notation (`0.15`, `15000000`, `-2.5`) while it stays short; scientific beyond.
impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.digits.is_empty() {
            return f.write_str("0");
        }
        let digits: String = self.digits.iter().map(|d| char::from(b'0' + d)).collect();
        if self.negative {
            f.write_str("-")?;
        }
        let len = i64::try_from(digits.len()).unwrap_or(i64::MAX);
        match self.exponent {
            e if !(-20..=40).contains(&e) => write!(f, "0.{digits}e{e}"),
            e if e <= 0 => write!(f, "0.{}{digits}", "0".repeat(e.unsigned_abs() as usize)),
            e if e >= len => write!(f, "{digits}{}", "0".repeat((e - len) as usize)),
            e => write!(f, "{}.{}", &digits[..e as usize], &digits[e as usize..]),
        }
    }
}

impl Decimal {
    /// Parses a JSON number's text. `None` for anything that is not one, or is absurdly large.
    pub fn parse(text: &str) -> Option<Self> {
        let (negative, rest) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(at) => (&rest[..at], parse_exponent(&rest[at + 1..])?),
            None => (rest, 0),
        };
        let (integer, fraction) = match mantissa.split_once('.') {
            Some((integer, fraction)) if !fraction.is_empty() => (integer, fraction),
            Some(_) => return None,
            None => (mantissa, ""),
        };
        let json_integer = integer == "0" || (!integer.starts_with('0') && !integer.is_empty());
        if !json_integer
            || !integer
                .bytes()
                .chain(fraction.bytes())
                .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let all: Vec<u8> = integer
            .bytes()
            .chain(fraction.bytes())
            .map(|b| b - b'0')
            .collect();
        let leading = all.iter().take_while(|d| **d == 0).count();
        let mut digits = all[leading..].to_vec();
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if digits.len() > MAX_DIGITS {
            return None;
        }
        if digits.is_empty() {
            return Some(Decimal {
                negative: false,
                digits,
                exponent: 0,
            });
        }
        // value = 0.(integer fraction) · 10^(len(integer) + exponent); leading zeros shift it.
        let exponent =
            i64::try_from(integer.len()).ok()? + exponent - i64::try_from(leading).ok()?;
        if exponent.abs() > MAX_EXPONENT {
            return None;
        }
        Some(Decimal {
            negative,
            digits,
            exponent,
        })
    }

    /// The decimal a JSON value holds, if it is a number.
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        match value {
            serde_json::Value::Number(number) => Self::parse(&number.to_string()),
            _ => None,
        }
    }

    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        match (self.digits.is_empty(), other.digits.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            (false, false) => {}
        }
        self.exponent.cmp(&other.exponent).then_with(|| {
            let len = self.digits.len().max(other.digits.len());
            let digit = |d: &Vec<u8>, i| d.get(i).copied().unwrap_or(0);
            (0..len)
                .map(|i| digit(&self.digits, i).cmp(&digit(&other.digits, i)))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        })
    }
}

fn parse_exponent(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let zero = |d: &Decimal| d.digits.is_empty();
        match (self.negative && !zero(self), other.negative && !zero(other)) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        Decimal::parse(text).unwrap_or_else(|| panic!("{text}"))
    }

    #[test]
    fn equal_values_written_differently() {
        for (a, b) in [
            ("0.15", "1.5e-1"),
            ("15000000", "1.5E7"),
            ("0", "-0.0"),
            ("100", "1e2"),
            ("0.10", "0.1"),
            ("-2.50", "-25e-1"),
        ] {
            assert_eq!(d(a).cmp(&d(b)), Ordering::Equal, "{a} vs {b}");
        }
    }

    #[test]
    fn order_is_exact_where_floats_are_not() {
        let ascending = [
            "-1e3",
            "-999.99",
            "-0.000001",
            "0",
            "0.1",
            "0.15",
            "0.150000000000000001",
            "0.2",
            "5000000",
            "9007199254740992",
            "9007199254740993",
            "1e100",
        ];
        for pair in ascending.windows(2) {
            assert!(d(pair[0]) < d(pair[1]), "{} < {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn non_numbers_and_absurd_numbers_are_refused() {
        for text in [
            "",
            "-",
            "01",
            "1.",
            ".5",
            "1e",
            "0x10",
            "1e+",
            "NaN",
            "1e1000000",
            "1 ",
            "+1",
        ] {
            assert_eq!(Decimal::parse(text), None, "{text:?}");
        }
        assert_eq!(Decimal::parse(&"9".repeat(101)), None);
    }

    #[test]
    fn display_is_plain_json() {
        for (text, shown) in [
            ("0.15", "0.15"),
            ("15000000", "15000000"),
            ("-2.50", "-2.5"),
            ("1.5e-3", "0.0015"),
            ("120.5", "120.5"),
            ("0", "0"),
            ("1e60", "0.1e61"),
        ] {
            assert_eq!(d(text).to_string(), shown);
            assert_eq!(d(&d(text).to_string()), d(text));
        }
    }

    #[test]
    fn json_numbers_keep_their_digits() {
        let value: serde_json::Value = serde_json::from_str("0.150000000000000001").unwrap();
        assert!(Decimal::from_json(&value).unwrap() > d("0.15"));
        assert_eq!(Decimal::from_json(&serde_json::json!("1")), None);
    }
}
