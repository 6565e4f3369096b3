//! The scheduler: watches nodes and pods, keeps a cache of what each node has left
//! (`cache`), queues pending pods (`queue`), filters and scores nodes (`filters`,
//! `scores`, with `spread` and `interpod` for the rules that count other pods), and binds each pod through the apiserver's binding subresource
//! (`scheduling`). It owns no state the apiserver does not have: a restart rebuilds
//! everything from list+watch. It never writes a pod's spec except through Binding.

pub mod cache;
pub mod config;
pub mod filters;
pub mod interpod;
pub mod metrics;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod scheduling;
pub mod scores;
pub mod spread;
