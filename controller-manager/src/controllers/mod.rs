//! One module per controller.

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod garbagecollector;
pub mod job;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod persistentvolume;
pub mod pvcprotection;
pub mod pvprotection;
pub mod replicaset;
pub mod serviceaccount;
pub mod statefulset;

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
        statefulset::StatefulSetController::new(ctx.clone()).run(workers),
        daemonset::DaemonSetController::new(ctx.clone()).run(workers),
        namespace::NamespaceController::new(ctx.clone()).run(2),
        job::JobController::new(
            ctx.clone(),
            job::JobSettings { backoff_base: settings.job_backoff_base, backoff_max: settings.job_backoff_max }
        )
        .run(workers),
        cronjob::CronJobController::new(ctx.clone(), cronjob::Clock::System).run(workers),
        garbagecollector::GarbageCollector::new(ctx.clone()).run(),
        persistentvolume::PersistentVolumeController::new(ctx.clone()).run(workers),
        pvcprotection::PvcProtectionController::new(ctx.clone()).run(workers),
        pvprotection::PvProtectionController::new(ctx.clone()).run(workers),
        serviceaccount::ServiceAccountController::new(ctx.clone()).run(),
        nodelifecycle::NodeLifecycleController::new(
            ctx.clone(),
            nodelifecycle::LifecycleSettings {
                grace: settings.node_monitor_grace_period,
                period: settings.node_monitor_period,
            }
        )
        .run(),
        async {
            match settings.node_cidrs {
                Some((cidr, mask)) => match nodeipam::cidrs::CidrPool::new(cidr, mask) {
                    Ok(pool) => nodeipam::NodeIpamController::new(ctx.clone(), pool).run().await,
                    Err(e) => tracing::error!(error = %e, "node IPAM is off"),
                },
                None => std::future::pending::<()>().await,
            }
        },
    );
}
