//! Hard and soft rules: tests on a request's *facts*, which are its metadata fields with the
//! request context laid over them (`repository` and `branch`, which the git shim sends).
//!
//! A rule names a fact and either a list of glob patterns (`*` any run of characters, `?` one
//! character; the fact must be a string matching one of them) or, for soft rules, a typed
//! constraint (`{"max": 1000}`). Hard rules deny when they fail; soft rules only warn:
//!
//! ```json
//! --hard-rules '{"branch": ["main", "release/*"], "repository": ["github.com/acme/*"]}'
//! --soft-rules '{"amount": {"max": 10000}, "branch": ["main"]}'
//! ```

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::constraint::{Constraint, MAX_FIELDS, MAX_NAME};

/// Most patterns one rule may list.
pub const MAX_PATTERNS: usize = 64;

/// What a rule tests its fact with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleTest {
    Patterns(Vec<String>),
    Constraint(Constraint),
}

/// Rules by fact name, in name order.
pub type Rules = BTreeMap<String, RuleTest>;

/// Whether typed constraints are allowed (soft rules) or only patterns (hard rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    Hard,
    Soft,
}

/// Parses a `--hard-rules` or `--soft-rules` object.
pub fn parse_rules(map: &Map<String, Value>, kind: RuleKind) -> Result<Rules, String> {
    if map.len() > MAX_FIELDS {
        return Err(format!("at most {MAX_FIELDS} rules"));
    }
    map.iter()
        .map(|(fact, value)| {
            if fact.is_empty() || fact.len() > MAX_NAME {
                return Err(format!("rule names are 1 to {MAX_NAME} bytes"));
            }
            let test = match (value, kind) {
                (Value::Array(items), _) => RuleTest::Patterns(parse_patterns(fact, items)?),
                (Value::Object(_), RuleKind::Soft) => {
                    RuleTest::Constraint(Constraint::parse(fact, value)?)
                }
                (_, RuleKind::Hard) => {
                    return Err(format!(
                        "hard rule {fact:?} must be a list of patterns like [\"main\", \"release/*\"]"
                    ));
                }
                (_, RuleKind::Soft) => {
                    return Err(format!(
                        "soft rule {fact:?} must be a list of patterns or a constraint like \
                         {{\"max\": 10}}"
                    ));
                }
            };
            Ok((fact.clone(), test))
        })
        .collect()
}

fn parse_patterns(fact: &str, items: &[Value]) -> Result<Vec<String>, String> {
    if items.is_empty() || items.len() > MAX_PATTERNS {
        return Err(format!(
            "rule {fact:?} must list 1 to {MAX_PATTERNS} patterns"
        ));
    }
    items
        .iter()
        .map(|item| match item {
            Value::String(p) if !p.is_empty() && p.len() <= 256 => Ok(p.clone()),
            other => Err(format!(
                "rule {fact:?}: patterns are strings of 1 to 256 bytes (got {other})"
            )),
        })
        .collect()
}

/// The JSON object form of rules.
pub fn rules_json(rules: &Rules) -> Value {
    Value::Object(
        rules
            .iter()
            .map(|(fact, test)| (fact.clone(), test.to_json()))
            .collect(),
    )
}

impl serde::Serialize for RuleTest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for RuleTest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let one = Map::from_iter([("stored".to_owned(), value)]);
        let mut rules = parse_rules(&one, RuleKind::Soft).map_err(serde::de::Error::custom)?;
        rules
            .remove("stored")
            .ok_or_else(|| serde::de::Error::custom("empty rule"))
    }
}

impl RuleTest {
    /// The JSON form, as given.
    pub fn to_json(&self) -> Value {
        match self {
            RuleTest::Patterns(patterns) => serde_json::json!(patterns),
            RuleTest::Constraint(c) => c.to_json(),
        }
    }

    /// Tests a fact (`None`: the request does not state it). `Err` says why it fails.
    pub fn check(&self, value: Option<&Value>) -> Result<(), String> {
        match self {
            RuleTest::Constraint(constraint) => constraint.check(value),
            RuleTest::Patterns(patterns) => match value {
                None => Err("is not stated".to_owned()),
                Some(Value::String(s)) if patterns.iter().any(|p| glob(p, s)) => Ok(()),
                Some(Value::String(s)) => Err(format!(
                    "is {s:?}, which matches none of {}",
                    patterns.join(", ")
                )),
                Some(other) => Err(format!("must be a string (got {other})")),
            },
        }
    }
}

/// Glob matching: `*` matches any run of characters (`/` included), `?` exactly one.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                backtrack = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match backtrack {
                Some((star, matched)) => {
                    pi = star + 1;
                    ti = matched + 1;
                    backtrack = Some((star, matched + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs() {
        let cases = [
            ("main", "main", true),
            ("main", "mainline", false),
            ("release/*", "release/1.2", true),
            ("release/*", "release", false),
            ("github.com/acme/*", "github.com/acme/app", true),
            ("github.com/acme/*", "github.com/evil/acme/app", false),
            ("*/app", "github.com/acme/app", true),
            ("v?.?", "v1.2", true),
            ("v?.?", "v10.2", false),
            ("*", "", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYc!", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(glob(pattern, text), expected, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn hard_rules_are_patterns_and_soft_rules_may_be_constraints() {
        let hard = json!({"branch": ["main", "release/*"]});
        let rules = parse_rules(hard.as_object().unwrap(), RuleKind::Hard).unwrap();
        assert!(rules["branch"].check(Some(&json!("release/2"))).is_ok());
        assert!(
            rules["branch"]
                .check(Some(&json!("dev")))
                .unwrap_err()
                .contains("none of")
        );
        assert!(
            rules["branch"]
                .check(None)
                .unwrap_err()
                .contains("not stated")
        );
        assert_eq!(rules_json(&rules), hard);

        let typed = json!({"amount": {"max": 10}});
        assert!(parse_rules(typed.as_object().unwrap(), RuleKind::Hard).is_err());
        let soft = parse_rules(typed.as_object().unwrap(), RuleKind::Soft).unwrap();
        assert!(soft["amount"].check(Some(&json!(11))).is_err());

        for bad in [
            json!({"branch": []}),
            json!({"branch": [1]}),
            json!({"branch": "main"}),
        ] {
            assert!(
                parse_rules(bad.as_object().unwrap(), RuleKind::Soft).is_err(),
                "{bad}"
            );
        }
    }
}
