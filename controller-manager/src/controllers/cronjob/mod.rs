//! The CronJob controller: starts Jobs on a cron schedule in a time zone.

pub mod clock;
pub mod controller;
pub mod plan;

pub use clock::{Clock, FakeClock};
pub use controller::CronJobController;
