//! Kubernetes' validation rules for names, label values, ports, IPs and keys
//! (`k8s.io/apimachinery/pkg/util/validation`).
//!
//! Each rule returns the problems it found as human-readable messages worded the way
//! Kubernetes words them, so error output reads the same as a real API server's. An
//! empty vector means the value is valid. The rules are hand-written character checks
//! rather than regular expressions, to keep this crate free of a regex dependency;
//! the messages still quote Kubernetes' regular expressions because users search for
//! them.

use std::net::IpAddr;

const DNS1123_LABEL_MAX_LENGTH: usize = 63;
const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
const DNS1035_LABEL_MAX_LENGTH: usize = 63;
const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
const LABEL_VALUE_MAX_LENGTH: usize = 63;
const PORT_NAME_MAX_LENGTH: usize = 15;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const ENV_VAR_NAME_FMT: &str = "[-._a-zA-Z][-._a-zA-Z0-9]*";
const ENV_VAR_NAME_ERR: &str = "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit";
const CONFIG_MAP_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
const CONFIG_MAP_KEY_ERR: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
const PERCENT_FMT: &str = "[0-9]+%";
const PERCENT_ERR: &str = "a valid percent string must be a numeric string followed by an ending '%'";

/// Kubernetes' `RegexError`: the message, examples and the regular expression, in
/// exactly its punctuation (including the double space before "or").
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push('\'');
        out.push_str(example);
        out.push_str("', ");
    }
    out.push_str("regex used for validation is '");
    out.push_str(fmt);
    out.push_str("')");
    out
}

fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

fn empty_error() -> String {
    "must be non-empty".to_string()
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1123_label(value: &str) -> bool {
    let b = value.as_bytes();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) => {
            is_lower_alnum(first) && is_lower_alnum(last) && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn matches_qualified_name_part(value: &str) -> bool {
    let b = value.as_bytes();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// A lowercase RFC 1123 label: names of most namespaced objects' parts (containers,
/// ports) and of namespaces.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        errs.push(regex_error(DNS1123_LABEL_ERR, DNS1123_LABEL_FMT, &["my-name", "123-abc"]));
    }
    errs
}

/// A lowercase RFC 1123 subdomain: dot-separated labels, at most 253 characters; the
/// name rule of most kinds.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    // Splitting on '.' also rejects empty labels, i.e. leading, trailing or doubled dots.
    if !value.split('.').all(matches_dns1123_label) {
        errs.push(regex_error(DNS1123_SUBDOMAIN_ERR, DNS1123_SUBDOMAIN_FMT, &["example.com"]));
    }
    errs
}

/// A DNS-1035 label: like an RFC 1123 label but starting with a letter (Service names).
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1035_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1035_LABEL_MAX_LENGTH));
    }
    let starts_with_letter = value.as_bytes().first().is_some_and(u8::is_ascii_lowercase);
    if !starts_with_letter || !matches_dns1123_label(value) {
        errs.push(regex_error(DNS1035_LABEL_ERR, DNS1035_LABEL_FMT, &["my-name", "abc-123"]));
    }
    errs
}

/// A qualified name: label and annotation keys, finalizers. An optional DNS subdomain
/// prefix and '/', then a name of at most 63 characters.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {}", empty_error()));
            } else {
                errs.extend(is_dns1123_subdomain(prefix).into_iter().map(|m| format!("prefix part {m}")));
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    // Kubernetes reports an empty name both as empty and as not matching; keep that.
    if name.is_empty() {
        errs.push(format!("name part {}", empty_error()));
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!("name part {}", max_len_error(QUALIFIED_NAME_MAX_LENGTH)));
    }
    if !matches_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
        ));
    }
    errs
}

/// A label value: empty, or up to 63 characters following the qualified-name rule.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !matches_qualified_name_part(value) {
        errs.push(regex_error(LABEL_VALUE_ERR, LABEL_VALUE_FMT, &["MyValue", "my_value", "12345"]));
    }
    errs
}

/// A TCP/UDP port number, 1 to 65535.
pub fn is_valid_port_num(port: i32) -> Vec<String> {
    if (1..=65535).contains(&port) { Vec::new() } else { vec!["must be between 1 and 65535, inclusive".to_string()] }
}

