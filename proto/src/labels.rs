//! Label selectors, as Kubernetes has them (`k8s.io/apimachinery/pkg/labels`): the
//! string form used by `?labelSelector=` and `kubectl -l` (`app=web,tier in (a,b),!canary`)
//! and the structured `matchLabels`/`matchExpressions` form of `metav1.LabelSelector`.
//!
//! A [`Selector`] is a conjunction of [`Requirement`]s, kept sorted by key so that equal
//! selectors compare equal and print the same way Kubernetes prints them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use crate::validation;

/// How a requirement compares a label's value. `=` and `==` are the same operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

impl Operator {
    /// The name used in `matchExpressions` and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::NotEquals => "!=",
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

/// Why a requirement is invalid, whichever form it was written in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequirementError {
    #[error("invalid label key {key:?}: {}", problems.join("; "))]
    InvalidKey { key: String, problems: Vec<String> },
    #[error("invalid value {value:?} for label {key:?}: {}", problems.join("; "))]
    InvalidValue { key: String, value: String, problems: Vec<String> },
    #[error("label {key:?}: operator '{operator}' needs at least one value, as in \"{key} {operator} (a,b)\"")]
    MissingValues { key: String, operator: &'static str },
    #[error("label {key:?}: operator '{operator}' takes no values, but {count} were given")]
    UnexpectedValues { key: String, operator: &'static str, count: usize },
    #[error("label {key:?}: operator '{operator}' takes exactly one value, but {count} were given")]
    NotOneValue { key: String, operator: &'static str, count: usize },
    #[error("label {key:?}: operator '{operator}' needs an integer value, not {value:?}")]
    NotAnInteger { key: String, operator: &'static str, value: String },
    #[error(
        "label {key:?}: {operator:?} is not a valid label selector operator (use In, NotIn, Exists or DoesNotExist)"
    )]
    UnknownOperator { key: String, operator: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The string form does not parse. `position` counts characters from 0.
    #[error("invalid label selector {selector:?}: expected {expected} at position {position}, but found {found}")]
    Syntax { selector: String, position: usize, expected: &'static str, found: String },
    /// The string form parses but a requirement in it is invalid.
    #[error("invalid label selector {selector:?}: {problem}")]
    Invalid { selector: String, problem: RequirementError },
    /// A structured selector (`from_parts`) or a single requirement is invalid.
    #[error("invalid label selector: {0}")]
    Requirement(#[from] RequirementError),
}

/// One condition on one label.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: BTreeSet<String>,
}

impl Requirement {
    /// A validated requirement: the key must be a qualified name, each value a label
    /// value, and the number of values must suit the operator (Gt/Lt: one integer).
    pub fn new(
        key: impl Into<String>,
        operator: Operator,
        values: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Requirement, RequirementError> {
        let key = key.into();
        let values: BTreeSet<String> = values.into_iter().map(Into::into).collect();
        let problems = validation::is_qualified_name(&key);
        if !problems.is_empty() {
            return Err(RequirementError::InvalidKey { key, problems });
        }
        let count = values.len();
        match operator {
            Operator::In | Operator::NotIn if count == 0 => {
                return Err(RequirementError::MissingValues { key, operator: operator.name() });
            }
            Operator::Exists | Operator::DoesNotExist if count != 0 => {
                return Err(RequirementError::UnexpectedValues { key, operator: operator.name(), count });
            }
            Operator::Equals | Operator::NotEquals | Operator::GreaterThan | Operator::LessThan if count != 1 => {
                return Err(RequirementError::NotOneValue { key, operator: operator.name(), count });
            }
            _ => {}
        }
        if matches!(operator, Operator::GreaterThan | Operator::LessThan)
            && let Some(value) = values.iter().find(|v| v.parse::<i64>().is_err())
        {
            return Err(RequirementError::NotAnInteger { key, operator: operator.name(), value: value.clone() });
        }
        for value in &values {
            let problems = validation::is_valid_label_value(value);
            if !problems.is_empty() {
                return Err(RequirementError::InvalidValue { key, value: value.clone(), problems });
            }
        }
        Ok(Requirement { key, operator, values })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    pub fn values(&self) -> &BTreeSet<String> {
        &self.values
    }

    /// Whether a set of labels satisfies this requirement. `!=` and `notin` hold when
    /// the label is absent, as in Kubernetes.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                // A label that is not an integer never satisfies Gt/Lt.
                let (Some(Ok(have)), Some(Ok(want))) =
                    (value.map(|v| v.parse::<i64>()), self.values.first().map(|v| v.parse::<i64>()))
                else {
                    return false;
                };
                if self.operator == Operator::GreaterThan { have > want } else { have < want }
            }
        }
    }
}

impl fmt::Display for Requirement {
    /// Kubernetes' `Requirement.String()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.values.first().map(String::as_str).unwrap_or("");
        match self.operator {
            Operator::Exists => f.write_str(&self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::Equals => write!(f, "{}={first}", self.key),
            Operator::NotEquals => write!(f, "{}!={first}", self.key),
            Operator::GreaterThan => write!(f, "{}>{first}", self.key),
            Operator::LessThan => write!(f, "{}<{first}", self.key),
            Operator::In | Operator::NotIn => {
                let values: Vec<&str> = self.values.iter().map(String::as_str).collect();
                write!(f, "{} {} ({})", self.key, self.operator.name(), values.join(","))
            }
        }
    }
}

/// A conjunction of requirements. The default selects everything.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl Selector {
    /// Selects every object.
    pub fn everything() -> Selector {
        Selector::default()
    }

    /// Selects no object (what a nil `metav1.LabelSelector` means).
    pub fn nothing() -> Selector {
        Selector { requirements: Vec::new(), nothing: true }
    }

    pub fn is_everything(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    pub fn from_requirements(requirements: impl IntoIterator<Item = Requirement>) -> Selector {
        let mut requirements: Vec<Requirement> = requirements.into_iter().collect();
        // Stable, so requirements on one key keep their written order, as in Kubernetes.
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Selector { requirements, nothing: false }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Equality requirements from a label map (a Service's or ReplicaSet's selector
    /// map). Keys and values are not validated: the map is trusted, already-validated
    /// object data, and matching needs no particular syntax.
    pub fn from_map(labels: &BTreeMap<String, String>) -> Selector {
        let requirements = labels.iter().map(|(k, v)| Requirement {
            key: k.clone(),
            operator: Operator::Equals,
            values: BTreeSet::from([v.clone()]),
        });
        Selector::from_requirements(requirements)
    }

    /// The structured form of `metav1.LabelSelector`: `matchLabels` plus
    /// `matchExpressions` given as (key, operator, values) with the operator one of
    /// In, NotIn, Exists, DoesNotExist. Both empty selects everything; a nil selector
    /// (nothing) is the caller's to handle.
    pub fn from_parts(
        match_labels: &BTreeMap<String, String>,
        match_expressions: &[(String, String, Vec<String>)],
    ) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::with_capacity(match_labels.len() + match_expressions.len());
        for (key, value) in match_labels {
            requirements.push(Requirement::new(key.as_str(), Operator::Equals, [value.as_str()])?);
        }
        for (key, operator, values) in match_expressions {
            let operator = match operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(
                        RequirementError::UnknownOperator { key: key.clone(), operator: other.to_string() }.into()
                    );
                }
            };
            // Counted before deduplication, so ["a", "a"] with Exists reports two.
            if matches!(operator, Operator::Exists | Operator::DoesNotExist) && !values.is_empty() {
                let error = RequirementError::UnexpectedValues {
                    key: key.clone(),
                    operator: operator.name(),
                    count: values.len(),
                };
                return Err(error.into());
            }
            requirements.push(Requirement::new(key.as_str(), operator, values.iter().map(String::as_str))?);
        }
        Ok(Selector::from_requirements(requirements))
    }

    /// A `metav1.LabelSelector` message as a selector.
    pub fn from_label_selector(selector: &crate::meta::v1::LabelSelector) -> Result<Selector, SelectorError> {
        let expressions: Vec<(String, String, Vec<String>)> =
            selector.match_expressions.iter().map(|r| (r.key.clone(), r.operator.clone(), r.values.clone())).collect();
        Selector::from_parts(&selector.match_labels, &expressions)
    }

    /// The value a `key=value` (or single-valued `key in (value)`) requirement demands,
    /// which lets callers use an index instead of scanning.
    pub fn exact_value(&self, key: &str) -> Option<&str> {
        self.requirements
            .iter()
            .filter(|r| r.key == key && matches!(r.operator, Operator::Equals | Operator::In) && r.values.len() == 1)
            .find_map(|r| r.values.first().map(String::as_str))
    }

    /// Parses the string form: comma-separated `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
    /// `k notin (a,b)`, `k`, `!k`, `k>3`, `k<3`. Whitespace between tokens is ignored;
    /// the empty string selects everything.
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        let tokens = lex(input);
        let mut parser = Parser { input, tokens, pos: 0 };
        let mut requirements = Vec::new();
        if parser.peek().kind == Kind::End {
            return Ok(Selector::everything());
        }
        loop {
            requirements.push(parser.requirement()?);
            let token = parser.next();
            match token.kind {
                Kind::End => break,
                Kind::Comma => {}
                _ => return Err(parser.syntax_at(&token, "',' or the end of the selector")),
            }
        }
        Ok(Selector::from_requirements(requirements))
    }
}

impl fmt::Display for Selector {
    /// Kubernetes' `Selector.String()`: requirements sorted by key, comma-separated.
    /// Both everything and nothing print as the empty string, as in Kubernetes.
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

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ident,
    Comma,
    Open,
    Close,
    Equals,
    DoubleEquals,
    NotEquals,
    Bang,
    Greater,
    Less,
    End,
}

#[derive(Clone, Debug)]
struct Token {
    kind: Kind,
    text: String,
    /// Character offset in the input.
    position: usize,
}

/// Characters that end an identifier, as in Kubernetes' lexer.
fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn lex(input: &str) -> Vec<Token> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).copied();
        let (kind, len) = match c {
            ',' => (Kind::Comma, 1),
            '(' => (Kind::Open, 1),
            ')' => (Kind::Close, 1),
            '>' => (Kind::Greater, 1),
            '<' => (Kind::Less, 1),
            '=' if next == Some('=') => (Kind::DoubleEquals, 2),
            '=' => (Kind::Equals, 1),
            '!' if next == Some('=') => (Kind::NotEquals, 2),
            '!' => (Kind::Bang, 1),
            _ => {
                let len = chars[i..].iter().take_while(|&&c| !c.is_whitespace() && !is_special(c)).count();
                (Kind::Ident, len)
            }
        };
        tokens.push(Token { kind, text: chars[i..i + len].iter().collect(), position: i });
        i += len;
    }
    tokens.push(Token { kind: Kind::End, text: String::new(), position: chars.len() });
    tokens
}

