//! Helpers on `meta.v1.Time` and `meta.v1.MicroTime`: construction from the clock and
//! from chrono, ordering, and RFC 3339 text.

use std::cmp::Ordering;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::meta::v1::{MicroTime, Time};

macro_rules! time_helpers {
    ($ty:ident, $format:expr) => {
        impl $ty {
            pub fn now() -> Self {
                Self::from_datetime(Utc::now())
            }

            pub fn from_datetime(time: DateTime<Utc>) -> Self {
                $ty { seconds: time.timestamp(), nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0) }
            }

            pub fn to_datetime(&self) -> DateTime<Utc> {
                DateTime::from_timestamp(self.seconds, u32::try_from(self.nanos).unwrap_or(0)).unwrap_or_default()
            }

            pub fn to_rfc3339(&self) -> String {
                self.to_datetime().to_rfc3339_opts($format, true)
            }
        }

        impl PartialOrd for $ty {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $ty {
            fn cmp(&self, other: &Self) -> Ordering {
                (self.seconds, self.nanos).cmp(&(other.seconds, other.nanos))
            }
        }
    };
}

time_helpers!(Time, SecondsFormat::Secs);
time_helpers!(MicroTime, SecondsFormat::Micros);

impl Time {
    /// Whole seconds, as Kubernetes keeps them: a Time has second precision.
    pub fn now_seconds() -> Self {
        Time { seconds: Utc::now().timestamp(), nanos: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_and_formats() {
        let a = Time { seconds: 1_700_000_000, nanos: 0 };
        let b = Time { seconds: 1_700_000_000, nanos: 5 };
        assert!(a < b);
        assert_eq!(a.to_rfc3339(), "2023-11-14T22:13:20Z");
        let m = MicroTime { seconds: 1_700_000_000, nanos: 123_456_000 };
        assert_eq!(m.to_rfc3339(), "2023-11-14T22:13:20.123456Z");
    }
}
