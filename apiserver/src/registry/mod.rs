//! The registry: one generic implementation of create, get, list, update, patch,
//! delete and watch over storage and the watch cache, parameterised per kind by a
//! small `Strategy`.

pub mod api;
pub mod kinds;
pub mod meta;
pub mod patch;
pub mod strategy;

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use prost::Message as _;
use proto::codec::FieldError;
use proto::core::v1::Namespace;
use proto::fields::FieldSelector;
use proto::labels::Selector;
use proto::meta::v1::{DeleteOptions, Time};
use proto::resource::kinds as kind_info;
use proto::{ApiError, KindInfo, Reason, Resource};
use serde::{Deserialize, Serialize};

use crate::allocation::Reservations;
use crate::storage::keys::Keys;
use crate::storage::{Etcd, Expect, StorageError, Write, WriteResult};
use crate::watchcache::{Attrs, CachedObject, Filter, ObjectCodec, Start, WatchCache, Watcher, slim, with_revision};
pub use strategy::{NameRule, Shape, Strategy};

/// Which part of an object an update writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// Spec and metadata (Update, Patch).
    Main,
    /// Status only (UpdateStatus, status Patch).
    Status,
    /// A pod's binding to a node.
    Binding,
}

/// How many times a write is retried after losing a race it can recover from (an
/// unconditional update whose object changed meanwhile, a reservation taken by
/// another apiserver).
const MAX_ATTEMPTS: usize = 16;

/// What every registry shares.
pub struct Context {
    pub etcd: Etcd,
    pub keys: Keys,
    /// For admission: objects may only be created in existing, active namespaces.
    pub namespaces: Arc<WatchCache>,
}

pub struct Registry<K: Resource + Shape> {
    info: &'static KindInfo,
    strategy: Arc<dyn Strategy<K>>,
    ctx: Arc<Context>,
    cache: Arc<WatchCache>,
}

/// A page of a list.
pub struct ListPage {
    pub items: Vec<Bytes>,
    pub resource_version: String,
    pub continue_token: String,
    pub remaining: Option<i64>,
}

pub struct ListOptions<'a> {
    pub namespace: Option<&'a str>,
    pub label_selector: &'a str,
    pub field_selector: &'a str,
    pub limit: i64,
    pub continue_token: &'a str,
    pub resource_version: &'a str,
}

/// Turns stored values of kind K into cached objects.
pub struct TypedCodec<K: Resource + Shape> {
    strategy: Arc<dyn Strategy<K>>,
}

impl<K: Resource + Shape> ObjectCodec for TypedCodec<K> {
    /// The stored bytes are cached as they are, with the resourceVersion appended, so
    /// an event costs no re-encoding; only kinds with selectable fields of their own
    /// are decoded whole.
    fn index(&self, key: &str, value: &[u8], revision: i64) -> Result<CachedObject, String> {
        let error = |e: prost::DecodeError| format!("decoding {}: {e}", K::INFO.kind);
        let attrs = if self.strategy.field_names().is_empty() {
            slim::attrs(value).map_err(error)?
        } else {
            let object = K::decode(value).map_err(error)?;
            let meta = object.metadata();
            Attrs {
                namespace: meta.namespace.clone(),
                name: meta.name.clone(),
                labels: meta.labels.clone(),
                fields: self.strategy.fields(&object),
            }
        };
        Ok(CachedObject { key: key.to_string(), bytes: with_revision(value, revision), revision, attrs })
    }
}

/// The position of a paged list: the revision it reads at and the next key.
#[derive(Serialize, Deserialize)]
struct ContinueToken {
    rv: i64,
    start: String,
}

impl<K: Resource + Shape> Registry<K> {
    pub fn new(strategy: Arc<dyn Strategy<K>>, ctx: Arc<Context>, cache_capacity: usize) -> Self {
        let codec = Arc::new(TypedCodec { strategy: strategy.clone() });
        let cache = WatchCache::new(K::INFO, ctx.keys.collection(K::INFO, None), codec, cache_capacity);
        Registry { info: K::INFO, strategy, ctx, cache }
    }

    /// A registry whose cache already exists (the namespaces registry shares the
    /// cache that admission reads).
    pub fn with_cache(strategy: Arc<dyn Strategy<K>>, ctx: Arc<Context>, cache: Arc<WatchCache>) -> Self {
        Registry { info: K::INFO, strategy, ctx, cache }
    }

