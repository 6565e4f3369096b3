//! A problem with one field of an object, worded as Kubernetes words it, so that
//! decoding and validation errors read alike
//! (`spec.replicas: Invalid value: -1: must be greater than or equal to 0`).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where, as in `spec.template.spec.containers[0].ports[1].containerPort`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { path: path.into(), message: message.into() }
    }

    /// `path: Required value` (with an optional explanation).
    pub fn required(path: impl Into<String>, detail: &str) -> Self {
        let message =
            if detail.is_empty() { "Required value".to_string() } else { format!("Required value: {detail}") };
        FieldError::new(path, message)
    }

    /// `path: Invalid value: "x": why`. `value` is shown as JSON would show it.
    pub fn invalid(path: impl Into<String>, value: impl fmt::Debug, detail: &str) -> Self {
        let shown = format!("{value:?}");
        let message = if detail.is_empty() {
            format!("Invalid value: {shown}")
        } else {
            format!("Invalid value: {shown}: {detail}")
        };
        FieldError::new(path, message)
    }

    /// `path: Unsupported value: "x": supported values: "a", "b"`.
    pub fn not_supported(path: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let list = supported.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
        FieldError::new(path, format!("Unsupported value: \"{value}\": supported values: {list}"))
    }

    /// `path: Forbidden: why`.
    pub fn forbidden(path: impl Into<String>, detail: &str) -> Self {
        FieldError::new(path, format!("Forbidden: {detail}"))
    }

    /// `path: Duplicate value: "x"`.
    pub fn duplicate(path: impl Into<String>, value: impl fmt::Debug) -> Self {
        FieldError::new(path, format!("Duplicate value: {value:?}"))
    }

    /// `path: Too long: may not be more than N bytes`.
    pub fn too_long(path: impl Into<String>, max: usize) -> Self {
        FieldError::new(path, format!("Too long: may not be more than {max} bytes"))
    }

    /// `path: Invalid value: ...: field is immutable`.
    pub fn immutable(path: impl Into<String>, value: impl fmt::Debug) -> Self {
        FieldError::invalid(path, value, "field is immutable")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wording_matches_kubernetes() {
        assert_eq!(FieldError::required("spec.containers", "").to_string(), "spec.containers: Required value");
        assert_eq!(
            FieldError::invalid("spec.replicas", -1, "must be greater than or equal to 0").to_string(),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(
            FieldError::invalid("metadata.name", "Foo", "bad").to_string(),
            "metadata.name: Invalid value: \"Foo\": bad"
        );
        assert_eq!(
            FieldError::not_supported("spec.type", "Foo", &["ClusterIP", "NodePort"]).to_string(),
            "spec.type: Unsupported value: \"Foo\": supported values: \"ClusterIP\", \"NodePort\""
        );
    }
}
