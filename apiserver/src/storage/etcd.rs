//! The etcd client side of storage: reads at a revision, conditional writes as single
//! transactions, and failover across the configured endpoints.
//!
//! Every write is one etcd transaction that compares the object's revision (absent for
//! a create, the caller's resourceVersion for an update or delete), plus any guard
//! keys, and applies the object change together with its side effects (reservations of
//! ClusterIPs and NodePorts). Nothing is ever half-written.

use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchStream,
};

use crate::metrics::Metrics;
use crate::storage::keys::prefix_end;

/// How long a call keeps retrying while etcd is unreachable or has no leader.
const RETRY_BUDGET: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("etcd is unavailable: {0}")]
    Unavailable(String),
    #[error("the requested revision {requested} has been compacted in etcd")]
    Compacted { requested: i64 },
    #[error("etcd error: {0}")]
    Other(String),
}

/// A value as stored, with the revision of its last change.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub value: Bytes,
    pub mod_revision: i64,
}

/// What the object's key must hold for a write to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The key does not exist (create).
    Absent,
    /// The key was last changed at this revision (compare-and-swap).
    Revision(i64),
}

/// One conditional write of an object and its side effects.
#[derive(Debug, Clone)]
pub struct Write {
    pub key: String,
    pub expect: Expect,
    /// The new value; `None` deletes the key.
    pub value: Option<Bytes>,
    /// Other keys that must still be at a given revision (0: absent).
    pub guards: Vec<(String, i64)>,
    /// Keys created in the same transaction; each must be absent.
    pub reserve: Vec<(String, Bytes)>,
    /// Keys deleted in the same transaction.
    pub release: Vec<String>,
}

