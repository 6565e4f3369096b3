//! Kubernetes resource quantities ("500m", "1.5", "128Mi", "1e3"), held exactly.
//!
//! An [`Amount`] is an exact count of nano-units in an `i128` plus the [`Format`] it was
//! written in. Comparison, equality and hashing look at the value only, so `"1Gi"`
//! equals `"1073741824"` and `"0.5"` equals `"500m"`. Printing follows Kubernetes'
//! canonical form (`resource.Quantity.String()`), so a round trip through the API
//! reads the way `kubectl` shows it. Precision finer than a nano-unit is rounded
//! away from zero, as Kubernetes does, never rejected.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::str::FromStr;

/// Nano-units per unit.
const NANO: i128 = 1_000_000_000;

/// The largest power of ten an `i128` can hold.
const MAX_POW10: u32 = 38;

const EXAMPLES: &str = "use e.g. \"500m\", \"1.5\", \"128Mi\", \"1Gi\", \"1e3\"";

/// How a quantity was written, which decides how it is printed back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// Powers of 1024: Ki, Mi, Gi, Ti, Pi, Ei.
    BinarySI,
    /// Powers of 1000: n, u, m, (none), k, M, G, T, P, E.
    #[default]
    DecimalSI,
    /// A decimal exponent: "1e3", "5E-2".
    DecimalExponent,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("\"\" is not a valid quantity: it is empty ({EXAMPLES})")]
    Empty,
    #[error("{input:?} is not a valid quantity: expected a number{after_sign} ({EXAMPLES})", after_sign = if input.starts_with(['+', '-']) { " after the sign" } else { "" })]
    NoDigits { input: String },
    #[error("{input:?} is not a valid quantity: unknown suffix {suffix:?} ({EXAMPLES})")]
    UnknownSuffix { input: String, suffix: String },
    #[error("{input:?} is not a valid quantity: {problem} ({EXAMPLES})")]
    Malformed { input: String, problem: &'static str },
    #[error("{input:?} is not a valid quantity: it is too large (the limit is about 1.7e29)")]
    Overflow { input: String },
}

/// An exact resource quantity: a number of nano-units and the format it was written in.
#[derive(Clone, Copy, Debug, Default)]
pub struct Amount {
    nanos: i128,
    format: Format,
}

impl PartialEq for Amount {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Amount {}

impl PartialOrd for Amount {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Amount {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl Hash for Amount {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.nanos.hash(state);
    }
}

/// Divides, rounding any remainder away from zero (Kubernetes' `inf.RoundUp`).
fn div_away(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d == 0 {
        q
    } else if n < 0 {
        q - 1
    } else {
        q + 1
    }
}

/// 10^exp, if it fits.
fn pow10(exp: u32) -> Option<i128> {
    10i128.checked_pow(exp)
}

/// Parses a run of ASCII digits as an integer; `None` on overflow.
fn digits_value(digits: &str) -> Option<i128> {
    digits.bytes().try_fold(0i128, |acc, d| acc.checked_mul(10)?.checked_add(i128::from(d - b'0')))
}

/// Whether the suffix is a decimal exponent ("e3", "E-2", "e+4") and its value.
fn exponent_suffix(suffix: &str) -> Option<Result<i64, ()>> {
    let rest = suffix.strip_prefix(['e', 'E'])?;
    let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // A syntactically fine but absurd exponent is an overflow, not junk.
    Some(rest.parse::<i64>().map_err(|_| ()))
}

impl Amount {
    /// Parses the Kubernetes quantity grammar: an optional sign, digits with an
    /// optional fraction, then a binary (Ki..Ei), decimal (n, u, m, k, M, G, T, P, E)
    /// or exponent (e3, E-2) suffix.
    pub fn parse(input: &str) -> Result<Amount, QuantityError> {
        if input.is_empty() {
            return Err(QuantityError::Empty);
        }
        let malformed = |problem| QuantityError::Malformed { input: input.to_string(), problem };
        let overflow = || QuantityError::Overflow { input: input.to_string() };

        let (negative, rest) = match input.as_bytes()[0] {
            b'-' => (true, &input[1..]),
            b'+' => (false, &input[1..]),
            _ => (false, input),
        };
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, rest) = rest.split_at(int_len);
        let (frac_digits, suffix) = match rest.strip_prefix('.') {
            Some(after) => {
                let frac_len = after.bytes().take_while(u8::is_ascii_digit).count();
                after.split_at(frac_len)
            }
            None => ("", rest),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(QuantityError::NoDigits { input: input.to_string() });
        }
        if suffix.starts_with('.') {
            return Err(malformed("it has more than one decimal point"));
        }
        if suffix.contains(char::is_whitespace) {
            return Err(malformed("it must not contain spaces"));
        }

