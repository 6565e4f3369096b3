//! kube-proxy's view of the cluster: informers on Services, Endpoints and this
//! node's Node, whose every change wakes the sync loop, and the `Snapshot` of them.

use std::sync::Arc;

use client::runtime::{Informer, SharedInformers, Store};
use client::{Api, Client, ListParams};
use proto::Resource;
use proto::core::v1::{Endpoints, Node, Service};
use tokio::sync::Notify;

use crate::model::{self, Cidr, Snapshot};

pub struct Sources {
    services: Store<Service>,
    endpoints: Store<Endpoints>,
    nodes: Store<Node>,
    hostname: String,
    nodeport_cidrs: Vec<Cidr>,
    node_informer: tokio::task::JoinHandle<()>,
    forwarders: Vec<tokio::task::JoinHandle<()>>,
}

impl Sources {
    /// Starts the informers and waits for their first lists; `changed` is notified
    /// on every change from then on. Services and Endpoints come from the process's
    /// `informers` (which the cluster DNS shares, so each kind is watched once; the
    /// caller keeps them running); the Node has an informer of its own, for this
    /// node only. Must be called within a tokio runtime.
    pub async fn start(
        client: &Client,
        informers: &SharedInformers,
        hostname: &str,
        nodeport_cidrs: Vec<Cidr>,
        changed: Arc<Notify>,
    ) -> Sources {
        let services = informers.get::<Service>();
        let endpoints = informers.get::<Endpoints>();
        let node = Informer::new(Api::<Node>::all(client), ListParams::fields(&format!("metadata.name={hostname}")));
        let node_task = tokio::spawn(node.clone().run());
        let forwarders =
            vec![forward(&services, changed.clone()), forward(&endpoints, changed.clone()), forward(&node, changed)];
        services.wait_synced().await;
        endpoints.wait_synced().await;
        node.wait_synced().await;
        Sources {
            services: services.store(),
            endpoints: endpoints.store(),
            nodes: node.store(),
            hostname: hostname.to_string(),
            nodeport_cidrs,
            node_informer: node_task,
            forwarders,
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let services = self.services.list();
        let endpoints = self.endpoints.list();
        let node = self.nodes.list().into_iter().find(|n| n.metadata.as_ref().is_some_and(|m| m.name == self.hostname));
        Snapshot {
            service_ports: model::service_ports(
                services.iter().map(AsRef::as_ref),
                endpoints.iter().map(AsRef::as_ref),
                &self.hostname,
            ),
            node_ips: model::node_ips(node.as_deref(), &self.nodeport_cidrs),
        }
    }
}

impl Drop for Sources {
    fn drop(&mut self) {
        self.node_informer.abort();
        for task in &self.forwarders {
            task.abort();
        }
    }
}

fn forward<K: Resource>(informer: &Arc<Informer<K>>, changed: Arc<Notify>) -> tokio::task::JoinHandle<()> {
    let mut changes = informer.subscribe();
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            changed.notify_one();
        }
    })
}