/// A port name (IANA_SVC_NAME, RFC 6335): at most 15 lowercase letters, digits and
/// hyphens, at least one letter, no leading, trailing or doubled hyphen.
pub fn is_valid_port_name(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > PORT_NAME_MAX_LENGTH {
        errs.push(max_len_error(PORT_NAME_MAX_LENGTH));
    }
    if port.is_empty() || !port.bytes().all(|c| is_lower_alnum(c) || c == b'-') {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string());
    }
    if !port.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

/// An IPv4 or IPv6 address. IPv4 octets with leading zeros are rejected (the standard
/// library's parser already refuses them), as Kubernetes does, because some parsers
/// read them as octal.
pub fn is_valid_ip(value: &str) -> Vec<String> {
    if value.parse::<IpAddr>().is_ok() {
        Vec::new()
    } else {
        vec!["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".to_string()]
    }
}

/// A CIDR such as `10.0.0.0/8` or `2001:db8::/64`. Host bits may be set
/// (`10.0.0.1/8`), as Kubernetes accepts them.
pub fn is_valid_cidr(value: &str) -> Vec<String> {
    let valid = value.split_once('/').is_some_and(|(ip, prefix)| {
        let max = match ip.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => 32,
            Ok(IpAddr::V6(_)) => 128,
            Err(_) => return false,
        };
        // Plain decimal only: no sign, no leading zeros (Go's parser rejects both).
        let plain = !prefix.is_empty()
            && prefix.bytes().all(|c| c.is_ascii_digit())
            && (prefix == "0" || !prefix.starts_with('0'));
        plain && prefix.parse::<u32>().is_ok_and(|p| p <= max)
    });
    if valid { Vec::new() } else { vec!["must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)".to_string()] }
}

/// Kubernetes' `hasChDirPrefix`: names that would be a relative path when used as a
/// file name (env files, config map keys as volume files).
fn has_chdir_prefix(value: &str) -> Vec<String> {
    match value {
        "." => vec!["must not be '.'".to_string()],
        ".." => vec!["must not be '..'".to_string()],
        v if v.starts_with("..") => vec!["must not start with '..'".to_string()],
        _ => Vec::new(),
    }
}

/// An environment variable name: `[-._a-zA-Z][-._a-zA-Z0-9]*`.
pub fn is_env_var_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let b = value.as_bytes();
    let valid = b.first().is_some_and(|&c| c.is_ascii_alphabetic() || matches!(c, b'-' | b'.' | b'_'))
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'));
    if !valid {
        errs.push(regex_error(ENV_VAR_NAME_ERR, ENV_VAR_NAME_FMT, &["my.env-name", "MY_ENV.NAME", "MyEnvName1"]));
    }
    errs.extend(has_chdir_prefix(value));
    errs
}

/// A ConfigMap or Secret key: at most 253 of `[-._a-zA-Z0-9]`, not `.`/`..`-prefixed.
pub fn is_config_map_key(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    let valid =
        !value.is_empty() && value.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'));
    if !valid {
        errs.push(regex_error(CONFIG_MAP_KEY_ERR, CONFIG_MAP_KEY_FMT, &["key.name", "KEY_NAME", "key-name"]));
    }
    errs.extend(has_chdir_prefix(value));
    errs
}

