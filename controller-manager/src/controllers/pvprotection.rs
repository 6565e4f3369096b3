//! Volume-in-use protection, as Kubernetes' pv-protection controller does it. The
//! apiserver puts the kubernetes.io/pv-protection finalizer on every new volume;
//! deleting a volume then only marks it, and this controller takes the finalizer
//! off once the volume is no longer Bound to a claim. Volumes that lack the
//! finalizer are given it.

use std::sync::Arc;

use client::Api;
use client::runtime::{Action, Controller, Informer};
use proto::core::v1::PersistentVolume;
use proto::{ApiError, Resource};

use super::pvcprotection::{set_finalizer, settle};

pub const PV_FINALIZER: &str = "kubernetes.io/pv-protection";

pub struct PvProtectionController {
    client: client::Client,
    volumes: Arc<Informer<PersistentVolume>>,
}

impl PvProtectionController {
    pub fn new(ctx: Arc<crate::context::Context>) -> Arc<Self> {
        Arc::new(PvProtectionController {
            client: ctx.client.clone(),
            volumes: ctx.informers.get::<PersistentVolume>(),
        })
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        let controller = Controller::new(self.volumes.clone()).workers(workers);
        controller
            .run(move |_key, volume: Option<Arc<PersistentVolume>>| {
                let this = self.clone();
                async move {
                    match volume {
                        Some(volume) => settle(this.sync(&volume).await),
                        None => Ok(Action::await_change()),
                    }
                }
            })
            .await;
    }

    async fn sync(&self, volume: &PersistentVolume) -> Result<(), ApiError> {
        let deleting = volume.metadata().deletion_timestamp.is_some();
        let bound = volume.status.as_ref().is_some_and(|s| s.phase == "Bound");
        let wanted = !deleting || bound;
        if let Some(updated) = set_finalizer(volume, PV_FINALIZER, wanted) {
            // A volume being deleted cannot gain a finalizer; only removal happens then.
            if deleting && wanted {
                return Ok(());
            }
            Api::<PersistentVolume>::all(&self.client).update(&updated).await?;
        }
        Ok(())
    }
}