struct Parser<'a> {
    input: &'a str,
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        // The lexer always ends the list with End, and `next` never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        token
    }

    fn invalid(&self, problem: RequirementError) -> SelectorError {
        SelectorError::Invalid { selector: self.input.to_string(), problem }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let first = self.next();
        let (key, operator, values) = match first.kind {
            Kind::Bang => {
                let key = self.next();
                if key.kind != Kind::Ident {
                    return Err(self.syntax_at(&key, "a label key after '!'"));
                }
                (key.text, Operator::DoesNotExist, Vec::new())
            }
            Kind::Ident => {
                let op = self.peek().clone();
                match op.kind {
                    Kind::End | Kind::Comma => (first.text, Operator::Exists, Vec::new()),
                    Kind::Equals | Kind::DoubleEquals | Kind::NotEquals | Kind::Greater | Kind::Less => {
                        self.next();
                        let operator = match op.kind {
                            Kind::Equals | Kind::DoubleEquals => Operator::Equals,
                            Kind::NotEquals => Operator::NotEquals,
                            Kind::Greater => Operator::GreaterThan,
                            _ => Operator::LessThan,
                        };
                        // `k=` (nothing before ',' or the end) means the empty value.
                        let value = match self.peek().kind {
                            Kind::Ident => self.next().text,
                            Kind::End | Kind::Comma => String::new(),
                            _ => {
                                let found = self.peek().clone();
                                return Err(self.syntax_at(&found, "a value"));
                            }
                        };
                        (first.text, operator, vec![value])
                    }
                    Kind::Ident if op.text == "in" || op.text == "notin" => {
                        self.next();
                        let operator = if op.text == "in" { Operator::In } else { Operator::NotIn };
                        (first.text, operator, self.value_list()?)
                    }
                    _ => {
                        return Err(self.syntax_at(&op, "an operator (=, ==, !=, in, notin, >, <), ',' or the end"));
                    }
                }
            }
            _ => return Err(self.syntax_at(&first, "a label key or '!'")),
        };
        Requirement::new(key, operator, values).map_err(|problem| self.invalid(problem))
    }

    /// `( v1, v2, ... )`; an item left empty (`(a,)`) is the empty value.
    fn value_list(&mut self) -> Result<Vec<String>, SelectorError> {
        let open = self.next();
        if open.kind != Kind::Open {
            return Err(self.syntax_at(&open, "'(' to start the list of values"));
        }
        let mut values = Vec::new();
        if self.peek().kind == Kind::Close {
            self.next();
            return Ok(values);
        }
        loop {
            let value = match self.peek().kind {
                Kind::Ident => self.next().text,
                Kind::Comma | Kind::Close => String::new(),
                _ => {
                    let found = self.peek().clone();
                    return Err(self.syntax_at(&found, "a value, ',' or ')'"));
                }
            };
            values.push(value);
            let separator = self.next();
            match separator.kind {
                Kind::Comma => {}
                Kind::Close => return Ok(values),
                _ => return Err(self.syntax_at(&separator, "',' or ')'")),
            }
        }
    }

    fn syntax_at(&self, found: &Token, expected: &'static str) -> SelectorError {
        let text = match found.kind {
            Kind::End => "the end of the selector".to_string(),
            _ => format!("{:?}", found.text),
        };
        SelectorError::Syntax { selector: self.input.to_string(), position: found.position, expected, found: text }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn sel(s: &str) -> Selector {
        Selector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn req(s: &str) -> Requirement {
        let selector = sel(s);
        assert_eq!(selector.requirements().len(), 1, "{s}");
        selector.requirements()[0].clone()
    }

    fn set(values: &[&str]) -> BTreeSet<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn parses_each_form() {
        let cases: &[(&str, &str, Operator, &[&str])] = &[
            ("env=prod", "env", Operator::Equals, &["prod"]),
            ("env==prod", "env", Operator::Equals, &["prod"]),
            ("env!=prod", "env", Operator::NotEquals, &["prod"]),
            ("env in (a,b)", "env", Operator::In, &["a", "b"]),
            ("env notin (a, b)", "env", Operator::NotIn, &["a", "b"]),
            ("env", "env", Operator::Exists, &[]),
            ("!env", "env", Operator::DoesNotExist, &[]),
            ("n>3", "n", Operator::GreaterThan, &["3"]),
            ("n<10", "n", Operator::LessThan, &["10"]),
            ("env=", "env", Operator::Equals, &[""]),
            ("env in (a,)", "env", Operator::In, &["", "a"]),
            ("env in (,)", "env", Operator::In, &[""]),
            ("app.kubernetes.io/name=web", "app.kubernetes.io/name", Operator::Equals, &["web"]),
            ("env in (b,a,b)", "env", Operator::In, &["a", "b"]),
        ];
        for &(input, key, operator, values) in cases {
            let r = req(input);
            assert_eq!(r.key(), key, "{input}");
            assert_eq!(r.operator(), operator, "{input}");
            assert_eq!(r.values(), &set(values), "{input}");
        }
    }

    #[test]
    fn whitespace_is_tolerated() {
        let expected = sel("a=b,c!=d,e in (x,y),f,!g");
        for input in [
            "  a = b , c != d , e in ( x , y ) , f , ! g  ",
            "a=b,c!=d,e in(x,y),f,!g",
            "\ta == b,\nc!=d, e  in  (x,y),f,!g",
            "!g,f,e in (y,x),c!=d,a=b",
        ] {
            assert_eq!(sel(input), expected, "{input:?}");
        }
    }

    #[test]
    fn empty_is_everything() {
        for input in ["", "   "] {
            assert!(sel(input).is_everything());
        }
        assert!(Selector::everything().is_everything());
        assert!(Selector::default().is_everything());
        assert!(!Selector::nothing().is_everything());
        assert!(Selector::nothing().is_nothing());
        assert!(!sel("a").is_everything());
        assert!(sel("").matches(&labels(&[])));
        assert!(!Selector::nothing().matches(&labels(&[])));
        assert!(!Selector::nothing().matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn syntax_errors_name_the_position() {
        let cases: &[(&str, usize, &str)] = &[
            ("env in (a", 9, "',' or ')'"),
            ("env in ((a", 8, "a value, ',' or ')'"),
            ("env in a", 7, "'(' to start the list of values"),
            ("env notin", 9, "'(' to start the list of values"),
            ("env=a b", 6, "',' or the end of the selector"),
            ("a=b,", 4, "a label key or '!'"),
            (",a", 0, "a label key or '!'"),
            ("a,,b", 2, "a label key or '!'"),
            ("=a", 0, "a label key or '!'"),
            ("!", 1, "a label key after '!'"),
            ("!=a", 0, "a label key or '!'"),
            ("env foo", 4, "an operator (=, ==, !=, in, notin, >, <), ',' or the end"),
            ("env (a)", 4, "an operator (=, ==, !=, in, notin, >, <), ',' or the end"),
            ("env==(a)", 5, "a value"),
            ("env in (a b)", 10, "',' or ')'"),
            ("a=b=c", 3, "',' or the end of the selector"),
            ("ü in (a", 7, "',' or ')'"),
        ];
        for &(input, position, expected) in cases {
            match Selector::parse(input) {
                Err(SelectorError::Syntax { selector, position: p, expected: e, .. }) => {
                    assert_eq!((p, e), (position, expected), "{input:?}");
                    assert_eq!(selector, input);
                }
                other => panic!("{input:?}: expected a syntax error, got {other:?}"),
            }
        }
        assert_eq!(
            Selector::parse("env in (a").map_err(|e| e.to_string()),
            Err("invalid label selector \"env in (a\": expected ',' or ')' at position 9, but found the end of the selector"
                .to_string())
        );
        assert_eq!(
            Selector::parse("env in ((a").map_err(|e| e.to_string()),
            Err("invalid label selector \"env in ((a\": expected a value, ',' or ')' at position 8, but found \"(\""
                .to_string())
        );
    }

    #[test]
    fn invalid_keys_and_values_are_rejected() {
        let err = Selector::parse("-bad=x").map_err(|e| e.to_string()).unwrap_err();
        assert!(
            err.starts_with("invalid label selector \"-bad=x\": invalid label key \"-bad\": name part must consist"),
            "{err}"
        );
        let err = Selector::parse("a=b/c").map_err(|e| e.to_string()).unwrap_err();
        assert!(
            err.starts_with("invalid label selector \"a=b/c\": invalid value \"b/c\" for label \"a\": a valid label"),
            "{err}"
        );
        assert!(matches!(
            Selector::parse("a in ()"),
            Err(SelectorError::Invalid { problem: RequirementError::MissingValues { .. }, .. })
        ));
        assert_eq!(
            Selector::parse("a in ()").map_err(|e| e.to_string()),
            Err("invalid label selector \"a in ()\": label \"a\": operator 'in' needs at least one value, as in \"a in (a,b)\""
                .to_string())
        );
        assert!(matches!(
            Selector::parse("a>b"),
            Err(SelectorError::Invalid { problem: RequirementError::NotAnInteger { .. }, .. })
        ));
        assert!(Selector::parse("a<").is_err());
        // As in Kubernetes, Gt/Lt values must also be valid label values, so no sign.
        assert!(Selector::parse("a<-3").is_err());
        assert!(Selector::parse(&format!("a={}", "v".repeat(64))).is_err());
        assert!(Selector::parse("Example.com/a=b").is_err());
    }

    #[test]
    fn matching() {
        let l = labels(&[("env", "prod"), ("tier", "web"), ("n", "5"), ("s", "x")]);
        let cases: &[(&str, bool)] = &[
            ("env=prod", true),
            ("env==prod", true),
            ("env=dev", false),
            ("env!=dev", true),
            ("env!=prod", false),
            ("missing!=x", true),
            ("env in (prod,dev)", true),
            ("env in (dev)", false),
            ("missing in (x)", false),
            ("env notin (dev)", true),
            ("env notin (prod)", false),
            ("missing notin (x)", true),
            ("env", true),
            ("missing", false),
            ("!missing", true),
            ("!env", false),
            ("n>3", true),
            ("n>5", false),
            ("n<6", true),
            ("n<5", false),
            ("n>0", true),
            ("s>1", false),
            ("s<1", false),
            ("missing>1", false),
            ("missing<1", false),
            ("env=prod,tier=web", true),
            ("env=prod,tier=db", false),
            ("missing=", false),
            ("", true),
        ];
        for &(input, expected) in cases {
            assert_eq!(sel(input).matches(&l), expected, "{input}");
        }
        assert!(sel("empty=").matches(&labels(&[("empty", "")])));
    }

    #[test]
    fn display_round_trips() {
        let cases = [
            ("a=b,c!=d,e in (x,y),f,!g", "a=b,c!=d,e in (x,y),f,!g"),
            ("!g , f, e in (y, x), c != d, a == b", "a=b,c!=d,e in (x,y),f,!g"),
            ("x notin (b,a)", "x notin (a,b)"),
            ("n>3,n<10", "n>3,n<10"),
            ("k=", "k="),
            ("k in (,a)", "k in (,a)"),
            ("", ""),
        ];
        for (input, shown) in cases {
            let s = sel(input);
            assert_eq!(s.to_string(), shown, "{input}");
            assert_eq!(sel(shown), s, "{shown}");
            assert_eq!(shown.parse::<Selector>(), Ok(s));
        }
        assert_eq!(Selector::nothing().to_string(), "");
    }

    #[test]
    fn exact_value() {
        let s = sel("app=web,tier in (db),env in (a,b),x!=y");
        assert_eq!(s.exact_value("app"), Some("web"));
        assert_eq!(s.exact_value("tier"), Some("db"));
        assert_eq!(s.exact_value("env"), None);
        assert_eq!(s.exact_value("x"), None);
        assert_eq!(s.exact_value("missing"), None);
    }

    #[test]
    fn from_map() {
        let map = labels(&[("b", "2"), ("a", "1")]);
        let s = Selector::from_map(&map);
        assert_eq!(s.to_string(), "a=1,b=2");
        assert!(s.matches(&labels(&[("a", "1"), ("b", "2"), ("c", "3")])));
        assert!(!s.matches(&labels(&[("a", "1")])));
        assert!(Selector::from_map(&BTreeMap::new()).is_everything());
    }

    #[test]
    fn from_parts() {
        let expr = |k: &str, op: &str, vals: &[&str]| {
            (k.to_string(), op.to_string(), vals.iter().map(|v| v.to_string()).collect())
        };
        let s = Selector::from_parts(
            &labels(&[("app", "web")]),
            &[
                expr("tier", "In", &["a", "b"]),
                expr("env", "NotIn", &["dev"]),
                expr("x", "Exists", &[]),
                expr("y", "DoesNotExist", &[]),
            ],
        )
        .expect("valid");
        assert_eq!(s.to_string(), "app=web,env notin (dev),tier in (a,b),x,!y");
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "a"), ("x", "1")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "a"), ("x", "1"), ("y", "1")])));

        assert!(Selector::from_parts(&BTreeMap::new(), &[]).expect("valid").is_everything());

        let err = |parts: &[(String, String, Vec<String>)]| {
            Selector::from_parts(&BTreeMap::new(), parts).map_err(|e| e.to_string()).unwrap_err()
        };
        assert_eq!(
            err(&[expr("a", "In", &[])]),
            "invalid label selector: label \"a\": operator 'in' needs at least one value, as in \"a in (a,b)\""
        );
        assert!(err(&[expr("a", "NotIn", &[])]).contains("operator 'notin' needs at least one value"));
        assert_eq!(
            err(&[expr("a", "Exists", &["x"])]),
            "invalid label selector: label \"a\": operator 'exists' takes no values, but 1 were given"
        );
        assert!(err(&[expr("a", "DoesNotExist", &["x", "x"])]).contains("but 2 were given"));
        assert_eq!(
            err(&[expr("a", "Equals", &["x"])]),
            "invalid label selector: label \"a\": \"Equals\" is not a valid label selector operator (use In, NotIn, Exists or DoesNotExist)"
        );
        assert!(err(&[expr("a", "in", &["x"])]).contains("is not a valid label selector operator"));
        assert!(err(&[expr("bad key", "In", &["x"])]).contains("invalid label key \"bad key\""));
        assert!(
            Selector::from_parts(&labels(&[("a", "bad value")]), &[])
                .map_err(|e| e.to_string())
                .unwrap_err()
                .contains("invalid value")
        );
    }

    #[test]
    fn requirement_new_checks_arity() {
        assert!(Requirement::new("a", Operator::Equals, ["x"]).is_ok());
        assert!(matches!(
            Requirement::new("a", Operator::Equals, ["x", "y"]),
            Err(RequirementError::NotOneValue { count: 2, .. })
        ));
        assert!(matches!(
            Requirement::new("a", Operator::GreaterThan, ["1.5"]),
            Err(RequirementError::NotAnInteger { .. })
        ));
        assert!(Requirement::new("a", Operator::Exists, Vec::<String>::new()).is_ok());
        assert!(Requirement::new("a", Operator::In, Vec::<String>::new()).is_err());
    }
}
