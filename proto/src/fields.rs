//! Field selectors, as Kubernetes has them (`k8s.io/apimachinery/pkg/fields`): the
//! `?fieldSelector=` form such as `spec.nodeName=node-1,status.phase!=Running`.
//!
//! A selector is a conjunction of `field=value`, `field==value` and `field!=value`
//! terms. Values may contain `,`, `=`, `!` and `\` escaped with a backslash. Which
//! fields exist is up to each kind, so parsing accepts any field name and callers check
//! [`FieldSelector::fields`] against what they support. Unlike Kubernetes, whitespace
//! around field names and values is ignored, so `a=b, c=d` works; no real field value
//! (names, phases, node names) begins or ends with a space.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldSelectorError {
    #[error("invalid field selector {selector:?}: expected an operator (=, == or !=) in {term:?}")]
    MissingOperator { selector: String, term: String },
    #[error("invalid field selector {selector:?}: expected a field name before the operator in {term:?}")]
    MissingField { selector: String, term: String },
    #[error(
        "invalid field selector {selector:?}: invalid escape sequence {sequence:?} in {term:?} (only \\\\, \\, \\= and \\! may be escaped)"
    )]
    InvalidEscape { selector: String, term: String, sequence: String },
    #[error(
        "invalid field selector {selector:?}: unescaped '{character}' in the value of {term:?} (write it as \\{character})"
    )]
    UnescapedCharacter { selector: String, term: String, character: char },
}

/// How a term compares a field's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FieldOperator {
    /// `=` or `==`.
    Equals,
    /// `!=`.
    NotEquals,
}

/// One `field=value` or `field!=value` term, its value unescaped.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldRequirement {
    field: String,
    operator: FieldOperator,
    value: String,
}

impl FieldRequirement {
    pub fn new(field: impl Into<String>, operator: FieldOperator, value: impl Into<String>) -> FieldRequirement {
        FieldRequirement { field: field.into(), operator, value: value.into() }
    }

    pub fn field(&self) -> &str {
        &self.field
    }

    pub fn operator(&self) -> FieldOperator {
        self.operator
    }

    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape_value(&self.value))
    }
}

/// A conjunction of field terms. The default selects everything.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FieldSelector {
    /// Sorted, so equal selectors compare equal whatever order they were written in.
    requirements: Vec<FieldRequirement>,
}

/// Kubernetes' `EscapeValue`: backslash, comma and equals sign.
fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Splits on commas that are not escaped.
fn split_terms(input: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in input.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&input[start..i]);
            start = i + 1;
        }
    }
    terms.push(&input[start..]);
    terms
}

/// Finds the first unescaped operator: `!=`, then `==`, then `=` at each position,
/// as Kubernetes' `splitTerm` does. Returns (field, operator, raw value).
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    let mut escaped = false;
    for (i, c) in term.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        let rest = &term[i..];
        if c == '\\' {
            escaped = true;
        } else if let Some(value) = rest.strip_prefix("!=") {
            return Some((&term[..i], FieldOperator::NotEquals, value));
        } else if let Some(value) = rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')) {
            return Some((&term[..i], FieldOperator::Equals, value));
        }
    }
    None
}

impl FieldSelector {
    /// Selects every object.
    pub fn everything() -> FieldSelector {
        FieldSelector::default()
    }

    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn from_requirements(requirements: impl IntoIterator<Item = FieldRequirement>) -> FieldSelector {
        let mut requirements: Vec<FieldRequirement> = requirements.into_iter().collect();
        requirements.sort();
        FieldSelector { requirements }
    }

    /// Parses comma-separated `field=value`, `field==value` and `field!=value` terms.
    /// Empty terms are skipped, so the empty string selects everything.
    pub fn parse(input: &str) -> Result<FieldSelector, FieldSelectorError> {
        let mut requirements = Vec::new();
        for raw in split_terms(input) {
            let term = raw.trim();
            if term.is_empty() {
                continue;
            }
            let Some((field, operator, raw_value)) = split_term(term) else {
                return Err(FieldSelectorError::MissingOperator {
                    selector: input.to_string(),
                    term: term.to_string(),
                });
            };
            let field = field.trim();
            if field.is_empty() {
                return Err(FieldSelectorError::MissingField { selector: input.to_string(), term: term.to_string() });
            }
            let value = unescape_value(raw_value.trim(), input, term)?;
            requirements.push(FieldRequirement { field: field.to_string(), operator, value });
        }
        Ok(FieldSelector::from_requirements(requirements))
    }

