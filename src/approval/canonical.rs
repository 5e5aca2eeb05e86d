//! Canonical JSON as RFC 8785 (JCS) writes it, for the values decisions hold: objects with keys
//! sorted by UTF-16 code units, no whitespace, strings escaped minimally, and integers only
//! (a decision has no fractions, so floating point never has to be formatted).

use serde_json::Value;

/// What cannot be written canonically here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("{0} is not an integer; canonical decisions hold integers only")]
    NotInteger(String),
    #[error("the key {0:?} is reserved by the JSON parser and cannot be signed")]
    ReservedKey(String),
}

/// Keys that `serde_json` (with its `arbitrary_precision` and `raw_value` features, which this
/// crate uses) reads as a number or as raw JSON when they come first in an object: a document
/// holding one would not read back as what was signed.
const RESERVED_KEY_PREFIX: &str = "$serde_json::private::";

/// `value` with every number canonical JSON cannot hold here (fractions, integers past 2^53)
/// written as its exact decimal text, so a document with amounts can still be made canonical
/// without rounding anything.
pub fn with_exact_numbers(value: &Value) -> Value {
    match value {
        Value::Number(n) if write(value, &mut String::new()).is_err() => {
            Value::String(n.to_string())
        }
        Value::Array(items) => Value::Array(items.iter().map(with_exact_numbers).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), with_exact_numbers(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The canonical bytes of `value`.
pub fn to_vec(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = String::new();
    write(value, &mut out)?;
    Ok(out.into_bytes())
}

fn write(value: &Value, out: &mut String) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            // Written from the integer, not the text it was read from (`-0` is `0`).
            match n
                .as_i64()
                .or_else(|| n.as_u64().and_then(|u| i64::try_from(u).ok()))
            {
                // I-JSON: integers beyond 2^53 do not survive other parsers.
                Some(i) if i.unsigned_abs() <= 1 << 53 => out.push_str(&i.to_string()),
                _ => return Err(CanonicalError::NotInteger(n.to_string())),
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            if let Some(key) = map.keys().find(|k| k.starts_with(RESERVED_KEY_PREFIX)) {
                return Err(CanonicalError::ReservedKey(key.clone()));
            }
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write(&map[key], out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canonical(value: Value) -> String {
        String::from_utf8(to_vec(&value).unwrap()).unwrap()
    }

    #[test]
    fn keys_sort_by_utf16_and_nothing_is_spaced() {
        assert_eq!(
            canonical(json!({"b": 1, "a": {"y": [true, null], "x": "é"}, "A": -5})),
            r#"{"A":-5,"a":{"x":"é","y":[true,null]},"b":1}"#
        );
        // RFC 8785 §3.2.3: UTF-16 order puts U+1F600 (a surrogate pair, D83D...) before U+FB33.
        assert_eq!(
            canonical(json!({"\u{fb33}": 1, "\u{1f600}": 2})),
            "{\"\u{1f600}\":2,\"\u{fb33}\":1}"
        );
    }

    #[test]
    fn strings_escape_only_what_they_must() {
        assert_eq!(
            canonical(json!("a\"b\\c\n\u{1}\u{1f}/€")),
            r#""a\"b\\c\n\u0001\u001f/€""#
        );
    }

    #[test]
    fn only_integers() {
        assert_eq!(canonical(json!(1700000000)), "1700000000");
        assert!(to_vec(&json!(1.5)).is_err());
        assert!(to_vec(&json!({"x": [0.1]})).is_err());
        assert!(to_vec(&json!(9007199254740993u64)).is_err());
        assert!(to_vec(&json!(u64::MAX)).is_err());
        assert_eq!(canonical(json!(-9007199254740992i64)), "-9007199254740992");
        // RFC 8785 writes negative zero as 0.
        let zero: Value = serde_json::from_str(r#"{"z": -0, "a": [-0]}"#).unwrap();
        assert_eq!(canonical(zero), r#"{"a":[0],"z":0}"#);
    }

    #[test]
    fn the_parsers_own_keys_are_refused() {
        // Sorted first, this key makes serde_json read the object back as the number 5.
        let value: Value =
            serde_json::from_str(r#"{"b": 1, "$serde_json::private::Number": "5"}"#).unwrap();
        let err = to_vec(&value).unwrap_err();
        assert!(err.to_string().contains("reserved"), "{err}");
        let nested = json!({"a": [{"$serde_json::private::RawValue": "[1]", "c": 2}]});
        assert!(to_vec(&nested).is_err());
        assert!(to_vec(&json!({"$serde_json": 1})).is_ok());
    }

    #[test]
    fn amounts_keep_their_exact_text() {
        let value: Value = serde_json::from_str(
            r#"{"amount": 0.150000000000000001, "n": 3, "big": 9007199254740993}"#,
        )
        .unwrap();
        assert_eq!(
            canonical(with_exact_numbers(&value)),
            r#"{"amount":"0.150000000000000001","big":"9007199254740993","n":3}"#
        );
    }
}
