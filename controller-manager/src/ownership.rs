//! Owner references as controllers use them: the one controlling owner of an
//! object, and the reference a controller puts on what it creates or adopts.

use std::sync::Arc;

use client::runtime::store::{BY_OWNER_UID, Store};
use proto::Resource;
use proto::meta::v1::{ObjectMeta, OwnerReference};

/// The owner marked `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().find(|r| r.controller == Some(true))
}

/// A controlling reference to `owner`, blocking its foreground deletion until the
/// dependent is gone.
pub fn controller_reference<K: Resource>(owner: &K) -> OwnerReference {
    let meta = owner.metadata();
    OwnerReference {
        api_version: K::INFO.api_version(),
        kind: K::INFO.kind.to_string(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The objects in `store` that the owner with `uid` controls.
pub fn controlled_by<K: Resource>(store: &Store<K>, uid: &str) -> Vec<Arc<K>> {
    store
        .by_index(BY_OWNER_UID, uid)
        .into_iter()
        .filter(|object| controller_of(object.metadata()).is_some_and(|r| r.uid == uid))
        .collect()
}

/// The store key (`namespace/name`) of the owner `reference` names, in `namespace`.
pub fn owner_key(namespace: &str, reference: &OwnerReference) -> String {
    format!("{namespace}/{}", reference.name)
}
