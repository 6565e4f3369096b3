//! One module per controller.

pub mod deployment;
pub mod endpoints;
pub mod nodeipam;
pub mod replicaset;

use std::sync::Arc;

use proto::apps::v1::ReplicaSet;
use proto::core::v1::ReplicationController;

use crate::config::Settings;
use crate::context::Context;

/// Runs every controller until this future is dropped (leadership lost, shutdown).
pub async fn run_all(ctx: Arc<Context>, settings: &Settings) {
    let workers = settings.replicaset_workers;
    tokio::join!(
        replicaset::ReplicaSetController::<ReplicaSet>::new(ctx.clone()).run(workers),
        replicaset::ReplicaSetController::<ReplicationController>::new(ctx.clone()).run(workers),
        endpoints::EndpointsController::new(ctx.clone()).run(workers),
        deployment::DeploymentController::new(ctx.clone()).run(workers),
    );
}