    pub fn cache(&self) -> &Arc<WatchCache> {
        &self.cache
    }

    pub fn codec(strategy: Arc<dyn Strategy<K>>) -> Arc<dyn ObjectCodec> {
        Arc::new(TypedCodec { strategy })
    }

    fn key(&self, namespace: &str, name: &str) -> String {
        self.ctx.keys.object(self.info, namespace, name)
    }

    /// The namespace an object goes in: the request's, else the object's, else
    /// "default"; none for cluster-scoped kinds.
    fn resolve_namespace(&self, request: &str, object: &str) -> Result<String, ApiError> {
        if !self.info.namespaced {
            return Ok(String::new());
        }
        match (request.is_empty(), object.is_empty()) {
            (false, false) if request != object => Err(ApiError::bad_request(format!(
                "the namespace of the object ({object}) does not match the namespace of the request ({request})"
            ))),
            (false, _) => Ok(request.to_string()),
            (true, false) => Ok(object.to_string()),
            (true, true) => Ok("default".to_string()),
        }
    }

    fn decode(&self, bytes: &[u8]) -> Result<K, ApiError> {
        K::decode(bytes).map_err(|e| {
            ApiError::bad_request(format!("the request does not hold a valid {} message: {e}", self.info.kind))
        })
    }

    fn invalid(&self, object: &K, errors: &[FieldError]) -> ApiError {
        ApiError::invalid(self.info, &object.metadata().name, errors)
    }

    fn validate_create(&self, object: &K) -> Result<(), ApiError> {
        let mut errors = meta::validate(object.metadata(), self.info, self.strategy.name_rule());
        errors.extend(self.strategy.validate(object));
        if errors.is_empty() { Ok(()) } else { Err(self.invalid(object, &errors)) }
    }

