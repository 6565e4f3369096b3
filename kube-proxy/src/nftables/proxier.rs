//! Keeps the kernel's table equal to the ruleset of the latest snapshot. The first
//! sync, and any sync after a failure or after the table vanished, rewrites the whole
//! table (deleted and recreated in one transaction); the others send only the
//! difference, so one endpoint change costs the same with 10 or 10,000 Services and
//! the ClientIP affinity of unchanged Services survives. Either way it is one
//! `nft -f` transaction: the kernel never holds a half-programmed table.

use super::nft;
use super::ruleset::{Options, Ruleset, cleanup_transaction};
use crate::conntrack;
use crate::model::{Protocol, Snapshot};
use crate::sync::{Proxier, SyncError, SyncReport};

pub struct NftablesProxier {
    options: Options,
    /// What the kernel holds, when known for sure.
    applied: Option<Ruleset>,
    /// The UDP ports of the last successful sync, for stale UDP flows.
    last_snapshot: Option<Snapshot>,
}

impl NftablesProxier {
    pub fn new(options: Options) -> NftablesProxier {
        NftablesProxier { options, applied: None, last_snapshot: None }
    }

    /// Removes the table (--cleanup).
    pub async fn cleanup(table: &str) -> Result<(), nft::NftError> {
        nft::apply(&cleanup_transaction(table)).await
    }

    async fn apply(&mut self, ruleset: &Ruleset) -> Result<bool, nft::NftError> {
        if let Some(applied) = self.applied.take().filter(|a| ruleset.can_update_from(a)) {
            let update = ruleset.update_transaction(&applied);
            if update.is_empty() {
                if nft::table_exists(&self.options.table).await? {
                    self.applied = Some(applied);
                    return Ok(false);
                }
                tracing::warn!(table = self.options.table, "the table has vanished; recreating it");
            } else {
                match nft::apply(&update).await {
                    Ok(()) => return Ok(false),
                    // The kernel refused it whole, so the table is as it was or changed
                    // by someone else: a full rewrite repairs both.
                    Err(e) => tracing::warn!(error = %e, "an incremental update failed; rewriting the whole table"),
                }
            }
        }
        nft::apply(&ruleset.full_transaction()).await?;
        Ok(true)
    }
}

#[async_trait::async_trait]
impl Proxier for NftablesProxier {
    async fn sync(&mut self, snapshot: &Snapshot) -> Result<SyncReport, SyncError> {
        let ruleset = Ruleset::build(snapshot, &self.options, self.applied.as_ref());
        let full = self.apply(&ruleset).await?;
        let rules = ruleset.rule_count();
        self.applied = Some(ruleset);
        // Only UDP has stale flows: copying the rest would cost a sync of 10,000
        // TCP Services more than its own rules.
        let udp = Snapshot {
            service_ports: snapshot.service_ports.iter().filter(|p| p.protocol == Protocol::Udp).cloned().collect(),
            node_ips: Vec::new(),
        };
        if let Some(old) = self.last_snapshot.replace(udp) {
            for flows in conntrack::stale_flows(&old, snapshot) {
                // A leftover entry only delays a client until it idles out: log, go on.
                if let Err(e) = conntrack::delete(&flows).await {
                    tracing::warn!(error = %e, "clearing stale UDP conntrack entries failed");
                }
            }
        }
        Ok(SyncReport { rules, full })
    }
}
