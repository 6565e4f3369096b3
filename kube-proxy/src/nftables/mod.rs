//! The nftables proxier (the default mode): Services become rules in one `ip` table
//! that kube-proxy owns and no other. `ruleset` turns a snapshot into rules (pure;
//! each Service port keeps its slot, and its rules when unchanged, from the ruleset
//! the kernel holds);
//! `nft` applies them; `proxier` decides between a whole-table and an incremental
//! transaction and clears stale UDP conntrack entries.

pub mod nft;
pub mod proxier;
pub mod ruleset;

pub use proxier::NftablesProxier;
pub use ruleset::{DEFAULT_TABLE, Options, Ruleset};
