//! Typed metadata constraints, as the sshsign seed writes them:
//!
//! | kind | written as | a value passes when |
//! |---|---|---|
//! | `range` | `{"min": 5000000, "max": 15000000}` | it is a number with min ≤ value ≤ max |
//! | `minimum` | `{"min": 0.15}` | it is a number ≥ min |
//! | `maximum` | `{"max": 500000}` | it is a number ≤ max |
//! | `enum` | `{"allowed": ["mutual", "one-way"]}` | it is one of the strings |
//! | `required_bool` | `{"required": true}` | it is that boolean |
//!
//! Bounds are inclusive and compared exactly ([`Decimal`]). Parsing refuses what it does not
//! understand (unknown keys, two kinds at once, wrong types, min above max, an empty `allowed`)
//! instead of dropping it.

use serde_json::{Map, Value};

use super::decimal::Decimal;

/// Most constrained fields per authorization.
pub const MAX_FIELDS: usize = 64;
/// Longest field name or enum value.
pub const MAX_NAME: usize = 128;
/// Most values in an `allowed` list.
pub const MAX_ALLOWED: usize = 256;

/// One field's constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Constraint {
    Range { min: Decimal, max: Decimal },
    Minimum { min: Decimal },
    Maximum { max: Decimal },
    Enum { allowed: Vec<String> },
    RequiredBool { required: bool },
}

impl Constraint {
    /// The seed's name for the kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Constraint::Range { .. } => "range",
            Constraint::Minimum { .. } => "minimum",
            Constraint::Maximum { .. } => "maximum",
            Constraint::Enum { .. } => "enum",
            Constraint::RequiredBool { .. } => "required_bool",
        }
    }

    /// Parses one field's constraint object.
    pub fn parse(field: &str, value: &Value) -> Result<Self, String> {
        let Value::Object(map) = value else {
            return Err(format!(
                "constraint for {field:?} must be an object like {{\"min\": 1}}, not {value}"
            ));
        };
        if let Some(unknown) = map
            .keys()
            .find(|k| !["min", "max", "allowed", "required"].contains(&k.as_str()))
        {
            return Err(format!(
                "constraint for {field:?} has unknown key {unknown:?} (known: min, max, allowed, \
                 required)"
            ));
        }
        let number = |key: &str| -> Result<Option<Decimal>, String> {
            map.get(key)
                .map(|v| {
                    Decimal::from_json(v)
                        .ok_or_else(|| format!("{field:?}: {key} must be a number (got {v})"))
                })
                .transpose()
        };
        let (min, max) = (number("min")?, number("max")?);
        let allowed = map.get("allowed");
        let required = map.get("required");
        let kinds = usize::from(min.is_some() || max.is_some())
            + usize::from(allowed.is_some())
            + usize::from(required.is_some());
        if kinds != 1 {
            return Err(format!(
                "constraint for {field:?} must be exactly one of a range/minimum/maximum \
                 (min, max), an enum (allowed) or a required_bool (required)"
            ));
        }
        Ok(match (min, max, allowed, required) {
            (Some(min), Some(max), _, _) => {
                if min > max {
                    return Err(format!("constraint for {field:?} has min above max"));
                }
                Constraint::Range { min, max }
            }
            (Some(min), None, _, _) => Constraint::Minimum { min },
            (None, Some(max), _, _) => Constraint::Maximum { max },
            (_, _, Some(allowed), _) => Constraint::Enum {
                allowed: parse_allowed(field, allowed)?,
            },
            (_, _, _, Some(Value::Bool(required))) => Constraint::RequiredBool {
                required: *required,
            },
            (_, _, _, Some(other)) => {
                return Err(format!(
                    "{field:?}: required must be true or false (got {other})"
                ));
            }
            (None, None, None, None) => unreachable!("exactly one kind was counted"),
        })
    }

    /// The JSON form, as given.
    pub fn to_json(&self) -> Value {
        let number = |d: &Decimal| {
            // A Decimal always renders as a valid JSON number.
            serde_json::from_str::<Value>(&d.to_string()).unwrap_or(Value::Null)
        };
        match self {
            Constraint::Range { min, max } => {
                serde_json::json!({ "min": number(min), "max": number(max) })
            }
            Constraint::Minimum { min } => serde_json::json!({ "min": number(min) }),
            Constraint::Maximum { max } => serde_json::json!({ "max": number(max) }),
            Constraint::Enum { allowed } => serde_json::json!({ "allowed": allowed }),
            Constraint::RequiredBool { required } => serde_json::json!({ "required": required }),
        }
    }

    /// Checks a metadata value (`None`: the field is absent). `Err` says why it fails.
    pub fn check(&self, value: Option<&Value>) -> Result<(), String> {
        let Some(value) = value else {
            return Err("is missing".to_owned());
        };
        match self {
            Constraint::Range { min, max } => {
                let n = number(value)?;
                if n < *min || n > *max {
                    return Err(format!("is {value}, outside {min} to {max}"));
                }
            }
            Constraint::Minimum { min } => {
                if number(value)? < *min {
                    return Err(format!("is {value}, below the minimum {min}"));
                }
            }
            Constraint::Maximum { max } => {
                if number(value)? > *max {
                    return Err(format!("is {value}, above the maximum {max}"));
                }
            }
            Constraint::Enum { allowed } => match value {
                Value::String(s) if allowed.contains(s) => {}
                Value::String(_) => {
                    return Err(format!("is {value}, not one of {}", allowed.join(", ")));
                }
                _ => return Err(format!("must be a string (got {value})")),
            },
            Constraint::RequiredBool { required } => match value {
                Value::Bool(b) if b == required => {}
                Value::Bool(_) => return Err(format!("must be {required}")),
                _ => return Err(format!("must be a boolean (got {value})")),
            },
        }
        Ok(())
    }
}