    /// Checks that `namespace` exists and is not being deleted. Returns the guard that
    /// makes the write fail if the namespace changes before it commits.
    async fn admit(&self, namespace: &str, name: &str, fresh: bool) -> Result<Vec<(String, i64)>, ApiError> {
        if !self.info.namespaced {
            return Ok(Vec::new());
        }
        let key = self.ctx.keys.object(&kind_info::NAMESPACE, "", namespace);
        let (phase, revision) = match self.ctx.namespaces.get(&key).filter(|_| !fresh) {
            Some(cached) => (cached.attrs.field("status.phase").unwrap_or_default(), cached.revision),
            None => match self.ctx.etcd.get(&key).await.map_err(storage_error)? {
                Some(stored) => {
                    let ns = Namespace::decode(stored.value.as_ref())
                        .map_err(|e| ApiError::internal(format!("decoding namespace {namespace}: {e}")))?;
                    let phase = ns.status.map(|s| s.phase).unwrap_or_default();
                    (phase, stored.mod_revision)
                }
                None => return Err(ApiError::not_found(&kind_info::NAMESPACE, namespace)),
            },
        };
        if phase == "Terminating" {
            return Err(ApiError::forbidden(format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                self.info.qualified_plural(),
            )));
        }
        Ok(vec![(key, revision)])
    }

    pub async fn create(&self, namespace: &str, bytes: &[u8], dry_run: bool) -> Result<K, ApiError> {
        self.create_encoded(namespace, bytes, dry_run).await.map(|(object, _)| object)
    }

    /// Creates an object; returns it and its encoding with its resourceVersion set
    /// (what the API answers), encoded once for etcd and never again.
    pub async fn create_encoded(&self, namespace: &str, bytes: &[u8], dry_run: bool) -> Result<(K, Bytes), ApiError> {
        let mut object = self.decode(bytes)?;
        let ns = self.resolve_namespace(namespace, &object.metadata().namespace)?;
        {
            let meta = object.metadata_mut();
            meta.namespace.clone_from(&ns);
            meta.uid = new_uid();
            meta.creation_timestamp = Some(Time::now_seconds());
            meta.resource_version.clear();
            meta.deletion_timestamp = None;
            meta.deletion_grace_period_seconds = None;
            meta.managed_fields.clear();
            meta.self_link.clear();
            meta.generation = i64::from(K::HAS_STATUS);
        }
        self.strategy.prepare_for_create(&mut object);
        self.strategy.default(&mut object);
        let generated = object.metadata().name.is_empty() && !object.metadata().generate_name.is_empty();
        if generated {
            object.metadata_mut().name = generate_name(&object.metadata().generate_name);
        }
        self.validate_create(&object)?;

        let reserving = self.strategy.reserves_on_create();
        let mut fresh_namespace = false;
        for _ in 0..MAX_ATTEMPTS {
            let guards = self.admit(&ns, &object.metadata().name, fresh_namespace).await?;
            // Values reserved by a failed attempt are not the next attempt's: a kind
            // that reserves works on a copy, every other kind on the object itself.
            let mut copy;
            let candidate = if reserving {
                copy = object.clone();
                &mut copy
            } else {
                &mut object
            };
            let reservations = self.strategy.reserve_on_create(candidate)?;
            if dry_run {
                let encoded = candidate.encode_to_vec().into();
                return Ok((std::mem::take(candidate), encoded));
            }
            let value = Bytes::from(candidate.encode_to_vec());
            let mut write = Write::new(self.key(&ns, &candidate.metadata().name), Expect::Absent, Some(value));
            write.guards = guards;
            write.reserve = reservations.reserve;
            write.release = reservations.release;
            match self.commit(&write).await? {
                WriteResult::Committed { revision } => {
                    let mut created = std::mem::take(candidate);
                    created.metadata_mut().resource_version = revision.to_string();
                    let encoded = write.value.as_ref().map(|v| with_revision(v, revision)).unwrap_or_default();
                    return Ok((created, encoded));
                }
                WriteResult::Failed { current: Some(_), .. } if generated => {
                    object.metadata_mut().name = generate_name(&object.metadata().generate_name);
                }
                WriteResult::Failed { current: Some(_), .. } => {
                    return Err(ApiError::already_exists(self.info, &candidate.metadata().name));
                }
                WriteResult::Failed { failed, .. } => {
                    fresh_namespace = failed.iter().any(|k| write.guards.iter().any(|(g, _)| g == k));
                    self.strategy.reservations_taken(&failed);
                }
            }
        }
        Err(too_many_attempts(self.info, &object.metadata().name))
    }

    /// Applies a write and records the reservations it made or released.
    async fn commit(&self, write: &Write) -> Result<WriteResult, ApiError> {
        let result = self.ctx.etcd.write(write).await.map_err(storage_error)?;
        if matches!(result, WriteResult::Committed { .. }) && !(write.reserve.is_empty() && write.release.is_empty()) {
            self.strategy.reservations_committed(&Reservations {
                reserve: write.reserve.clone(),
                release: write.release.clone(),
            });
        }
        Ok(result)
    }

    /// Reads one object from etcd, or from the cache when `cached` and it has it.
    async fn read(&self, namespace: &str, name: &str, cached: bool) -> Result<(K, i64), ApiError> {
        let key = self.key(namespace, name);
        if cached && let Some(object) = self.cache.get(&key) {
            return Ok((self.decode(&object.bytes)?, object.revision));
        }
        let stored = self
            .ctx
            .etcd
            .get(&key)
            .await
            .map_err(storage_error)?
            .ok_or_else(|| ApiError::not_found(self.info, name))?;
        let mut object = self.decode(&stored.value)?;
        object.metadata_mut().resource_version = stored.mod_revision.to_string();
        Ok((object, stored.mod_revision))
    }

    pub async fn get(&self, namespace: &str, name: &str, resource_version: &str) -> Result<Bytes, ApiError> {
        let namespace = self.resolve_namespace(namespace, "")?;
        let key = self.key(&namespace, name);
        if resource_version == "0" {
            return self.cache.get(&key).map(|o| o.bytes.clone()).ok_or_else(|| ApiError::not_found(self.info, name));
        }
        let stored = self
            .ctx
            .etcd
            .get(&key)
            .await
            .map_err(storage_error)?
            .ok_or_else(|| ApiError::not_found(self.info, name))?;
        Ok(with_revision(&stored.value, stored.mod_revision))
    }

    pub fn filter(&self, namespace: Option<&str>, labels: &str, fields: &str) -> Result<Filter, ApiError> {
        let labels = Selector::parse(labels).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = FieldSelector::parse(fields).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let supported = self.strategy.field_names();
        for field in fields.fields() {
            if field != "metadata.name" && field != "metadata.namespace" && !supported.contains(&field) {
                let mut all = vec!["metadata.name", "metadata.namespace"];
                all.extend_from_slice(supported);
                return Err(ApiError::bad_request(format!(
                    "\"{field}\" is not a known field selector for {}: only \"{}\"",
                    self.info.plural,
                    all.join("\", \"")
                )));
            }
        }
        let namespace = namespace.filter(|ns| !ns.is_empty() && self.info.namespaced).map(str::to_string);
        Ok(Filter { namespace, labels, fields })
    }

    pub async fn list(&self, options: &ListOptions<'_>) -> Result<ListPage, ApiError> {
        let filter = self.filter(options.namespace, options.label_selector, options.field_selector)?;
        let prefix = self.ctx.keys.collection(self.info, filter.namespace.as_deref());
        if options.resource_version == "0" && options.continue_token.is_empty() {
            let (items, revision) = self.cache.list(&prefix, &filter);
            return Ok(ListPage {
                items: items.iter().map(|o| o.bytes.clone()).collect(),
                resource_version: revision.to_string(),
                continue_token: String::new(),
                remaining: None,
            });
        }
        let (mut revision, mut start) = if options.continue_token.is_empty() {
            (0, None)
        } else {
            let token = decode_continue(options.continue_token)?;
            if !token.start.starts_with(&prefix) {
                return Err(ApiError::bad_request("the continue token belongs to another list"));
            }
            (token.rv, Some(token.start))
        };
        let limit = usize::try_from(options.limit.max(0)).unwrap_or(0);
        let unfiltered = filter.labels.is_everything() && filter.fields.is_everything();
        // Read in chunks so a selective filter does not mean one huge read.
        let chunk = if limit == 0 { 0 } else { (limit as i64).max(500) };
        let codec = TypedCodec { strategy: self.strategy.clone() };
        let mut items = Vec::new();
        loop {
            let (entries, read_revision, more) =
                self.ctx.etcd.list(&prefix, start.as_deref(), revision, chunk).await.map_err(|e| match e {
                    StorageError::Compacted { .. } => ApiError::expired(
                        "the continue token is too old to give a consistent list; list again without it",
                    ),
                    other => storage_error(other),
                })?;
            revision = read_revision;
            let mut last_taken: Option<String> = None;
            for (key, stored) in &entries {
                if limit > 0 && items.len() == limit {
                    break;
                }
                if unfiltered {
                    items.push(with_revision(&stored.value, stored.mod_revision));
                } else {
                    match codec.index(key, &stored.value, stored.mod_revision) {
                        Ok(object) if filter.matches(&object.attrs) => items.push(object.bytes),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::error!(key, error = %e, "skipping an undecodable object")
                        }
                    }
                }
                last_taken = Some(key.clone());
            }
            let reached_limit = limit > 0 && items.len() == limit;
            let exhausted_chunk = last_taken.as_ref() == entries.last().map(|(k, _)| k);
            if reached_limit && (more || !exhausted_chunk) {
                let next = format!("{}\0", last_taken.unwrap_or_default());
                return Ok(ListPage {
                    items,
                    resource_version: revision.to_string(),
                    continue_token: encode_continue(&ContinueToken { rv: revision, start: next }),
                    remaining: None,
                });
            }
            match (more, entries.last()) {
                (true, Some((last, _))) => start = Some(format!("{last}\0")),
                _ => break,
            }
        }
        Ok(ListPage { items, resource_version: revision.to_string(), continue_token: String::new(), remaining: None })
    }

    pub async fn watch(
        &self,
        namespace: Option<&str>,
        labels: &str,
        fields: &str,
        resource_version: &str,
    ) -> Result<Watcher, ApiError> {
        let filter = self.filter(namespace, labels, fields)?;
        let start = match resource_version {
            // The initial state must be current, so it is read from etcd: the cache
            // cannot prove it has caught up (see the watchcache module).
            "" => {
                let prefix = self.ctx.keys.collection(self.info, filter.namespace.as_deref());
                self.cache.snapshot(&self.ctx.etcd, &prefix).await.map_err(storage_error)?
            }
            "0" => Start::CachedState,
            rv => Start::After(parse_revision(rv)?),
        };
        self.cache.watch(start, filter)
    }

    /// Reads, changes with `mutate`, validates and writes with compare-and-swap,
    /// retrying when the object changed meanwhile (unless the caller named the
    /// revision it read, then it is a Conflict).
    pub async fn guaranteed_update(
        &self,
        namespace: &str,
        name: &str,
        precondition: Option<i64>,
        dry_run: bool,
        subresource: Subresource,
        mutate: impl Fn(&K) -> Result<K, ApiError>,
    ) -> Result<K, ApiError> {
        let mut from_cache = true;
        for _ in 0..MAX_ATTEMPTS {
            let (current, revision) = self.read(namespace, name, from_cache).await?;
            if let Some(expected) = precondition
                && expected != revision
            {
                if from_cache {
                    // The cache may lag; only etcd can say the caller is stale.
                    from_cache = false;
                    continue;
                }
                return Err(ApiError::conflict(
                    self.info,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            let mut new = mutate(&current)?;
            let mut errors = meta::carry_over(new.metadata_mut(), current.metadata());
            {
                let meta = new.metadata_mut();
                meta.name = current.metadata().name.clone();
                meta.namespace = current.metadata().namespace.clone();
            }
            self.strategy.prepare_for_update(&mut new, &current);
            if K::HAS_STATUS && !new.spec_eq(&current) {
                new.metadata_mut().generation = current.metadata().generation + 1;
            }
            self.strategy.default(&mut new);
            errors.extend(meta::validate(new.metadata(), self.info, self.strategy.name_rule()));
            errors.extend(self.strategy.validate(&new));
            errors.extend(match subresource {
                Subresource::Main => self.strategy.validate_update(&new, &current),
                Subresource::Status => self.strategy.validate_status_update(&new, &current),
                // A binding changes exactly what the caller of guaranteed_update
                // decided; the pod spec's update rules do not apply.
                Subresource::Binding => Vec::new(),
            });
            if !errors.is_empty() {
                return Err(self.invalid(&new, &errors));
            }
            let reservations = self.strategy.reserve_on_update(&mut new, &current)?;
            let mut unchanged = current.clone();
            unchanged.metadata_mut().resource_version.clear();
            if new == unchanged && reservations.is_empty() {
                return Ok(current);
            }
            if dry_run {
                return Ok(new);
            }
            let key = self.key(namespace, name);
            let remove = self.removable(&new);
            let mut write = if remove {
                let mut write = Write::new(key, Expect::Revision(revision), None);
                write.release = self.strategy.release_on_delete(&new).release;
                write
            } else {
                let mut write = Write::new(key, Expect::Revision(revision), Some(new.encode_to_vec().into()));
                write.reserve = reservations.reserve;
                write.release = reservations.release;
                write
            };
            write.release.dedup();
            match self.commit(&write).await? {
                WriteResult::Committed { revision } => {
                    new.metadata_mut().resource_version = revision.to_string();
                    return Ok(new);
                }
                WriteResult::Failed { current: None, .. } => {
                    return Err(ApiError::not_found(self.info, name));
                }
                WriteResult::Failed { failed, .. } => {
                    from_cache = false;
                    if !failed.is_empty() {
                        self.strategy.reservations_taken(&failed);
                    } else if precondition.is_some() {
                        return Err(ApiError::conflict(
                            self.info,
                            name,
                            "the object has been modified; please apply your changes to the latest version and try again",
                        ));
                    }
                }
            }
        }
        Err(too_many_attempts(self.info, name))
    }

    /// Whether a deleted object has nothing left holding it.
    fn removable(&self, object: &K) -> bool {
        let meta = object.metadata();
        meta.deletion_timestamp.is_some()
            && meta.deletion_grace_period_seconds.unwrap_or(0) == 0
            && meta.finalizers.is_empty()
            && self.strategy.ready_for_removal(object)
    }

    /// Update (spec and metadata) or, with `status`, UpdateStatus.
    pub async fn update(&self, namespace: &str, bytes: &[u8], dry_run: bool, status: bool) -> Result<K, ApiError> {
        if status && !K::HAS_STATUS {
            return Err(ApiError::new(
                Reason::MethodNotAllowed,
                format!("{} have no status subresource", self.info.plural),
            ));
        }
        let request = self.decode(bytes)?;
        let namespace = self.resolve_namespace(namespace, &request.metadata().namespace)?;
        let name = request.metadata().name.clone();
        if name.is_empty() {
            return Err(ApiError::bad_request("metadata.name is required to update an object"));
        }
        let precondition = match request.metadata().resource_version.as_str() {
            "" => None,
            rv => Some(parse_revision(rv)?),
        };
        let subresource = if status { Subresource::Status } else { Subresource::Main };
        self.guaranteed_update(&namespace, &name, precondition, dry_run, subresource, |current| {
            Ok(merge_request(&request, current, status))
        })
        .await
    }

    pub async fn patch(
        &self,
        namespace: &str,
        name: &str,
        kind: patch::PatchType,
        body: &[u8],
        dry_run: bool,
        status: bool,
    ) -> Result<K, ApiError> {
        if status && !K::HAS_STATUS {
            return Err(ApiError::new(
                Reason::MethodNotAllowed,
                format!("{} have no status subresource", self.info.plural),
            ));
        }
        let namespace = self.resolve_namespace(namespace, "")?;
        let subresource = if status { Subresource::Status } else { Subresource::Main };
        self.guaranteed_update(&namespace, name, None, dry_run, subresource, |current| {
            let patched = patch::apply(kind, proto::codec::encode(current), body).map_err(ApiError::bad_request)?;
            let request: K = proto::codec::decode(&patched).map_err(|e| match e {
                proto::DecodeError::Fields(errors) => self.invalid(current, &errors),
                other => ApiError::bad_request(other.to_string()),
            })?;
            let rv = &request.metadata().resource_version;
            if !rv.is_empty() && *rv != current.metadata().resource_version {
                return Err(ApiError::conflict(
                    self.info,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            Ok(merge_request(&request, current, status))
        })
        .await
    }

    /// Deletes an object: gracefully (pods), by marking it while finalizers hold it,
    /// or at once. Returns the object and whether it is gone.
    pub async fn delete(&self, namespace: &str, name: &str, options: &DeleteOptions) -> Result<(K, bool), ApiError> {
        let namespace = self.resolve_namespace(namespace, "")?;
        let propagation = options.propagation_policy.as_str();
        let propagation_finalizer = match propagation {
            "" | "Background" => None,
            "Foreground" => Some("foregroundDeletion"),
            "Orphan" => Some("orphan"),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unsupported propagationPolicy \"{other}\": use Background, Foreground or Orphan"
                )));
            }
        };
        let dry_run = !options.dry_run.is_empty();
        let preconditions = options.preconditions.clone().unwrap_or_default();
        let precondition_rv = match preconditions.resource_version.as_deref() {
            None | Some("") => None,
            Some(rv) => Some(parse_revision(rv)?),
        };
        for _ in 0..MAX_ATTEMPTS {
            let (current, revision) = self.read(&namespace, name, false).await?;
            if let Some(uid) = preconditions.uid.as_deref().filter(|u| !u.is_empty())
                && uid != current.metadata().uid
            {
                return Err(ApiError::conflict(
                    self.info,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        current.metadata().uid
                    ),
                ));
            }
            if precondition_rv.is_some_and(|rv| rv != revision) {
                return Err(ApiError::conflict(
                    self.info,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            let mut updated = current.clone();
            updated.metadata_mut().resource_version.clear();
            let now = Time::now_seconds();
            if let Some(grace) = self.strategy.grace_period(&current, options) {
                let meta = updated.metadata_mut();
                let deadline = Time { seconds: now.seconds + grace, nanos: 0 };
                // A deletion already under way is only ever shortened.
                let shorter = meta.deletion_timestamp.is_none_or(|t| deadline < t);
                if shorter {
                    meta.deletion_timestamp = Some(deadline);
                    meta.deletion_grace_period_seconds = Some(grace);
                }
                if grace > 0 {
                    if !shorter {
                        return Ok((current, false));
                    }
                    self.strategy.on_deletion_started(&mut updated);
                    return self.write_marked(updated, revision, dry_run).await.map(|o| (o, false));
                }
            }
            let meta = updated.metadata_mut();
            if let Some(finalizer) = propagation_finalizer
                && meta.deletion_timestamp.is_none()
                && !meta.finalizers.iter().any(|f| f == finalizer)
            {
                meta.finalizers.push(finalizer.to_string());
            }
            let held = !meta.finalizers.is_empty();
            if held || !self.strategy.ready_for_removal(&updated) {
                let meta = updated.metadata_mut();
                if meta.deletion_timestamp.is_none() {
                    meta.deletion_timestamp = Some(now);
                    meta.deletion_grace_period_seconds = Some(0);
                    if K::HAS_STATUS {
                        meta.generation += 1;
                    }
                }
                self.strategy.on_deletion_started(&mut updated);
                let mut unchanged = current.clone();
                unchanged.metadata_mut().resource_version.clear();
                if updated == unchanged {
                    return Ok((current, false));
                }
                return self.write_marked(updated, revision, dry_run).await.map(|o| (o, false));
            }
            if dry_run {
                return Ok((current, true));
            }
            let mut write = Write::new(self.key(&namespace, name), Expect::Revision(revision), None);
            write.release = self.strategy.release_on_delete(&current).release;
            match self.commit(&write).await? {
                WriteResult::Committed { revision } => {
                    let mut last = current;
                    last.metadata_mut().resource_version = revision.to_string();
                    return Ok((last, true));
                }
                WriteResult::Failed { current: None, .. } => {
                    return Err(ApiError::not_found(self.info, name));
                }
                WriteResult::Failed { .. } => continue,
            }
        }
        Err(too_many_attempts(self.info, name))
    }

    async fn write_marked(&self, mut object: K, revision: i64, dry_run: bool) -> Result<K, ApiError> {
        if dry_run {
            return Ok(object);
        }
        let meta = object.metadata();
        let key = self.key(&meta.namespace, &meta.name);
        let write = Write::new(key, Expect::Revision(revision), Some(object.encode_to_vec().into()));
        match self.commit(&write).await? {
            WriteResult::Committed { revision } => {
                object.metadata_mut().resource_version = revision.to_string();
                Ok(object)
            }
            WriteResult::Failed { current: None, .. } => Err(ApiError::not_found(self.info, &meta.name)),
            WriteResult::Failed { .. } => Err(ApiError::conflict(
                self.info,
                &meta.name,
                "the object changed while it was being deleted; try again",
            )),
        }
    }
}

/// What an Update or UpdateStatus request changes: everything but the status, or
/// only the status.
fn merge_request<K: Resource + Shape>(request: &K, current: &K, status: bool) -> K {
    if status {
        let mut merged = current.clone();
        merged.copy_status(request);
        merged
    } else {
        let mut merged = request.clone();
        merged.copy_status(current);
        merged
    }
}

fn parse_revision(rv: &str) -> Result<i64, ApiError> {
    rv.parse::<i64>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resourceVersion \"{rv}\": it must be a number")))
}

