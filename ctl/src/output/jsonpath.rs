//! kubectl's JSONPath templates (`-o jsonpath='{.items[*].metadata.name}'`):
//! text with `{...}` expressions; fields, `[n]`, `[a:b]`, `[*]`, `..name`, filters
//! `[?(@.type=="Ready")]`, `{range EXPR}...{end}` and quoted literals.

use serde_json::Value as Json;

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Path(Vec<Step>),
    Range(Vec<Step>, Vec<Node>),
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// `$`: back to the root.
    Root,
    Field(String),
    /// `.*` or `[*]`.
    Wildcard,
    Index(i64),
    Slice(Option<i64>, Option<i64>),
    /// `..name`: every field so named, at any depth.
    Recursive(String),
    Filter(Box<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    path: Vec<Step>,
    /// None: the path merely has to exist.
    compare: Option<(String, Json)>,
}

impl Template {
    /// Parses a template; a bare expression (`.metadata.name`) is accepted as kubectl's
    /// relaxed form and wrapped in braces.
    pub fn parse(text: &str) -> Result<Template, String> {
        let text = text.trim_matches(|c| c == '\'');
        let owned;
        let text = if text.contains('{') {
            text
        } else {
            let relaxed =
                if text.starts_with('.') || text.starts_with('$') { text.to_string() } else { format!(".{text}") };
            owned = format!("{{{relaxed}}}");
            &owned
        };
        let mut parser = Parser { chars: text.chars().collect(), pos: 0 };
        let (nodes, ended_by_end) = parser.nodes()?;
        if ended_by_end {
            return Err("{end} without a {range}".to_string());
        }
        Ok(Template { nodes })
    }

    /// The template's text for `root`.
    pub fn render(&self, root: &Json) -> String {
        let mut out = String::new();
        render(&self.nodes, root, root, &mut out);
        out
    }

    /// The values of a template that is a single expression, for custom columns.
    pub fn values(&self, root: &Json) -> Vec<Json> {
        match self.nodes.as_slice() {
            [Node::Path(steps)] => evaluate(steps, root, root),
            _ => vec![Json::String(self.render(root))],
        }
    }
}

fn render(nodes: &[Node], root: &Json, current: &Json, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Path(steps) => {
                let values = evaluate(steps, root, current);
                out.push_str(&values.iter().map(show).collect::<Vec<_>>().join(" "));
            }
            Node::Range(steps, body) => {
                for item in evaluate(steps, root, current) {
                    render(body, root, &item, out);
                }
            }
        }
    }
}