impl Write {
    pub fn new(key: String, expect: Expect, value: Option<Bytes>) -> Self {
        Write { key, expect, value, guards: Vec::new(), reserve: Vec::new(), release: Vec::new() }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum WriteResult {
    Committed {
        revision: i64,
    },
    /// A condition did not hold: `current` is what the object's key holds now, and
    /// `failed` lists the guard and reservation keys whose condition failed.
    Failed {
        current: Option<Stored>,
        failed: Vec<String>,
    },
}

#[derive(Clone)]
pub struct Etcd {
    client: Client,
    metrics: Metrics,
}

impl Etcd {
    pub async fn connect(endpoints: &[String], metrics: Metrics) -> Result<Etcd, StorageError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        let client = Client::connect(endpoints, Some(options)).await.map_err(classify)?;
        Ok(Etcd { client, metrics })
    }

    /// The cluster's current revision (a cheap read of nothing).
    pub async fn current_revision(&self) -> Result<i64, StorageError> {
        let response = self
            .retry("revision", |mut kv| async move { kv.get("\0", Some(GetOptions::new().with_count_only())).await })
            .await?;
        Ok(response.header().map_or(0, |h| h.revision()))
    }

    pub async fn get(&self, key: &str) -> Result<Option<Stored>, StorageError> {
        let response = self
            .retry("get", |mut kv| {
                let key = key.to_string();
                async move { kv.get(key, None).await }
            })
            .await?;
        Ok(response
            .kvs()
            .first()
            .map(|kv| Stored { value: Bytes::copy_from_slice(kv.value()), mod_revision: kv.mod_revision() }))
    }

    /// Keys under `prefix` from `start` (inclusive; default the prefix itself), at
    /// `revision` (0: the latest), at most `limit` (0: all). Returns the entries, the
    /// revision read, and whether more entries follow.
    pub async fn list(
        &self,
        prefix: &str,
        start: Option<&str>,
        revision: i64,
        limit: i64,
    ) -> Result<(Vec<(String, Stored)>, i64, bool), StorageError> {
        let start = start.unwrap_or(prefix).to_string();
        let end = prefix_end(prefix);
        let response = self
            .retry("list", |mut kv| {
                let (start, end) = (start.clone(), end.clone());
                async move {
                    let options = GetOptions::new().with_range(end).with_revision(revision).with_limit(limit);
                    kv.get(start, Some(options)).await
                }
            })
            .await
            .map_err(|e| match e {
                StorageError::Other(msg) if msg.contains("compacted") => {
                    StorageError::Compacted { requested: revision }
                }
                other => other,
            })?;
        let header_revision = response.header().map_or(0, |h| h.revision());
        let read_revision = if revision > 0 { revision } else { header_revision };
        let more = response.more();
        let entries = response
            .kvs()
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                (key, Stored { value: Bytes::copy_from_slice(kv.value()), mod_revision: kv.mod_revision() })
            })
            .collect();
        Ok((entries, read_revision, more))
    }

    /// Applies `write` atomically if its conditions hold.
    pub async fn write(&self, write: &Write) -> Result<WriteResult, StorageError> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(50);
        let response = loop {
            let mut kv = self.client.kv_client();
            // Built afresh for each attempt rather than cloned for it: etcd-client takes
            // the transaction by value, and most writes are sent once.
            match kv.txn(transaction(write)).await {
                Ok(response) => break response,
                Err(e) => {
                    let error = classify(e);
                    if !matches!(error, StorageError::Unavailable(_)) || started.elapsed() >= RETRY_BUDGET {
                        self.metrics.etcd_request("txn", started.elapsed());
                        return Err(error);
                    }
                    // The transaction may have been applied before the connection
                    // broke. If the key already holds exactly what we wrote, it was.
                    if let Some(result) = self.already_applied(write).await {
                        self.metrics.etcd_request("txn", started.elapsed());
                        return Ok(result);
                    }
                    tracing::warn!(error = %error, key = %write.key, "etcd transaction failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        };
        self.metrics.etcd_request("txn", started.elapsed());
        if response.succeeded() {
            return Ok(WriteResult::Committed { revision: response.header().map_or(0, |h| h.revision()) });
        }
        let responses = response.op_responses();
        let current = responses.first().and_then(first_kv);
        let mut failed = Vec::new();
        let guard_responses = responses.iter().skip(1);
        for ((key, revision), response) in write.guards.iter().zip(guard_responses.clone()) {
            let now = first_kv(response).map_or(0, |s| s.mod_revision);
            if now != *revision {
                failed.push(key.clone());
            }
        }
        for ((key, _), response) in write.reserve.iter().zip(guard_responses.skip(write.guards.len())) {
            if first_kv(response).is_some() {
                failed.push(key.clone());
            }
        }
        Ok(WriteResult::Failed { current, failed })
    }

    async fn already_applied(&self, write: &Write) -> Option<WriteResult> {
        let current = self.get(&write.key).await.ok()?;
        match (&write.value, current) {
            (Some(value), Some(stored)) if stored.value == *value => {
                Some(WriteResult::Committed { revision: stored.mod_revision })
            }
            _ => None,
        }
    }

    /// Watches every key under `prefix` from `start_revision` (inclusive), with
    /// progress notifications so an idle resource still learns the current revision.
    pub async fn watch(&self, prefix: &str, start_revision: i64) -> Result<WatchStream, StorageError> {
        let options = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_start_revision(start_revision)
            .with_progress_notify();
        let mut watch = self.client.watch_client();
        watch.watch(prefix, Some(options)).await.map_err(classify)
    }

    /// Runs a read with retries while etcd is unavailable.
    async fn retry<T, F, Fut>(&self, operation: &'static str, call: F) -> Result<T, StorageError>
    where
        F: Fn(etcd_client::KvClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(50);
        loop {
            match call(self.client.kv_client()).await {
                Ok(value) => {
                    self.metrics.etcd_request(operation, started.elapsed());
                    return Ok(value);
                }
                Err(e) => {
                    let error = classify(e);
                    if !matches!(error, StorageError::Unavailable(_)) || started.elapsed() >= RETRY_BUDGET {
                        self.metrics.etcd_request(operation, started.elapsed());
                        return Err(error);
                    }
                    tracing::warn!(error = %error, operation, "etcd call failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

/// The etcd transaction of a write: its conditions, the write and its side effects if
/// they hold, and otherwise a read of everything compared, so the caller learns which
/// condition failed without another round trip.
fn transaction(write: &Write) -> Txn {
    let mut compares = Vec::with_capacity(1 + write.guards.len() + write.reserve.len());
    compares.push(match write.expect {
        Expect::Absent => Compare::create_revision(write.key.as_str(), CompareOp::Equal, 0),
        Expect::Revision(r) => Compare::mod_revision(write.key.as_str(), CompareOp::Equal, r),
    });
    for (key, revision) in &write.guards {
        compares.push(Compare::mod_revision(key.as_str(), CompareOp::Equal, *revision));
    }
    for (key, _) in &write.reserve {
        compares.push(Compare::create_revision(key.as_str(), CompareOp::Equal, 0));
    }
    let mut on_success = Vec::with_capacity(1 + write.reserve.len() + write.release.len());
    on_success.push(match &write.value {
        Some(value) => TxnOp::put(write.key.as_str(), value.to_vec(), None),
        None => TxnOp::delete(write.key.as_str(), None),
    });
    for (key, value) in &write.reserve {
        on_success.push(TxnOp::put(key.as_str(), value.to_vec(), None));
    }
    for key in &write.release {
        on_success.push(TxnOp::delete(key.as_str(), None));
    }
    let mut on_failure = Vec::with_capacity(1 + write.guards.len() + write.reserve.len());
    on_failure.push(TxnOp::get(write.key.as_str(), None));
    on_failure.extend(write.guards.iter().map(|(k, _)| TxnOp::get(k.as_str(), None)));
    on_failure.extend(write.reserve.iter().map(|(k, _)| TxnOp::get(k.as_str(), None)));
    Txn::new().when(compares).and_then(on_success).or_else(on_failure)
}

fn first_kv(response: &TxnOpResponse) -> Option<Stored> {
    match response {
        TxnOpResponse::Get(get) => get
            .kvs()
            .first()
            .map(|kv| Stored { value: Bytes::copy_from_slice(kv.value()), mod_revision: kv.mod_revision() }),
        _ => None,
    }
}

/// Sorts etcd errors into those worth retrying (the cluster or connection is down)
/// and the rest.
pub fn classify(error: etcd_client::Error) -> StorageError {
    use etcd_client::Error;
    match error {
        Error::GRpcStatus(status) => {
            let message = status.message().to_string();
            match status.code() {
                tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Cancelled
                | tonic::Code::Unknown
                    if !message.contains("compacted") =>
                {
                    StorageError::Unavailable(message)
                }
                _ if message.contains("no leader") || message.contains("leader changed") => {
                    StorageError::Unavailable(message)
                }
                _ => StorageError::Other(message),
            }
        }
        Error::TransportError(e) => StorageError::Unavailable(e.to_string()),
        Error::IoError(e) => StorageError::Unavailable(e.to_string()),
        Error::WatchError(e) => StorageError::Unavailable(e),
        other => StorageError::Other(other.to_string()),
    }
}
