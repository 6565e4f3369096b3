//! What a new cluster needs before anyone uses it: the namespaces Kubernetes always
//! has. Created at every start (an existing one is left alone), so a cluster whose
//! `default` namespace was lost gets it back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prost::Message as _;
use proto::Reason;
use proto::core::v1::Namespace;
use proto::meta::v1::ObjectMeta;

use crate::registry::Registry;

pub const SYSTEM_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates the system namespaces, retrying while etcd is unavailable, then sets `done`.
pub async fn system_namespaces(registry: Arc<Registry<Namespace>>, done: Arc<AtomicBool>) {
    for name in SYSTEM_NAMESPACES {
        let namespace = Namespace {
            metadata: Some(ObjectMeta { name: name.to_string(), ..Default::default() }),
            ..Default::default()
        };
        let bytes = namespace.encode_to_vec();
        let mut delay = Duration::from_millis(100);
        loop {
            match registry.create("", &bytes, false).await {
                Ok(_) => break,
                Err(e) if e.is(Reason::AlreadyExists) => break,
                Err(e) => {
                    tracing::warn!(namespace = name, error = %e, "creating a system namespace; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
    done.store(true, Ordering::Release);
}