/// A percentage string such as `25%` (used by int-or-string fields like maxSurge).
pub fn is_percent(value: &str) -> Vec<String> {
    let valid =
        value.strip_suffix('%').is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()));
    if valid { Vec::new() } else { vec![regex_error(PERCENT_ERR, PERCENT_FMT, &["1%", "93%"])] }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(errs: Vec<String>) -> bool {
        errs.is_empty()
    }

    #[test]
    fn dns1123_label() {
        for good in ["a", "abc", "a-b", "a--b", "123", "123-abc", "0", &"a".repeat(63)] {
            assert!(ok(is_dns1123_label(good)), "{good:?} should be valid");
        }
        for bad in ["", "A", "-a", "a-", "a.b", "a_b", "my name", "ä", &"a".repeat(64)] {
            assert!(!ok(is_dns1123_label(bad)), "{bad:?} should be invalid");
        }
        assert_eq!(
            is_dns1123_label("My-Name"),
            vec![
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
        assert_eq!(is_dns1123_label(&"a".repeat(64)), vec!["must be no more than 63 characters"]);
    }

    #[test]
    fn dns1123_subdomain() {
        for good in ["a", "example.com", "a-b.c-d", "1.2.3", &format!("{}.{}", "a".repeat(63), "b".repeat(63))] {
            assert!(ok(is_dns1123_subdomain(good)), "{good:?} should be valid");
        }
        for bad in ["", ".a", "a.", "a..b", "A.com", "a_b", "-a.b", "a.-b", &"a".repeat(254)] {
            assert!(!ok(is_dns1123_subdomain(bad)), "{bad:?} should be invalid");
        }
        assert!(is_dns1123_subdomain("Foo")[0].contains("(e.g. 'example.com', regex used"));
        // 254 valid characters: only the length problem.
        let long = ["a"; 127].join(".");
        assert_eq!(long.len(), 253);
        assert!(ok(is_dns1123_subdomain(&long)));
        assert_eq!(is_dns1123_subdomain(&format!("{long}a")), vec!["must be no more than 253 characters"]);
    }

    #[test]
    fn dns1035_label() {
        for good in ["a", "abc-123", "my-name", "z0"] {
            assert!(ok(is_dns1035_label(good)), "{good:?} should be valid");
        }
        for bad in ["", "1abc", "-a", "a-", "A", "a.b", &"a".repeat(64)] {
            assert!(!ok(is_dns1035_label(bad)), "{bad:?} should be invalid");
        }
        assert!(is_dns1035_label("1a")[0].starts_with("a DNS-1035 label must"));
    }

    #[test]
    fn qualified_name() {
        for good in [
            "a",
            "A",
            "MyName",
            "my.name",
            "123-abc",
            "a_b",
            "example.com/MyName",
            "app.kubernetes.io/name",
            "k8s.io/a",
            &"a".repeat(63),
            &format!("{}/{}", "a".repeat(253), "b".repeat(63)),
        ] {
            assert!(ok(is_qualified_name(good)), "{good:?} should be valid");
        }
        for bad in ["", "-a", "a-", "_a", "a b", "/a", "a/", "a/b/c", "Example.com/a", "a_b/c", &"a".repeat(64)] {
            assert!(!ok(is_qualified_name(bad)), "{bad:?} should be invalid");
        }
        assert_eq!(is_qualified_name("/a"), vec!["prefix part must be non-empty"]);
        let empty_name = is_qualified_name("a/");
        assert_eq!(empty_name.len(), 2);
        assert_eq!(empty_name[0], "name part must be non-empty");
        assert!(empty_name[1].starts_with("name part must consist of alphanumeric characters"));
        assert!(is_qualified_name("Foo.com/a")[0].starts_with("prefix part a lowercase RFC 1123 subdomain"));
        assert!(is_qualified_name("a/b/c")[0].starts_with("a qualified name must consist of"));
        assert!(is_qualified_name("a/b/c")[0].ends_with("(e.g. 'example.com/MyName')"));
        assert_eq!(is_qualified_name(&"a".repeat(64)), vec!["name part must be no more than 63 characters"]);
    }

    #[test]
    fn label_value() {
        for good in ["", "a", "MyValue", "my_value", "12345", "a.b-c_d", &"a".repeat(63)] {
            assert!(ok(is_valid_label_value(good)), "{good:?} should be valid");
        }
        for bad in ["-a", "a-", "_", "a b", "a/b", "ä", &"a".repeat(64)] {
            assert!(!ok(is_valid_label_value(bad)), "{bad:?} should be invalid");
        }
        assert!(is_valid_label_value("a b")[0].starts_with("a valid label must be an empty string"));
    }

    #[test]
    fn port_num() {
        assert!(ok(is_valid_port_num(1)));
        assert!(ok(is_valid_port_num(80)));
        assert!(ok(is_valid_port_num(65535)));
        assert_eq!(is_valid_port_num(0), vec!["must be between 1 and 65535, inclusive"]);
        assert!(!ok(is_valid_port_num(-1)));
        assert!(!ok(is_valid_port_num(65536)));
    }

    #[test]
    fn port_name() {
        for good in ["http", "a", "h2c", "web-1", "a1b2c3d4e5f6g7h"] {
            assert!(ok(is_valid_port_name(good)), "{good:?} should be valid");
        }
        assert_eq!(is_valid_port_name("1234"), vec!["must contain at least one letter (a-z)"]);
        assert_eq!(is_valid_port_name("a--b"), vec!["must not contain consecutive hyphens"]);
        assert_eq!(is_valid_port_name("-ab"), vec!["must not begin or end with a hyphen"]);
        assert_eq!(is_valid_port_name("ab-"), vec!["must not begin or end with a hyphen"]);
        assert_eq!(is_valid_port_name("abcdefghijklmnop"), vec!["must be no more than 15 characters"]);
        assert_eq!(
            is_valid_port_name("HTTP"),
            vec![
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "must contain at least one letter (a-z)"
            ]
        );
        assert!(!ok(is_valid_port_name("")));
        assert!(!ok(is_valid_port_name("a_b")));
    }

    #[test]
    fn ip() {
        for good in ["10.9.8.7", "0.0.0.0", "255.255.255.255", "::", "::1", "2001:db8::ffff", "::ffff:1.2.3.4"] {
            assert!(ok(is_valid_ip(good)), "{good:?} should be valid");
        }
        for bad in ["", "1.2.3", "256.1.1.1", "01.2.3.4", "1.2.3.4/8", " 1.2.3.4", "abc", "2001:db8:::1", "[::1]"] {
            assert!(!ok(is_valid_ip(bad)), "{bad:?} should be invalid");
        }
        assert_eq!(is_valid_ip("x"), vec!["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]);
    }

    #[test]
    fn cidr() {
        for good in ["10.0.0.0/8", "10.0.0.1/8", "0.0.0.0/0", "1.2.3.4/32", "2001:db8::/64", "::/0", "::1/128"] {
            assert!(ok(is_valid_cidr(good)), "{good:?} should be valid");
        }
        for bad in [
            "",
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.0/",
            "/8",
            "10.0.0.0/+8",
            "10.0.0.0/08",
            "::/129",
            "a/8",
            "1.2.3.4/8/9",
        ] {
            assert!(!ok(is_valid_cidr(bad)), "{bad:?} should be invalid");
        }
        assert_eq!(is_valid_cidr("x"), vec!["must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"]);
    }

    #[test]
    fn env_var_name() {
        for good in ["A", "MY_ENV", "my.env-name", "MY_ENV.NAME", "MyEnvName1", "_x", "-x", ".x"] {
            assert!(ok(is_env_var_name(good)), "{good:?} should be valid");
        }
        for bad in ["", "1A", "A B", "A=B", "ä"] {
            assert!(!ok(is_env_var_name(bad)), "{bad:?} should be invalid");
        }
        assert_eq!(is_env_var_name("."), vec!["must not be '.'"]);
        assert_eq!(is_env_var_name(".."), vec!["must not be '..'"]);
        assert_eq!(is_env_var_name("..a"), vec!["must not start with '..'"]);
        assert!(is_env_var_name("1A")[0].starts_with("a valid environment variable name"));
    }

    #[test]
    fn config_map_key() {
        for good in ["key.name", "KEY_NAME", "key-name", "1", ".hidden", "a..b"] {
            assert!(ok(is_config_map_key(good)), "{good:?} should be valid");
        }
        for bad in ["", "a/b", "a b", &"a".repeat(254)] {
            assert!(!ok(is_config_map_key(bad)), "{bad:?} should be invalid");
        }
        assert_eq!(is_config_map_key("."), vec!["must not be '.'"]);
        assert_eq!(is_config_map_key(".."), vec!["must not be '..'"]);
        assert_eq!(is_config_map_key("..data"), vec!["must not start with '..'"]);
        assert!(is_config_map_key("a/b")[0].starts_with("a valid config key must consist"));
    }

    #[test]
    fn percent() {
        for good in ["0%", "1%", "93%", "100%", "250%"] {
            assert!(ok(is_percent(good)), "{good:?} should be valid");
        }
        for bad in ["", "%", "1", "-1%", "1.5%", " 1%", "1%%", "a%"] {
            assert!(!ok(is_percent(bad)), "{bad:?} should be invalid");
        }
        assert_eq!(
            is_percent("x"),
            vec![
                "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"
            ]
        );
    }
}
