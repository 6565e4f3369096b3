//! The serviceaccount controller: a `default` ServiceAccount in every active
//! namespace, put back if someone deletes it.

use std::sync::Arc;

use client::Api;
use client::runtime::{Change, Informer, WorkQueue};
use proto::core::v1::{Namespace, ServiceAccount};
use proto::meta::v1::ObjectMeta;
use proto::{ApiError, Reason, Resource};

use crate::context::Context;

pub struct ServiceAccountController {
    ctx: Arc<Context>,
    namespaces: Arc<Informer<Namespace>>,
    accounts: Arc<Informer<ServiceAccount>>,
    queue: WorkQueue<String>,
}

impl ServiceAccountController {
    pub fn new(ctx: Arc<Context>) -> Arc<Self> {
        Arc::new(ServiceAccountController {
            namespaces: ctx.informers.get::<Namespace>(),
            accounts: ctx.informers.get::<ServiceAccount>(),
            ctx,
            queue: WorkQueue::default(),
        })
    }

    pub async fn run(self: Arc<Self>) {
        self.namespaces.wait_synced().await;
        self.accounts.wait_synced().await;
        let mut namespaces = self.namespaces.subscribe();
        let mut accounts = self.accounts.subscribe();
        let mut tasks = Vec::new();
        let this = self.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(change) = namespaces.recv().await {
                this.queue.add(change.object().metadata().name.clone());
            }
        }));
        let this = self.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(change) = accounts.recv().await {
                if let Change::Deleted(account) = change {
                    this.queue.add(account.metadata().namespace.clone());
                }
            }
        }));
        let this = self.clone();
        tasks.extend(crate::tasks::spawn_workers(&self.queue, 1, "serviceaccount", move |namespace| {
            let this = this.clone();
            async move { this.sync(&namespace).await }
        }));
        let _stop = crate::tasks::AbortOnDrop(tasks);
        std::future::pending::<()>().await;
    }

    async fn sync(&self, namespace: &str) -> Result<(), ApiError> {
        let Some(ns) = self.namespaces.store().get(namespace) else { return Ok(()) };
        let active = ns.metadata().deletion_timestamp.is_none();
        if !active || self.accounts.store().get_named(namespace, "default").is_some() {
            return Ok(());
        }
        let account = ServiceAccount {
            metadata: Some(ObjectMeta { name: "default".into(), namespace: namespace.into(), ..Default::default() }),
            ..Default::default()
        };
        match Api::<ServiceAccount>::namespaced(&self.ctx.client, namespace).create(&account).await {
            Ok(_) => Ok(()),
            Err(e) if e.is(Reason::AlreadyExists) => Ok(()),
            // The namespace began terminating meanwhile.
            Err(e) if e.is(Reason::Forbidden) || e.is(Reason::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