        let (format, base2, base10): (Format, u32, i64) = match suffix {
            "Ki" => (Format::BinarySI, 10, 0),
            "Mi" => (Format::BinarySI, 20, 0),
            "Gi" => (Format::BinarySI, 30, 0),
            "Ti" => (Format::BinarySI, 40, 0),
            "Pi" => (Format::BinarySI, 50, 0),
            "Ei" => (Format::BinarySI, 60, 0),
            "n" => (Format::DecimalSI, 0, -9),
            "u" => (Format::DecimalSI, 0, -6),
            "m" => (Format::DecimalSI, 0, -3),
            "" => (Format::DecimalSI, 0, 0),
            "k" => (Format::DecimalSI, 0, 3),
            "M" => (Format::DecimalSI, 0, 6),
            "G" => (Format::DecimalSI, 0, 9),
            "T" => (Format::DecimalSI, 0, 12),
            "P" => (Format::DecimalSI, 0, 15),
            "E" => (Format::DecimalSI, 0, 18),
            other => match exponent_suffix(other) {
                Some(Ok(exp)) => (Format::DecimalExponent, 0, exp),
                Some(Err(())) => return Err(overflow()),
                None => {
                    return Err(QuantityError::UnknownSuffix { input: input.to_string(), suffix: other.to_string() });
                }
            },
        };

        // The mantissa as one digit string; trailing fraction zeros and leading zeros
        // carry no value, and dropping them keeps long-but-exact inputs in range.
        let frac_digits = frac_digits.trim_end_matches('0');
        let all_digits = format!("{int_digits}{frac_digits}");
        let digits = all_digits.trim_start_matches('0');
        if digits.is_empty() {
            return Ok(Amount { nanos: 0, format });
        }
        // value = digits × 2^base2 × 10^exp10, in nano-units.
        let frac_len = i64::try_from(frac_digits.len()).map_err(|_| overflow())?;
        let exp10 = base10.saturating_add(9).saturating_sub(frac_len);

        let magnitude = if exp10 >= 0 {
            let exp = u32::try_from(exp10).ok().filter(|&e| e <= MAX_POW10).ok_or_else(overflow)?;
            digits_value(digits)
                .and_then(|d| d.checked_mul(pow10(exp)?))
                .and_then(|d| d.checked_mul(1i128 << base2))
                .ok_or_else(overflow)?
        } else if base2 == 0 {
            // Decimal: keep the digits above nano precision, round up if any below
            // are non-zero. Works for any number of fraction digits.
            let drop = usize::try_from(exp10.unsigned_abs()).unwrap_or(usize::MAX);
            let keep = digits.len().saturating_sub(drop);
            let (kept, dropped) = digits.split_at(keep);
            let kept = if kept.is_empty() { 0 } else { digits_value(kept).ok_or_else(overflow)? };
            let round = i128::from(dropped.bytes().any(|c| c != b'0'));
            kept.checked_add(round).ok_or_else(overflow)?
        } else {
            // Binary with more than nine fraction digits: multiply first, then divide.
            let scaled = digits_value(digits).and_then(|d| d.checked_mul(1i128 << base2)).ok_or_else(overflow)?;
            match u32::try_from(exp10.unsigned_abs()).ok().and_then(pow10) {
                Some(divisor) => div_away(scaled, divisor),
                // Dividing by more than 10^38 leaves less than one nano: round up to it.
                None => 1,
            }
        };
        let nanos = if negative { -magnitude } else { magnitude };
        Ok(Amount { nanos, format })
    }

