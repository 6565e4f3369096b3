//! The machinery every controller is built from, in the manner of client-go and
//! kube-runtime: informers that keep a local indexed cache of a kind in step with
//! the apiserver (`informer`, `store`), a work queue of keys with per-key backoff
//! (`workqueue`), leader election on a Lease (`leader_election`), and an Event
//! recorder (`events`); `controller` ties informers, a queue and
//! workers together around a reconcile function.
//!
//! A controller subscribes to the informers it needs, turns changes into keys on a
//! `WorkQueue`, and runs workers that `get` a key, reconcile it from the stores, and
//! `done` it (with `add_rate_limited` on failure, `forget` on success).

pub mod controller;
pub mod events;
pub mod informer;
pub mod leader_election;
pub mod store;
pub mod workqueue;

pub use controller::{Action, Controller};
pub use events::{EventRecorder, EventType, reference_of};
pub use informer::{Change, Informer, SharedInformers};
pub use leader_election::{ConfigError as LeaderElectionConfigError, LeaderElectionConfig, LeaderElector, Leadership};
pub use store::{ObjectKey, Store, key_of};
pub use workqueue::{RetryPolicy, WorkQueue, spawn_resync};
