//! Helpers on `meta.v1.IntOrString`: construction, text, and Kubernetes' scaling of
//! "25%"-style values against a total (maxSurge, maxUnavailable).

use std::fmt;

use crate::meta::v1::IntOrString;
use crate::meta::v1::int_or_string::Value;

impl IntOrString {
    pub fn int(value: i32) -> Self {
        IntOrString { value: Some(Value::IntVal(value)) }
    }

    pub fn string(value: impl Into<String>) -> Self {
        IntOrString { value: Some(Value::StrVal(value.into())) }
    }

    pub fn as_int(&self) -> Option<i32> {
        match &self.value {
            Some(Value::IntVal(i)) => Some(*i),
            Some(Value::StrVal(_)) => None,
            None => Some(0),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Some(Value::StrVal(s)) => Some(s),
            _ => None,
        }
    }

    /// An integer as is, or a percentage ("25%") of `total`, rounded up or down.
    /// Anything else is an error naming the value.
    pub fn scaled_value(&self, total: i32, round_up: bool) -> Result<i32, String> {
        match &self.value {
            None => Ok(0),
            Some(Value::IntVal(i)) => Ok(*i),
            Some(Value::StrVal(s)) => {
                let percent: i64 = s.strip_suffix('%').and_then(|p| p.parse().ok()).ok_or_else(|| {
                    format!("invalid value \"{s}\": must be an integer or a percentage such as \"25%\"")
                })?;
                let product = percent * i64::from(total);
                let scaled = if round_up { (product + 99).div_euclid(100) } else { product.div_euclid(100) };
                i32::try_from(scaled).map_err(|_| format!("\"{s}\" of {total} is out of range"))
            }
        }
    }
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(Value::StrVal(s)) => f.write_str(s),
            Some(Value::IntVal(i)) => write!(f, "{i}"),
            None => f.write_str("0"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_percentages_like_kubernetes() {
        assert_eq!(IntOrString::string("25%").scaled_value(10, true), Ok(3));
        assert_eq!(IntOrString::string("25%").scaled_value(10, false), Ok(2));
        assert_eq!(IntOrString::string("100%").scaled_value(7, false), Ok(7));
        assert_eq!(IntOrString::int(2).scaled_value(10, true), Ok(2));
        assert!(IntOrString::string("abc").scaled_value(10, true).is_err());
        assert_eq!(IntOrString::int(8080).to_string(), "8080");
    }
}