/// How kubectl prints one value: strings bare, everything else as JSON.
pub fn show(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn evaluate(steps: &[Step], root: &Json, current: &Json) -> Vec<Json> {
    let mut values = vec![current.clone()];
    for step in steps {
        let mut next = Vec::new();
        for value in &values {
            apply(step, root, value, &mut next);
        }
        values = next;
    }
    values
}

fn apply(step: &Step, root: &Json, value: &Json, out: &mut Vec<Json>) {
    match step {
        Step::Root => out.push(root.clone()),
        Step::Field(name) => {
            if let Some(v) = value.get(name.as_str()) {
                out.push(v.clone());
            }
        }
        Step::Wildcard => match value {
            Json::Array(items) => out.extend(items.iter().cloned()),
            Json::Object(map) => out.extend(map.values().cloned()),
            _ => {}
        },
        Step::Index(i) => {
            if let Json::Array(items) = value {
                let len = items.len() as i64;
                let index = if *i < 0 { len + i } else { *i };
                if (0..len).contains(&index) {
                    out.push(items[index as usize].clone());
                }
            }
        }
        Step::Slice(start, end) => {
            if let Json::Array(items) = value {
                let len = items.len() as i64;
                let clamp = |v: i64| (if v < 0 { len + v } else { v }).clamp(0, len) as usize;
                let (s, e) = (clamp(start.unwrap_or(0)), clamp(end.unwrap_or(len)));
                if s < e {
                    out.extend(items[s..e].iter().cloned());
                }
            }
        }
        Step::Recursive(name) => recursive(name, value, out),
        Step::Filter(filter) => {
            let items: Vec<&Json> = match value {
                Json::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            for item in items {
                let found = evaluate(&filter.path, root, item);
                let keep = match &filter.compare {
                    None => !found.is_empty(),
                    Some((op, literal)) => found.iter().any(|f| compare(f, op, literal)),
                };
                if keep {
                    out.push(item.clone());
                }
            }
        }
    }
}

fn recursive(name: &str, value: &Json, out: &mut Vec<Json>) {
    match value {
        Json::Object(map) => {
            if let Some(v) = map.get(name) {
                out.push(v.clone());
            }
            for v in map.values() {
                recursive(name, v, out);
            }
        }
        Json::Array(items) => items.iter().for_each(|v| recursive(name, v, out)),
        _ => {}
    }
}

fn compare(found: &Json, op: &str, literal: &Json) -> bool {
    if let (Some(a), Some(b)) = (found.as_f64(), literal.as_f64()) {
        return match op {
            "==" => a == b,
            "!=" => a != b,
            "<" => a < b,
            "<=" => a <= b,
            ">" => a > b,
            ">=" => a >= b,
            _ => false,
        };
    }
    let (a, b) = (show(found), show(literal));
    match op {
        "==" => a == b,
        "!=" => a != b,
        "<" => a < b,
        "<=" => a <= b,
        ">" => a > b,
        ">=" => a >= b,
        _ => false,
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn rest_starts_with(&self, s: &str) -> bool {
        let s: Vec<char> = s.chars().collect();
        self.chars[self.pos..].starts_with(&s)
    }

    /// Nodes up to the end of input or an `{end}`; says which ended them.
    fn nodes(&mut self) -> Result<(Vec<Node>, bool), String> {
        let mut nodes = Vec::new();
        let mut text = String::new();
        while let Some(c) = self.peek() {
            if c != '{' {
                text.push(c);
                self.pos += 1;
                continue;
            }
            if !text.is_empty() {
                nodes.push(Node::Text(std::mem::take(&mut text)));
            }
            self.pos += 1;
            self.skip_spaces();
            if self.rest_starts_with("end") {
                self.pos += 3;
                self.skip_spaces();
                self.expect('}')?;
                return Ok((nodes, true));
            }
            if self.rest_starts_with("range ") {
                self.pos += 6;
                self.skip_spaces();
                let steps = self.path()?;
                self.skip_spaces();
                self.expect('}')?;
                let (body, ended) = self.nodes()?;
                if !ended {
                    return Err("{range} without an {end}".to_string());
                }
                nodes.push(Node::Range(steps, body));
                continue;
            }
            match self.peek() {
                Some(quote @ ('"' | '\'')) => {
                    self.pos += 1;
                    nodes.push(Node::Text(self.quoted(quote)?));
                }
                _ => nodes.push(Node::Path(self.path()?)),
            }
            self.skip_spaces();
            self.expect('}')?;
        }
        if !text.is_empty() {
            nodes.push(Node::Text(text));
        }
        Ok((nodes, false))
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(' ') {
            self.pos += 1;
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            let found = self.peek().map_or("the end".to_string(), |f| format!("'{f}'"));
            Err(format!("expected '{c}' at character {} of the template, found {found}", self.pos + 1))
        }
    }

    /// The text of a quoted literal, the opening quote consumed; `\n` and `\t` escapes.
    fn quoted(&mut self, quote: char) -> Result<String, String> {
        let mut text = String::new();
        loop {
            match self.peek() {
                None => return Err("an unterminated quoted string in the template".to_string()),
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(text);
                }
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some('n') => text.push('\n'),
                        Some('t') => text.push('\t'),
                        Some('r') => text.push('\r'),
                        Some(other) => text.push(other),
                        None => return Err("a template ends in a backslash".to_string()),
                    }
                    self.pos += 1;
                }
                Some(c) => {
                    text.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// A path: `$`, `@` or nothing, then `.field`, `..field`, `[...]` steps.
    fn path(&mut self) -> Result<Vec<Step>, String> {
        let mut steps = Vec::new();
        if self.eat('$') {
            steps.push(Step::Root);
        } else {
            self.eat('@');
        }
        loop {
            match self.peek() {
                Some('.') => {
                    self.pos += 1;
                    if self.eat('.') {
                        steps.push(Step::Recursive(self.name()));
                    } else if self.eat('*') {
                        steps.push(Step::Wildcard);
                    } else {
                        let name = self.name();
                        if !name.is_empty() {
                            steps.push(Step::Field(name));
                        }
                    }
                }
                Some('[') => {
                    self.pos += 1;
                    steps.push(self.bracket()?);
                }
                _ => return Ok(steps),
            }
        }
    }

    /// A field name; `\.` keeps a dot in it (annotation keys).
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c == '\\' && self.chars.get(self.pos + 1) == Some(&'.') {
                name.push('.');
                self.pos += 2;
            } else if c.is_alphanumeric() || matches!(c, '_' | '-' | '/') {
                name.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        name
    }

    fn bracket(&mut self) -> Result<Step, String> {
        self.skip_spaces();
        let step = match self.peek() {
            Some('*') => {
                self.pos += 1;
                Step::Wildcard
            }
            Some(quote @ ('\'' | '"')) => {
                self.pos += 1;
                Step::Field(self.quoted(quote)?)
            }
            Some('?') => {
                self.pos += 1;
                self.expect('(')?;
                self.skip_spaces();
                let path = self.path()?;
                self.skip_spaces();
                let mut op = String::new();
                while let Some(c @ ('=' | '!' | '<' | '>')) = self.peek() {
                    op.push(c);
                    self.pos += 1;
                }
                let compare = if op.is_empty() {
                    None
                } else {
                    if !matches!(op.as_str(), "==" | "!=" | "<" | "<=" | ">" | ">=") {
                        return Err(format!("unknown comparison \"{op}\" in a filter"));
                    }
                    self.skip_spaces();
                    Some((op, self.literal()?))
                };
                self.skip_spaces();
                self.expect(')')?;
                Step::Filter(Box::new(Filter { path, compare }))
            }
            _ => {
                let start = self.number();
                if self.eat(':') {
                    let end = self.number();
                    Step::Slice(start, end)
                } else {
                    Step::Index(start.ok_or_else(|| {
                        format!("expected an index, '*', a quoted name or a filter at character {}", self.pos + 1)
                    })?)
                }
            }
        };
        self.skip_spaces();
        self.expect(']')?;
        Ok(step)
    }

    fn number(&mut self) -> Option<i64> {
        let start = self.pos;
        if self.peek() == Some('-') {
            self.pos += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        text.parse().ok()
    }

    fn literal(&mut self) -> Result<Json, String> {
        match self.peek() {
            Some(quote @ ('\'' | '"')) => {
                self.pos += 1;
                Ok(Json::String(self.quoted(quote)?))
            }
            _ => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-') {
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                if text.is_empty() {
                    return Err("a filter compares with nothing".to_string());
                }
                Ok(serde_json::from_str(&text).unwrap_or(Json::String(text)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list() -> Json {
        json!({"items": [
            {"metadata": {"name": "a", "annotations": {"x.io/y": "1"}},
             "status": {"conditions": [{"type": "Ready", "status": "True"}], "replicas": 2}},
            {"metadata": {"name": "b"}, "status": {"conditions": [{"type": "Ready", "status": "False"}], "replicas": 5}},
        ]})
    }

    fn render(template: &str) -> String {
        Template::parse(template).unwrap().render(&list())
    }

    #[test]
    fn paths_wildcards_and_indexes() {
        assert_eq!(render("{.items[*].metadata.name}"), "a b");
        assert_eq!(render("{.items[0].metadata.name}"), "a");
        assert_eq!(render("{.items[-1].metadata.name}"), "b");
        assert_eq!(render("{.items[0:1].metadata.name}"), "a");
        assert_eq!(render("{$.items[1].status.replicas}"), "5");
        assert_eq!(render("{..name}"), "a b");
        assert_eq!(render(".items[*].metadata.name"), "a b");
        assert_eq!(render("{.items[0].metadata.annotations.x\\.io/y}"), "1");
        assert_eq!(render("{.items[0].metadata['annotations']}"), "{\"x.io/y\":\"1\"}");
        assert_eq!(render("{.items[5].metadata.name}"), "");
    }

    #[test]
    fn ranges_literals_and_filters() {
        assert_eq!(render("{range .items[*]}{.metadata.name}{\"\\n\"}{end}"), "a\nb\n");
        assert_eq!(render("{range .items[*]}[{.metadata.name}]{end}"), "[a][b]");
        assert_eq!(render("{.items[?(@.status.replicas>3)].metadata.name}"), "b");
        assert_eq!(render("{.items[?(@.metadata.name==\"a\")].status.conditions[?(@.type=='Ready')].status}"), "True");
        assert_eq!(render("{.items[?(@.metadata.annotations)].metadata.name}"), "a");
        assert_eq!(render("names: {.items[*].metadata.name}!"), "names: a b!");
    }

    #[test]
    fn bad_templates_say_what_is_wrong() {
        assert!(Template::parse("{.items[}").is_err());
        assert!(Template::parse("{range .items[*]}{.x}").unwrap_err().contains("{end}"));
        assert!(Template::parse("{end}").is_err());
        assert!(Template::parse("{\"open}").is_err());
    }
}