fn encode_continue(token: &ContinueToken) -> String {
    let json = serde_json::to_vec(token).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn decode_continue(token: &str) -> Result<ContinueToken, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or_else(|| ApiError::bad_request("the continue token is not valid; list again without it"))
}

/// A random (version 4) UID from the thread's generator: `Uuid::new_v4` asks the
/// kernel for every one, a system call per create.
fn new_uid() -> String {
    use rand::RngExt as _;
    uuid::Builder::from_random_bytes(rand::rng().random()).into_uuid().to_string()
}

/// Kubernetes' generateName suffix: five characters from an alphabet without vowels
/// or look-alikes, so no words and no confusion.
fn generate_name(prefix: &str) -> String {
    use rand::RngExt as _;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let suffix: String = (0..5).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    let max_prefix = 63 - 5;
    let prefix = if prefix.len() > max_prefix { &prefix[..max_prefix] } else { prefix };
    format!("{prefix}{suffix}")
}

pub fn storage_error(error: StorageError) -> ApiError {
    match error {
        StorageError::Unavailable(message) => ApiError::unavailable(format!("storage is unavailable: {message}")),
        StorageError::Compacted { requested } => {
            ApiError::expired(format!("resource version {requested} has been compacted; list again"))
        }
        StorageError::Other(message) => ApiError::internal(format!("storage error: {message}")),
    }
}

fn too_many_attempts(info: &KindInfo, name: &str) -> ApiError {
    ApiError::conflict(info, name, "the object kept changing while this request was applied; try again")
}