    /// The terms, sorted.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Whether an object matches; `get` returns a field's value, and a field it does
    /// not know reads as the empty string (so `field!=x` holds and `field=x` fails).
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let have = get(&r.field).unwrap_or_default();
            match r.operator {
                FieldOperator::Equals => have == r.value,
                FieldOperator::NotEquals => have != r.value,
            }
        })
    }

    /// The field names used, so callers can reject the ones their kind lacks.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.requirements.iter().map(|r| r.field.as_str())
    }

    /// The value a `field=value` term demands, which lets callers use an index
    /// (e.g. pods by `spec.nodeName`) instead of scanning.
    pub fn exact_value(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }
}

/// Kubernetes' `UnescapeValue`, also accepting `\!` (harmless, and some clients send it).
fn unescape_value(raw: &str, selector: &str, term: &str) -> Result<String, FieldSelectorError> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=' | '!')) => out.push(e),
                other => {
                    return Err(FieldSelectorError::InvalidEscape {
                        selector: selector.to_string(),
                        term: term.to_string(),
                        sequence: other.map_or_else(|| "\\".to_string(), |e| format!("\\{e}")),
                    });
                }
            },
            // An unescaped '=' would make the term ambiguous; ',' cannot occur here
            // because terms were split on it.
            '=' | ',' => {
                return Err(FieldSelectorError::UnescapedCharacter {
                    selector: selector.to_string(),
                    term: term.to_string(),
                    character: c,
                });
            }
            _ => out.push(c),
        }
    }
    Ok(out)
}

