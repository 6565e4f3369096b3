//! The CronJob controller's idea of now: the system clock in the binary, a clock
//! that only moves when told in tests (so "every minute" runs in milliseconds and
//! nothing depends on how fast the machine is).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::watch;

#[derive(Clone)]
pub enum Clock {
    System,
    Fake(FakeClock),
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Fake(fake) => fake.now(),
        }
    }

    /// Tells of every jump of a fake clock, so that what came due is looked at
    /// without waiting out a real-time timer; None for the system clock.
    pub fn jumps(&self) -> Option<watch::Receiver<DateTime<Utc>>> {
        match self {
            Clock::System => None,
            Clock::Fake(fake) => Some(fake.now.subscribe()),
        }
    }
}

/// A clock that stands still until `set` or `advance` moves it.
#[derive(Clone)]
pub struct FakeClock {
    now: Arc<watch::Sender<DateTime<Utc>>>,
}

impl FakeClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        FakeClock { now: Arc::new(watch::Sender::new(start)) }
    }

    pub fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    pub fn set(&self, time: DateTime<Utc>) {
        self.now.send_replace(time);
    }

    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|now| *now += by);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fake_clock_moves_only_when_told_and_tells_of_it() {
        let start = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let fake = FakeClock::new(start);
        let clock = Clock::Fake(fake.clone());
        let mut jumps = clock.jumps().unwrap();
        assert_eq!(clock.now(), start);
        fake.advance(Duration::minutes(1));
        jumps.changed().await.unwrap();
        assert_eq!(clock.now(), start + Duration::minutes(1));
        assert!(Clock::System.jumps().is_none());
    }
}
