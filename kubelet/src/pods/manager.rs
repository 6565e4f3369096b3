//! The pod manager: watches the pods bound to this node (field selector
//! spec.nodeName), gives each its worker, routes changes and runtime events to it, and
//! removes what is left of pods that are no longer bound here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use client::runtime::{Change, Informer};
use client::{Api, ListParams};
use proto::core::v1::Pod;
use tokio::sync::mpsc;

use super::worker::{self, Context, Message, Worker};

const ORPHAN_SWEEP: Duration = Duration::from_secs(10);

pub async fn run(ctx: Arc<Context>, mut runtime_events: mpsc::UnboundedReceiver<String>) {
    let selector = format!("spec.nodeName={}", ctx.settings.node_name);
    let informer = Informer::new(Api::<Pod>::all(&ctx.client), ListParams::fields(&selector));
    let mut changes = informer.subscribe();
    tokio::spawn(informer.clone().run());
    // Containers get the Services of their namespace as environment variables: know
    // them before starting any.
    ctx.services.wait_synced().await;
    informer.wait_synced().await;
    tracing::info!(pods = informer.store().len(), "watching the pods bound to this node");

    let mut workers: HashMap<String, mpsc::UnboundedSender<Message>> = HashMap::new();
    let (done_tx, mut done) = mpsc::unbounded_channel::<String>();
    let mut sweep = tokio::time::interval(ORPHAN_SWEEP);
    loop {
        tokio::select! {
            change = changes.recv() => {
                let Some(change) = change else { return };
                let pod = change.object().clone();
                let uid = pod.metadata.as_ref().map(|m| m.uid.clone()).unwrap_or_default();
                if uid.is_empty() {
                    continue;
                }
                match change {
                    Change::Deleted(_) => {
                        if let Some(tx) = workers.get(&uid) {
                            let _ = tx.send(Message::Gone);
                        }
                    }
                    Change::Added(_) | Change::Updated { .. } => match workers.get(&uid) {
                        Some(tx) => {
                            let _ = tx.send(Message::Update(pod));
                        }
                        None => {
                            let (tx, rx) = mpsc::unbounded_channel();
                            workers.insert(uid.clone(), tx);
                            let worker = Worker::new(ctx.clone(), pod);
                            let done_tx = done_tx.clone();
                            tokio::spawn(async move {
                                worker.run(rx).await;
                                let _ = done_tx.send(uid);
                            });
                        }
                    },
                }
            }
            Some(uid) = runtime_events.recv() => {
                if let Some(tx) = workers.get(&uid) {
                    let _ = tx.send(Message::Poke);
                }
            }
            Some(uid) = done.recv() => {
                workers.remove(&uid);
            }
            _ = sweep.tick() => {
                let mut held: Vec<String> = ctx.runtime.pods().await;
                held.extend(ctx.volumes.pods());
                held.extend(ctx.network.ipam().allocations().into_iter().map(|(_, uid)| uid));
                held.sort();
                held.dedup();
                for uid in held {
                    if !workers.contains_key(&uid) {
                        tracing::info!(pod_uid = %uid, "removing what is left of a pod no longer bound here");
                        if let Err(e) = worker::remove_orphan(&ctx, &uid).await {
                            tracing::warn!(pod_uid = %uid, error = %e, "cleaning up an orphaned pod");
                        }
                    }
                }
            }
        }
    }
}