impl fmt::Display for FieldSelector {
    /// Kubernetes' form: terms joined by commas, values escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

impl FromStr for FieldSelector {
    type Err = FieldSelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldSelector::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn sel(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn terms(s: &str) -> Vec<(String, FieldOperator, String)> {
        sel(s).requirements().iter().map(|r| (r.field().to_string(), r.operator(), r.value().to_string())).collect()
    }

    fn t(field: &str, op: FieldOperator, value: &str) -> (String, FieldOperator, String) {
        (field.to_string(), op, value.to_string())
    }

    use FieldOperator::{Equals, NotEquals};

    #[test]
    fn parses_each_operator() {
        assert_eq!(terms("spec.nodeName=n1"), [t("spec.nodeName", Equals, "n1")]);
        assert_eq!(terms("spec.nodeName==n1"), [t("spec.nodeName", Equals, "n1")]);
        assert_eq!(terms("status.phase!=Running"), [t("status.phase", NotEquals, "Running")]);
        assert_eq!(terms("a="), [t("a", Equals, "")]);
        assert_eq!(terms("a!="), [t("a", NotEquals, "")]);
        assert_eq!(
            terms("status.phase!=Running,spec.nodeName=n1"),
            [t("spec.nodeName", Equals, "n1"), t("status.phase", NotEquals, "Running")]
        );
        assert_eq!(terms(" a = b , c != d "), [t("a", Equals, "b"), t("c", NotEquals, "d")]);
        assert_eq!(terms("a=b,,c=d,"), [t("a", Equals, "b"), t("c", Equals, "d")]);
        // The first operator wins; '!' elsewhere in a value needs no escape.
        assert_eq!(terms("a=b!"), [t("a", Equals, "b!")]);
        assert_eq!(terms("a=!b"), [t("a", Equals, "!b")]);
    }

    #[test]
    fn empty_is_everything() {
        for input in ["", " ", ",", " , "] {
            assert!(sel(input).is_everything(), "{input:?}");
        }
        assert!(FieldSelector::everything().is_everything());
        assert!(FieldSelector::default().is_everything());
        assert!(!sel("a=b").is_everything());
        assert!(sel("").matches(|_| None));
    }

    #[test]
    fn escapes() {
        assert_eq!(terms(r"a=x\,y"), [t("a", Equals, "x,y")]);
        assert_eq!(terms(r"a=x\=y"), [t("a", Equals, "x=y")]);
        assert_eq!(terms(r"a=x\!y"), [t("a", Equals, "x!y")]);
        assert_eq!(terms(r"a=x\\y"), [t("a", Equals, r"x\y")]);
        assert_eq!(terms(r"a=x\\,b=y"), [t("a", Equals, r"x\"), t("b", Equals, "y")]);
        assert_eq!(terms(r"a=\,\,,b!=\="), [t("a", Equals, ",,"), t("b", NotEquals, "=")]);
    }

    #[test]
    fn errors_name_the_malformed_part() {
        assert_eq!(
            FieldSelector::parse("spec.nodeName").map_err(|e| e.to_string()),
            Err(r#"invalid field selector "spec.nodeName": expected an operator (=, == or !=) in "spec.nodeName""#
                .to_string())
        );
        assert_eq!(
            FieldSelector::parse("a=b,=c").map_err(|e| e.to_string()),
            Err(r#"invalid field selector "a=b,=c": expected a field name before the operator in "=c""#.to_string())
        );
        assert_eq!(
            FieldSelector::parse(r"a=x\y").map_err(|e| e.to_string()),
            Err(r#"invalid field selector "a=x\\y": invalid escape sequence "\\y" in "a=x\\y" (only \\, \, \= and \! may be escaped)"#
                .to_string())
        );
        assert!(matches!(
            FieldSelector::parse(r"a=x\"),
            Err(FieldSelectorError::InvalidEscape { sequence, .. }) if sequence == "\\"
        ));
        assert_eq!(
            FieldSelector::parse("a=b=c").map_err(|e| e.to_string()),
            Err(r#"invalid field selector "a=b=c": unescaped '=' in the value of "a=b=c" (write it as \=)"#.to_string())
        );
        assert!(matches!(
            FieldSelector::parse("a==="),
            Err(FieldSelectorError::UnescapedCharacter { character: '=', .. })
        ));
        assert!(matches!(FieldSelector::parse(r"a\=b"), Err(FieldSelectorError::MissingOperator { .. })));
        assert!(matches!(FieldSelector::parse("!=x"), Err(FieldSelectorError::MissingField { .. })));
        assert!(
            matches!(FieldSelector::parse("a=b,c"), Err(FieldSelectorError::MissingOperator { term, .. }) if term == "c")
        );
    }

    #[test]
    fn matching() {
        let object: BTreeMap<&str, &str> =
            [("metadata.name", "web-1"), ("spec.nodeName", "n1"), ("status.phase", "Running"), ("empty", "")]
                .into_iter()
                .collect();
        let get = |f: &str| object.get(f).map(|v| v.to_string());
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("spec.nodeName=n1", true),
            ("spec.nodeName==n1", true),
            ("spec.nodeName=n2", false),
            ("spec.nodeName!=n2", true),
            ("spec.nodeName!=n1", false),
            ("spec.nodeName=n1,status.phase=Running", true),
            ("spec.nodeName=n1,status.phase!=Running", false),
            ("spec.nodeName=", false),
            ("empty=", true),
            ("unknown=", true),
            ("unknown!=", false),
            ("unknown=x", false),
            ("unknown!=x", true),
        ];
        for &(input, expected) in cases {
            assert_eq!(sel(input).matches(get), expected, "{input}");
        }
        assert!(sel(r"a=x\,y").matches(|_| Some("x,y".to_string())));
    }

    #[test]
    fn fields_and_exact_value() {
        let s = sel("status.phase!=Failed,spec.nodeName=n1,metadata.name=a");
        let fields: Vec<&str> = s.fields().collect();
        assert_eq!(fields, ["metadata.name", "spec.nodeName", "status.phase"]);
        assert_eq!(s.exact_value("spec.nodeName"), Some("n1"));
        assert_eq!(s.exact_value("status.phase"), None);
        assert_eq!(s.exact_value("missing"), None);
        assert_eq!(sel(r"a=\,").exact_value("a"), Some(","));
    }

    #[test]
    fn display_round_trips() {
        let cases = [
            ("spec.nodeName=n1", "spec.nodeName=n1"),
            ("spec.nodeName==n1", "spec.nodeName=n1"),
            ("b!=2, a=1", "a=1,b!=2"),
            (r"a=x\,y\=z\\w\!v", r"a=x\,y\=z\\w!v"),
            ("a=", "a="),
            ("", ""),
        ];
        for (input, shown) in cases {
            let s = sel(input);
            assert_eq!(s.to_string(), shown, "{input}");
            assert_eq!(sel(shown), s, "{shown}");
            assert_eq!(shown.parse::<FieldSelector>(), Ok(s));
        }
        let built = FieldSelector::from_requirements([
            FieldRequirement::new("b", NotEquals, "=,\\"),
            FieldRequirement::new("a", Equals, "x"),
        ]);
        assert_eq!(built.to_string(), r"a=x,b!=\=\,\\");
        assert_eq!(sel(&built.to_string()), built);
    }
}