    /// Zero, in DecimalSI.
    pub fn zero() -> Amount {
        Amount { nanos: 0, format: Format::DecimalSI }
    }

    /// An exact number of nano-units in the given format.
    pub fn from_nanos(nanos: i128, format: Format) -> Amount {
        Amount { nanos, format }
    }

    /// `milli` thousandths, in DecimalSI ("250m" is `from_milli(250)`).
    pub fn from_milli(milli: i64) -> Amount {
        Amount { nanos: i128::from(milli) * 1_000_000, format: Format::DecimalSI }
    }

    /// A whole number, in DecimalSI.
    pub fn from_int(value: i64) -> Amount {
        Amount { nanos: i128::from(value) * NANO, format: Format::DecimalSI }
    }

    /// The value in thousandths, rounded away from zero and saturated to `i64`, as
    /// Kubernetes' `MilliValue()` (CPU in millicores).
    pub fn milli_value(&self) -> i64 {
        saturate(div_away(self.nanos, 1_000_000))
    }

    /// The value as a whole number, rounded away from zero and saturated to `i64`,
    /// as Kubernetes' `Value()` (memory in bytes).
    pub fn value(&self) -> i64 {
        saturate(div_away(self.nanos, NANO))
    }

    /// The exact value in nano-units.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The format a sum or difference keeps: the left operand's, unless it is zero
    /// (Kubernetes' `Add`/`Sub`), so that summing from zero keeps the items' format.
    fn result_format(&self, rhs: &Amount) -> Format {
        if self.is_zero() { rhs.format } else { self.format }
    }

    pub fn checked_add(self, rhs: Amount) -> Option<Amount> {
        Some(Amount { nanos: self.nanos.checked_add(rhs.nanos)?, format: self.result_format(&rhs) })
    }

    pub fn checked_sub(self, rhs: Amount) -> Option<Amount> {
        Some(Amount { nanos: self.nanos.checked_sub(rhs.nanos)?, format: self.result_format(&rhs) })
    }
}

fn saturate(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// Strips factors of `base` from `value`, returning what is left and how many were removed.
fn remove_factors(mut value: i128, base: i128) -> (i128, i32) {
    let mut times = 0;
    while value != 0 && value % base == 0 {
        value /= base;
        times += 1;
    }
    (value, times)
}

impl fmt::Display for Amount {
    /// Kubernetes' canonical form: an integer mantissa with the largest suffix that
    /// keeps it an integer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let mut format = self.format;
        // Binary only for whole values of at least 1024 in magnitude; anything else
        // would lose precision or read oddly ("0.5Ki"), so it prints as decimal.
        if format == Format::BinarySI && (self.nanos.abs() < 1024 * NANO || self.nanos % NANO != 0) {
            format = Format::DecimalSI;
        }
        if format == Format::BinarySI {
            let (mut mantissa, mut exp) = remove_factors(self.nanos / NANO, 1024);
            // No suffix beyond Ei: fold the excess back into the mantissa.
            while exp > 6 {
                mantissa *= 1024;
                exp -= 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exp as usize];
            return write!(f, "{mantissa}{suffix}");
        }
        let (mut mantissa, times) = remove_factors(self.nanos, 10);
        let mut exp = times - 9;
        // Lower the exponent to a multiple of three; this cannot overflow because it
        // only restores factors of ten removed above.
        match exp.rem_euclid(3) {
            1 => {
                mantissa *= 10;
                exp -= 1;
            }
            2 => {
                mantissa *= 100;
                exp -= 2;
            }
            _ => {}
        }
        if format == Format::DecimalExponent {
            return if exp == 0 { write!(f, "{mantissa}") } else { write!(f, "{mantissa}e{exp}") };
        }
        while exp > 18 {
            mantissa *= 1000;
            exp -= 3;
        }
        let suffix = match exp {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            _ => "",
        };
        write!(f, "{mantissa}{suffix}")
    }
}

impl FromStr for Amount {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Amount::parse(s)
    }
}

