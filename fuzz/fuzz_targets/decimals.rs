#![no_main]
//! Exact decimals against an independent reference: the same two numbers as big rationals.

use std::cmp::Ordering;

use num_bigint::BigInt;
use num_rational::BigRational;

/// A JSON number's text as an exact rational, by a route that shares nothing with
/// `sshsign::policy::decimal`: mantissa digits over a power of ten, times a power of ten.
fn rational(text: &str) -> Option<BigRational> {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i64>().ok()?),
        None => (text, 0),
    };
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: BigInt = format!("{integer}{fraction}").parse().ok()?;
    if digits == BigInt::ZERO {
        // Zero whatever the exponent (`0e-957032`): no power of ten to build.
        return Some(BigRational::from_integer(digits));
    }
    let scale = exponent - i64::try_from(fraction.len()).ok()?;
    let ten = BigInt::from(10);
    let power = ten.pow(u32::try_from(scale.unsigned_abs()).ok()?);
    Some(if scale >= 0 {
        BigRational::from_integer(digits * power)
    } else {
        BigRational::new(digits, power)
    })
}

fn reference(a: &str, b: &str) -> Option<Ordering> {
    Some(rational(a)?.cmp(&rational(b)?))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| sshsign::fuzzing::decimals(data, reference));
