//! The local cache an informer fills: every object of a kind by key
//! (`namespace/name`, or `name` for cluster-scoped kinds), with indexes — by
//! namespace, by owner uid, and any named index a controller registers — that
//! readers share without copying objects.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use proto::Resource;
use proto::labels::Selector;

/// `namespace/name`, or `name` for cluster-scoped objects (client-go's key form).
pub type ObjectKey = String;

pub fn key_of<K: Resource>(object: &K) -> ObjectKey {
    let meta = object.metadata();
    if meta.namespace.is_empty() { meta.name.clone() } else { format!("{}/{}", meta.namespace, meta.name) }
}

/// Index names every store has.
pub const BY_NAMESPACE: &str = "namespace";
pub const BY_OWNER_UID: &str = "owner-uid";

/// Computes the values an object is indexed under.
pub type IndexFn<K> = Arc<dyn Fn(&K) -> Vec<String> + Send + Sync>;

struct Inner<K> {
    objects: HashMap<ObjectKey, Arc<K>>,
    indexers: BTreeMap<String, IndexFn<K>>,
    /// index name -> value -> keys
    indices: HashMap<String, HashMap<String, HashSet<ObjectKey>>>,
}

/// A shared, indexed cache of one kind. Cloning shares it.
pub struct Store<K> {
    inner: Arc<RwLock<Inner<K>>>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store { inner: self.inner.clone() }
    }
}

impl<K: Resource> Default for Store<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Resource> Store<K> {
    pub fn new() -> Self {
        let mut indexers: BTreeMap<String, IndexFn<K>> = BTreeMap::new();
        indexers.insert(BY_NAMESPACE.to_string(), Arc::new(|o: &K| vec![o.metadata().namespace.clone()]));
        indexers.insert(
            BY_OWNER_UID.to_string(),
            Arc::new(|o: &K| o.metadata().owner_references.iter().map(|r| r.uid.clone()).collect()),
        );
        let indices = indexers.keys().map(|name| (name.clone(), HashMap::new())).collect();
        Store { inner: Arc::new(RwLock::new(Inner { objects: HashMap::new(), indexers, indices })) }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner<K>> {
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner<K>> {
        self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a named index; objects already cached are indexed at once.
    pub fn add_index(&self, name: &str, index: impl Fn(&K) -> Vec<String> + Send + Sync + 'static) {
        let mut inner = self.write();
        let index: IndexFn<K> = Arc::new(index);
        let mut values: HashMap<String, HashSet<ObjectKey>> = HashMap::new();
        for (key, object) in &inner.objects {
            for value in index(object) {
                values.entry(value).or_default().insert(key.clone());
            }
        }
        inner.indices.insert(name.to_string(), values);
        inner.indexers.insert(name.to_string(), index);
    }

    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.read().objects.get(key).cloned()
    }

    pub fn get_named(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        if namespace.is_empty() { self.get(name) } else { self.get(&format!("{namespace}/{name}")) }
    }

    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn keys(&self) -> Vec<ObjectKey> {
        self.read().objects.keys().cloned().collect()
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().objects.values().cloned().collect()
    }

    /// The objects indexed under `value` by the index `name` (empty for an unknown index).
    pub fn by_index(&self, name: &str, value: &str) -> Vec<Arc<K>> {
        let inner = self.read();
        let Some(keys) = inner.indices.get(name).and_then(|values| values.get(value)) else {
            return Vec::new();
        };
        keys.iter().filter_map(|k| inner.objects.get(k).cloned()).collect()
    }

    /// The objects in `namespace` (every namespace if None) whose labels match.
    pub fn select(&self, namespace: Option<&str>, selector: &Selector) -> Vec<Arc<K>> {
        let candidates = match namespace {
            Some(ns) => self.by_index(BY_NAMESPACE, ns),
            None => self.list(),
        };
        candidates.into_iter().filter(|o| selector.matches(&o.metadata().labels)).collect()
    }

    /// Stores `object`, returning what it replaced.
    pub(crate) fn insert(&self, object: Arc<K>) -> Option<Arc<K>> {
        let key = key_of(object.as_ref());
        let mut inner = self.write();
        let old = inner.objects.insert(key.clone(), object.clone());
        if let Some(old) = &old {
            unindex(&mut inner, &key, old);
        }
        index(&mut inner, &key, &object);
        old
    }

    pub(crate) fn remove(&self, key: &str) -> Option<Arc<K>> {
        let mut inner = self.write();
        let old = inner.objects.remove(key);
        if let Some(old) = &old {
            unindex(&mut inner, key, old);
        }
        old
    }
}

fn index<K>(inner: &mut Inner<K>, key: &str, object: &K) {
    let Inner { indexers, indices, .. } = inner;
    for (name, index) in indexers.iter() {
        let values = indices.entry(name.clone()).or_default();
        for value in index(object) {
            values.entry(value).or_default().insert(key.to_string());
        }
    }
}

fn unindex<K>(inner: &mut Inner<K>, key: &str, object: &K) {
    let Inner { indexers, indices, .. } = inner;
    for (name, index) in indexers.iter() {
        let Some(values) = indices.get_mut(name) else { continue };
        for value in index(object) {
            if let Some(keys) = values.get_mut(&value) {
                keys.remove(key);
                if keys.is_empty() {
                    values.remove(&value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::core::v1::ConfigMap;
    use proto::meta::v1::{ObjectMeta, OwnerReference};

    fn cm(ns: &str, name: &str, app: &str, owner: &str) -> Arc<ConfigMap> {
        Arc::new(ConfigMap {
            metadata: Some(ObjectMeta {
                namespace: ns.into(),
                name: name.into(),
                labels: [("app".to_string(), app.to_string())].into_iter().collect(),
                owner_references: vec![OwnerReference { uid: owner.into(), ..Default::default() }],
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn indexes_follow_inserts_updates_and_removals() {
        let store = Store::<ConfigMap>::new();
        store.insert(cm("a", "x", "web", "u1"));
        store.insert(cm("a", "y", "db", "u1"));
        store.insert(cm("b", "x", "web", "u2"));
        assert_eq!(store.len(), 3);
        assert_eq!(store.by_index(BY_NAMESPACE, "a").len(), 2);
        assert_eq!(store.by_index(BY_OWNER_UID, "u1").len(), 2);
        let web = Selector::parse("app=web").unwrap();
        assert_eq!(store.select(None, &web).len(), 2);
        assert_eq!(store.select(Some("a"), &web).len(), 1);
        // An update moves the object between index values.
        store.insert(cm("a", "x", "db", "u2"));
        assert_eq!(store.by_index(BY_OWNER_UID, "u1").len(), 1);
        assert_eq!(store.select(Some("a"), &web).len(), 0);
        assert!(store.remove("a/y").is_some());
        assert!(store.by_index(BY_OWNER_UID, "u1").is_empty());
        assert_eq!(store.get_named("b", "x").unwrap().metadata().name, "x");
    }

    #[test]
    fn a_custom_index_covers_existing_and_later_objects() {
        let store = Store::<ConfigMap>::new();
        store.insert(cm("a", "x", "web", "u1"));
        store.add_index("app", |o: &ConfigMap| o.metadata().labels.get("app").cloned().into_iter().collect());
        store.insert(cm("a", "y", "web", "u1"));
        assert_eq!(store.by_index("app", "web").len(), 2);
        assert!(store.by_index("no-such-index", "web").is_empty());
    }
}