// Arithmetic saturates rather than panicking: the range (about ±1.7e29 units) is far
// beyond any real resource, and a panic in a scheduler loop would be worse.
impl Add for Amount {
    type Output = Amount;

    fn add(self, rhs: Amount) -> Amount {
        Amount { nanos: self.nanos.saturating_add(rhs.nanos), format: self.result_format(&rhs) }
    }
}

impl Sub for Amount {
    type Output = Amount;

    fn sub(self, rhs: Amount) -> Amount {
        Amount { nanos: self.nanos.saturating_sub(rhs.nanos), format: self.result_format(&rhs) }
    }
}

impl AddAssign for Amount {
    fn add_assign(&mut self, rhs: Amount) {
        *self = *self + rhs;
    }
}

impl SubAssign for Amount {
    fn sub_assign(&mut self, rhs: Amount) {
        *self = *self - rhs;
    }
}

impl Sum for Amount {
    fn sum<I: Iterator<Item = Amount>>(iter: I) -> Amount {
        iter.fold(Amount::zero(), Add::add)
    }
}

impl<'a> Sum<&'a Amount> for Amount {
    fn sum<I: Iterator<Item = &'a Amount>>(iter: I) -> Amount {
        iter.fold(Amount::zero(), |acc, x| acc + *x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn q(s: &str) -> Amount {
        Amount::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    #[test]
    fn parses_the_common_forms() {
        let cases: &[(&str, i128, Format)] = &[
            ("300m", 300_000_000, Format::DecimalSI),
            ("0.5", 500_000_000, Format::DecimalSI),
            ("1", NANO, Format::DecimalSI),
            ("500Mi", 500 * (1 << 20) * NANO, Format::BinarySI),
            ("1Gi", (1 << 30) * NANO, Format::BinarySI),
            ("5Gi", 5 * (1 << 30) * NANO, Format::BinarySI),
            ("1e3", 1000 * NANO, Format::DecimalExponent),
            ("1E3", 1000 * NANO, Format::DecimalExponent),
            ("1.5", 1_500_000_000, Format::DecimalSI),
            ("+1", NANO, Format::DecimalSI),
            ("-1", -NANO, Format::DecimalSI),
            (".5", 500_000_000, Format::DecimalSI),
            ("5.", 5 * NANO, Format::DecimalSI),
            ("1k", 1000 * NANO, Format::DecimalSI),
            ("1M", 1_000_000 * NANO, Format::DecimalSI),
            ("1G", 1_000_000_000 * NANO, Format::DecimalSI),
            ("1T", 1_000_000_000_000 * NANO, Format::DecimalSI),
            ("1P", 10i128.pow(15) * NANO, Format::DecimalSI),
            ("1E", 10i128.pow(18) * NANO, Format::DecimalSI),
            ("100n", 100, Format::DecimalSI),
            ("1u", 1000, Format::DecimalSI),
            ("1Ki", 1024 * NANO, Format::BinarySI),
            ("1Ti", (1 << 40) * NANO, Format::BinarySI),
            ("1Pi", (1 << 50) * NANO, Format::BinarySI),
            ("1Ei", (1 << 60) * NANO, Format::BinarySI),
            ("1.5Gi", 1_610_612_736 * NANO, Format::BinarySI),
            ("1e-3", 1_000_000, Format::DecimalExponent),
            ("1e+3", 1000 * NANO, Format::DecimalExponent),
            ("2.5e2", 250 * NANO, Format::DecimalExponent),
            ("0", 0, Format::DecimalSI),
            ("0Gi", 0, Format::BinarySI),
            ("000123", 123 * NANO, Format::DecimalSI),
            ("0e100", 0, Format::DecimalExponent),
        ];
        for &(input, nanos, format) in cases {
            let a = q(input);
            assert_eq!(a.nanos(), nanos, "{input}");
            assert_eq!(a.format(), format, "{input}");
            assert_eq!(input.parse::<Amount>().map(|a| a.nanos()), Ok(nanos));
        }
    }

    #[test]
    fn rounds_finer_than_nano_away_from_zero() {
        assert_eq!(q("0.0000000001").nanos(), 1);
        assert_eq!(q("1.0000000001").nanos(), NANO + 1);
        assert_eq!(q("1.0000000000").nanos(), NANO);
        assert_eq!(q("-0.0000000001").nanos(), -1);
        assert_eq!(q("0.1n").nanos(), 1);
        assert_eq!(q("1.5n").nanos(), 2);
        assert_eq!(q("1e-10").nanos(), 1);
        assert_eq!(q("0.0000000001Ki").nanos(), 103); // 102.4 nanos
        assert_eq!(q("0.0000000000000000000000000000000000000000001Ki").nanos(), 1);
        assert_eq!(q(&format!("1.{}1", "0".repeat(60))).nanos(), NANO + 1);
    }

    #[test]
    fn equality_and_hash_ignore_format() {
        assert_eq!(q("0.5"), q("500m"));
        assert_eq!(q("1Gi"), q("1024Mi"));
        assert_eq!(q("1Gi"), q("1073741824"));
        assert_eq!(q("1e3"), q("1k"));
        assert_ne!(q("1G"), q("1Gi"));
        let set: HashSet<Amount> = [q("1k"), q("1e3"), q("1000")].into_iter().collect();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn ordering() {
        assert!(q("300m") < q("0.5"));
        assert!(q("1Gi") > q("1G"));
        assert!(q("-1") < q("0"));
        assert!(q("1Ki") > q("1k"));
        let mut v = [q("1Gi"), q("100m"), q("2"), q("-5"), q("1k")];
        v.sort();
        let shown: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["-5", "100m", "2", "1k", "1Gi"]);
        assert_eq!(q("1").max(q("999m")), q("1"));
    }

    #[test]
    fn arithmetic() {
        let total: Amount = ["300m", "0.5", "200m"].iter().map(|s| q(s)).sum();
        assert_eq!(total, q("1"));
        assert_eq!(total.to_string(), "1");
        let refs = [q("1Gi"), q("1Gi")];
        let total: Amount = refs.iter().sum();
        assert_eq!(total.to_string(), "2Gi");
        assert_eq!(total.format(), Format::BinarySI);
        let empty: Amount = std::iter::empty::<Amount>().sum();
        assert!(empty.is_zero());

        // The left operand's format wins.
        assert_eq!((q("1Gi") + q("1G")).format(), Format::BinarySI);
        assert_eq!((q("1G") + q("1Gi")).format(), Format::DecimalSI);
        // ...unless it is zero.
        assert_eq!((Amount::zero() + q("1Gi")).format(), Format::BinarySI);

        let mut a = q("1");
        a += q("500m");
        assert_eq!(a.to_string(), "1500m");
        a -= q("2");
        assert_eq!(a.to_string(), "-500m");
        assert_eq!(q("2Gi") - q("1Gi"), q("1Gi"));
        assert_eq!(q("1").checked_add(q("1")), Some(q("2")));
        assert_eq!(Amount::from_nanos(i128::MAX, Format::DecimalSI).checked_add(q("1")), None);
        assert_eq!(
            Amount::from_nanos(i128::MAX, Format::DecimalSI) + q("1"),
            Amount::from_nanos(i128::MAX, Format::DecimalSI)
        );
    }

    #[test]
    fn constructors_and_accessors() {
        assert!(Amount::zero().is_zero());
        assert_eq!(Amount::default(), Amount::zero());
        assert_eq!(Amount::from_milli(250), q("250m"));
        assert_eq!(Amount::from_int(3), q("3"));
        assert_eq!(Amount::from_int(-3).to_string(), "-3");
        assert_eq!(q("1.5").milli_value(), 1500);
        assert_eq!(q("1n").milli_value(), 1);
        assert_eq!(q("-1n").milli_value(), -1);
        assert_eq!(q("1.2").value(), 2);
        assert_eq!(q("-1.2").value(), -2);
        assert_eq!(q("1Gi").value(), 1 << 30);
        assert_eq!(q("100m").value(), 1);
        assert_eq!(q("1e28").value(), i64::MAX);
        assert_eq!(q("-1e28").value(), i64::MIN);
    }

    #[test]
    fn display_is_canonical() {
        let cases = [
            ("1Gi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("1.5Gi", "1536Mi"),
            ("0.5Gi", "512Mi"),
            ("512Ki", "512Ki"),
            ("1024Mi", "1Gi"),
            ("1Ei", "1Ei"),
            ("1024Ei", "1024Ei"),
            ("1000Ki", "1000Ki"),
            ("1.5Ki", "1536"),
            ("0.5Ki", "512"),
            ("0.5Mi", "512Ki"),
            ("0.1Ki", "102400m"),
            ("0.5", "500m"),
            ("1500m", "1500m"),
            ("1.5", "1500m"),
            ("2", "2"),
            ("2000", "2k"),
            ("1e3", "1e3"),
            ("1.5e3", "1500"),
            ("1e-3", "1e-3"),
            ("12e2", "1200"),
            ("1e6", "1e6"),
            ("300m", "300m"),
            ("100n", "100n"),
            ("1u", "1u"),
            ("10u", "10u"),
            ("0.1", "100m"),
            ("1k", "1k"),
            ("1000k", "1M"),
            ("1200k", "1200k"),
            ("1E", "1E"),
            ("1000E", "1000E"),
            ("1e21", "1e21"),
            ("0", "0"),
            ("0Gi", "0"),
            ("-0.5", "-500m"),
            ("-1Gi", "-1Gi"),
            ("+1", "1"),
            ("128974848", "128974848"),
            ("129e6", "129e6"),
            ("129M", "129M"),
            ("123Mi", "123Mi"),
            ("100m", "100m"),
        ];
        for (input, shown) in cases {
            assert_eq!(q(input).to_string(), shown, "{input}");
            // The canonical form reads back as the same value.
            assert_eq!(q(shown), q(input), "{input} -> {shown}");
        }
        assert_eq!(Amount::from_nanos(1, Format::BinarySI).to_string(), "1n");
        assert_eq!(Amount::from_nanos(10i128.pow(33), Format::DecimalSI).to_string(), "1000000E");
    }

    #[test]
    fn errors() {
        for bad in [
            "", "abc", "1x", "1.2.3", "Mi", "-", "+", ".", "1 Gi", " 1", "1Ki3", "1e", "1e3.5", "1KI", "1mi", "--1",
            "1/2", "0x10", "∞", "1é",
        ] {
            assert!(Amount::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            Amount::parse("12x").map_err(|e| e.to_string()),
            Err("\"12x\" is not a valid quantity: unknown suffix \"x\" (use e.g. \"500m\", \"1.5\", \"128Mi\", \"1Gi\", \"1e3\")".to_string())
        );
        assert_eq!(Amount::parse(""), Err(QuantityError::Empty));
        assert!(matches!(Amount::parse("Mi"), Err(QuantityError::NoDigits { .. })));
        assert!(Amount::parse("-").map_err(|e| e.to_string()).unwrap_err().contains("after the sign"));
        assert!(matches!(Amount::parse("1.2.3"), Err(QuantityError::Malformed { .. })));
        assert!(Amount::parse("1.2.3").map_err(|e| e.to_string()).unwrap_err().contains("more than one decimal point"));
        assert!(matches!(Amount::parse("1 Gi"), Err(QuantityError::Malformed { .. })));
        assert!(matches!(Amount::parse("1e40"), Err(QuantityError::Overflow { .. })));
        assert!(matches!(Amount::parse("1e99999999999999999999"), Err(QuantityError::Overflow { .. })));
        assert!(matches!(Amount::parse(&"9".repeat(40)), Err(QuantityError::Overflow { .. })));
        assert!(matches!(Amount::parse("1000000000000Ei"), Err(QuantityError::Overflow { .. })));
        // The limit itself is fine.
        assert!(Amount::parse("100000000000000000000000000000").is_ok());
    }
}
