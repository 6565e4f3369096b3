//! The node IPAM loop: every Node without a spec.podCIDR gets the next free subnet
//! of the cluster CIDR; subnets of deleted Nodes return to the pool. The pool is
//! rebuilt from the Nodes at start, so a restart never hands a subnet out twice.

use std::sync::{Arc, Mutex};

use client::Api;
use client::runtime::{Change, Informer};
use proto::core::v1::Node;
use proto::{ApiError, Reason, Resource};

use super::cidrs::{Cidr, CidrPool};
use crate::context::Context;

pub struct NodeIpamController {
    ctx: Arc<Context>,
    nodes: Arc<Informer<Node>>,
    pool: Mutex<CidrPool>,
}

impl NodeIpamController {
    pub fn new(ctx: Arc<Context>, pool: CidrPool) -> Arc<Self> {
        Arc::new(NodeIpamController { nodes: ctx.informers.get::<Node>(), ctx, pool: Mutex::new(pool) })
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, CidrPool> {
        self.pool.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub async fn run(self: Arc<Self>) {
        self.nodes.wait_synced().await;
        for node in self.nodes.store().list() {
            if let Some(cidr) = pod_cidr(&node) {
                self.pool().occupy(&cidr);
            }
        }
        // One at a time: allocation order is the pool's, and nodes come rarely.
        let mut changes = self.nodes.subscribe();
        while let Some(change) = changes.recv().await {
            match change {
                Change::Added(node) | Change::Updated { new: node, .. } => {
                    if pod_cidr(&node).is_none()
                        && let Err(e) = self.allocate(&node).await
                    {
                        tracing::warn!(node = %node.metadata().name, error = %e, "assigning a pod CIDR failed");
                    }
                }
                Change::Deleted(node) => {
                    if let Some(cidr) = pod_cidr(&node) {
                        self.pool().release(&cidr);
                    }
                }
            }
        }
    }

    async fn allocate(&self, node: &Node) -> Result<(), ApiError> {
        let Some(cidr) = self.pool().allocate() else {
            self.ctx.recorder.warning(node, "CIDRNotAvailable", "no pod CIDR is left in the cluster CIDR");
            return Ok(());
        };
        let api: Api<Node> = Api::all(&self.ctx.client);
        let mut updated = node.clone();
        let spec = updated.spec.get_or_insert_with(Default::default);
        spec.pod_cidr = cidr.to_string();
        spec.pod_cidrs = vec![cidr.to_string()];
        match api.update(&updated).await {
            Ok(_) => {
                self.ctx.recorder.normal(node, "CIDRAssignmentSucceeded", format!("Assigned pod CIDR {cidr}"));
                Ok(())
            }
            Err(e) => {
                self.pool().release(&cidr);
                // A stale node: the next change brings it back.
                if e.is(Reason::Conflict) || e.is(Reason::NotFound) { Ok(()) } else { Err(e) }
            }
        }
    }
}

fn pod_cidr(node: &Node) -> Option<Cidr> {
    node.spec.as_ref().map(|s| s.pod_cidr.as_str()).filter(|c| !c.is_empty()).and_then(|c| c.parse().ok())
}
