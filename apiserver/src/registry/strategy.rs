//! What differs between kinds: defaults, validation, which fields selectors may use,
//! graceful deletion, and values allocated on the object's behalf. Everything else
//! (storage, preconditions, metadata rules, watch) is the registry's, shared by all.

use proto::codec::FieldError;
use proto::meta::v1::DeleteOptions;
use proto::{ApiError, Resource};

use crate::allocation::Reservations;

/// How metadata.name is validated: most kinds take a DNS subdomain, some (Namespace,
/// Service) a DNS label, because the name becomes part of a DNS name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    Subdomain,
    Label,
    /// RFC 1035 label (starts with a letter): Services.
    Label1035,
    /// Nodes may be named like hosts, so any DNS subdomain.
    Any,
}

pub trait Strategy<K: Resource + Shape>: Send + Sync + 'static {
    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }

    /// Resets on create what a client may not set (usually the status).
    fn prepare_for_create(&self, object: &mut K) {
        object.clear_status();
    }

    /// Adjusts an update before defaults and validation: fields the client may leave
    /// out on update (a Service's clusterIP), fields a type change drops.
    fn prepare_for_update(&self, _new: &mut K, _old: &K) {}

    /// Fills in Kubernetes' defaults.
    fn default(&self, _object: &mut K) {}

    /// Validates the whole object (after defaults); metadata is checked by the registry.
    fn validate(&self, _object: &K) -> Vec<FieldError> {
        Vec::new()
    }

    /// Validates a change: immutable fields and the like.
    fn validate_update(&self, _new: &K, _old: &K) -> Vec<FieldError> {
        Vec::new()
    }

    /// Validates a status update.
    fn validate_status_update(&self, _new: &K, _old: &K) -> Vec<FieldError> {
        Vec::new()
    }

    /// Field selector values besides metadata.name and metadata.namespace. A kind that
    /// has any names them in `field_names`: the watch cache decodes only those kinds'
    /// objects whole.
    fn fields(&self, _object: &K) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Field names that `fields` provides, for rejecting unsupported selectors.
    fn field_names(&self) -> &'static [&'static str] {
        &[]
    }

    /// For kinds deleted gracefully (pods): the grace period to wait before the
    /// object is removed, or None to remove it now.
    fn grace_period(&self, _object: &K, _options: &DeleteOptions) -> Option<i64> {
        None
    }

    /// Whether `reserve_on_create` may change the object. The registry keeps an
    /// unreserved copy for retries only for the kinds that say so.
    fn reserves_on_create(&self) -> bool {
        false
    }

    /// Values to reserve for a new object (ClusterIPs, NodePorts), filling them in.
    fn reserve_on_create(&self, _object: &mut K) -> Result<Reservations, ApiError> {
        Ok(Reservations::default())
    }

    /// Values to reserve and release when `new` replaces `old`.
    fn reserve_on_update(&self, _new: &mut K, _old: &K) -> Result<Reservations, ApiError> {
        Ok(Reservations::default())
    }

    /// Reservation keys that another writer took first: mark them used so the next
    /// attempt picks other values.
    fn reservations_taken(&self, _keys: &[String]) {}

    /// A write holding these reservations committed: record them.
    fn reservations_committed(&self, _reservations: &Reservations) {}

    /// Values to release when the object is removed.
    fn release_on_delete(&self, _object: &K) -> Reservations {
        Reservations::default()
    }

    /// Whether the object may be removed now that it is being deleted and has no
    /// finalizers left. Namespaces also wait for their spec.finalizers.
    fn ready_for_removal(&self, _object: &K) -> bool {
        true
    }

    /// Called when deletion starts on an object that is not removed at once.
    fn on_deletion_started(&self, _object: &mut K) {}
}

/// The spec/status split of a kind. Update keeps the stored status, UpdateStatus the
/// stored spec; generation counts spec changes.
pub trait Shape {
    const HAS_STATUS: bool;
    fn spec_eq(&self, other: &Self) -> bool;
    fn clear_status(&mut self);
    /// Everything but metadata and status, taken from `from`.
    fn copy_spec(&mut self, from: &Self);
    fn copy_status(&mut self, from: &Self);
}

macro_rules! shape_with_status {
    ($($ty:path),* $(,)?) => {$(
        impl Shape for $ty {
            const HAS_STATUS: bool = true;
            fn spec_eq(&self, other: &Self) -> bool {
                self.spec == other.spec
            }
            fn clear_status(&mut self) {
                self.status = None;
            }
            fn copy_spec(&mut self, from: &Self) {
                self.spec = from.spec.clone();
            }
            fn copy_status(&mut self, from: &Self) {
                self.status = from.status.clone();
            }
        }
    )*};
}

/// Kinds without a status: everything but metadata is their "spec".
macro_rules! shape_without_status {
    ($($ty:path),* $(,)?) => {$(
        impl Shape for $ty {
            const HAS_STATUS: bool = false;
            fn spec_eq(&self, other: &Self) -> bool {
                let mut a = self.clone();
                let mut b = other.clone();
                a.metadata = None;
                b.metadata = None;
                a == b
            }
            fn clear_status(&mut self) {}
            fn copy_spec(&mut self, from: &Self) {
                let metadata = self.metadata.take();
                *self = from.clone();
                self.metadata = metadata;
            }
            fn copy_status(&mut self, _from: &Self) {}
        }
    )*};
}

shape_with_status!(
    proto::core::v1::Namespace,
    proto::core::v1::Pod,
    proto::core::v1::Node,
    proto::core::v1::Service,
    proto::core::v1::ReplicationController,
    proto::core::v1::PersistentVolume,
    proto::core::v1::PersistentVolumeClaim,
    proto::apps::v1::Deployment,
    proto::apps::v1::ReplicaSet,
    proto::apps::v1::StatefulSet,
    proto::apps::v1::DaemonSet,
    proto::batch::v1::Job,
    proto::batch::v1::CronJob,
);

shape_without_status!(
    proto::core::v1::Endpoints,
    proto::core::v1::ConfigMap,
    proto::core::v1::Secret,
    proto::core::v1::Event,
    proto::core::v1::ServiceAccount,
    proto::apps::v1::ControllerRevision,
    proto::coordination::v1::Lease,
);