impl serde::Serialize for Constraint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Constraint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Constraint::parse("stored", &value).map_err(serde::de::Error::custom)
    }
}

fn number(value: &Value) -> Result<Decimal, String> {
    Decimal::from_json(value).ok_or_else(|| format!("must be a number (got {value})"))
}

fn parse_allowed(field: &str, allowed: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = allowed else {
        return Err(format!("{field:?}: allowed must be a list of strings"));
    };
    if items.is_empty() || items.len() > MAX_ALLOWED {
        return Err(format!(
            "{field:?}: allowed must list 1 to {MAX_ALLOWED} strings"
        ));
    }
    items
        .iter()
        .map(|item| match item {
            Value::String(s) if !s.is_empty() && s.len() <= MAX_NAME => Ok(s.clone()),
            other => Err(format!(
                "{field:?}: allowed values are strings of 1 to {MAX_NAME} bytes (got {other})"
            )),
        })
        .collect()
}

/// Constraints by field name, in name order.
pub type Constraints = std::collections::BTreeMap<String, Constraint>;

/// Parses a `--constraints` object.
pub fn parse_constraints(map: &Map<String, Value>) -> Result<Constraints, String> {
    if map.len() > MAX_FIELDS {
        return Err(format!("at most {MAX_FIELDS} constrained fields"));
    }
    map.iter()
        .map(|(field, value)| {
            if field.is_empty() || field.len() > MAX_NAME {
                return Err(format!("field names are 1 to {MAX_NAME} bytes"));
            }
            Ok((field.clone(), Constraint::parse(field, value)?))
        })
        .collect()
}

/// The JSON object form of constraints.
pub fn constraints_json(constraints: &Constraints) -> Value {
    Value::Object(
        constraints
            .iter()
            .map(|(field, c)| (field.clone(), c.to_json()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<Constraint, String> {
        Constraint::parse("f", &value)
    }

    #[test]
    fn the_seed_examples_parse_to_their_kinds() {
        let cases = [
            (json!({"min": 5000000, "max": 15000000}), "range"),
            (json!({"min": 0.15}), "minimum"),
            (json!({"max": 500000}), "maximum"),
            (json!({"allowed": ["mutual", "one-way"]}), "enum"),
            (json!({"required": true}), "required_bool"),
        ];
        for (value, kind) in cases {
            let constraint = parse(value.clone()).unwrap();
            assert_eq!(constraint.kind(), kind);
            assert_eq!(parse(constraint.to_json()).unwrap(), constraint, "{value}");
        }
    }

    #[test]
    fn unclear_constraints_are_refused() {
        let cases = [
            (json!({"min": 10, "max": 5}), "min above max"),
            (json!({"minimum": 5}), "unknown key"),
            (json!({"min": 1, "allowed": ["a"]}), "exactly one"),
            (json!({"min": "5"}), "must be a number"),
            (json!({"allowed": []}), "1 to"),
            (json!({"allowed": [1]}), "strings"),
            (json!({"required": "yes"}), "true or false"),
            (json!({}), "exactly one"),
            (json!(5), "must be an object"),
        ];
        for (value, expected) in cases {
            let err = parse(value.clone()).unwrap_err();
            assert!(err.contains(expected), "{value}: {err}");
        }
    }

    #[test]
    fn checks_are_inclusive_exact_and_typed() {
        let range = parse(json!({"min": 5000000, "max": 15000000})).unwrap();
        assert!(range.check(Some(&json!(5000000))).is_ok());
        assert!(range.check(Some(&json!(15000000))).is_ok());
        assert!(range.check(Some(&json!(1.5e7))).is_ok());
        assert!(range.check(Some(&json!(15000000.000001))).is_err());
        assert!(range.check(Some(&json!("8000000"))).is_err());
        assert!(range.check(None).unwrap_err().contains("missing"));

        let min: Value = serde_json::from_str(r#"{"min": 0.15}"#).unwrap();
        let min = parse(min).unwrap();
        assert!(
            min.check(Some(&serde_json::from_str("0.15").unwrap()))
                .is_ok()
        );
        assert!(
            min.check(Some(
                &serde_json::from_str("0.14999999999999999999").unwrap()
            ))
            .is_err()
        );

        let nda = parse(json!({"allowed": ["mutual", "one-way"]})).unwrap();
        assert!(nda.check(Some(&json!("mutual"))).is_ok());
        assert!(nda.check(Some(&json!("Mutual"))).is_err());
        let pro_rata = parse(json!({"required": true})).unwrap();
        assert!(pro_rata.check(Some(&json!(true))).is_ok());
        assert!(pro_rata.check(Some(&json!(false))).is_err());
        assert!(pro_rata.check(Some(&json!(1))).is_err());
    }
}
