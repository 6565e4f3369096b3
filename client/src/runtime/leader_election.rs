//! Leader election on a coordination.k8s.io/v1 Lease, as client-go does it: the
//! holder renews the Lease every retry period with compare-and-swap writes; a
//! candidate takes it once the holder has not renewed for the lease duration (as
//! measured on the candidate's own clock, so clock skew between hosts does not
//! matter); a leader that cannot renew within the renew deadline, or finds the
//! Lease held by someone else, stops leading at once; a leader that shuts down
//! releases the Lease so a standby takes over without waiting.

use std::future::Future;
use std::time::{Duration, Instant};

use proto::coordination::v1::{Lease, LeaseSpec};
use proto::meta::v1::{MicroTime, ObjectMeta};
use proto::{ApiError, Reason, Resource as _};
use tokio::sync::watch;

use crate::{Api, Client, Fence};

#[derive(Debug, Clone)]
pub struct LeaderElectionConfig {
    /// The Lease's namespace and name ("kube-system", "kube-controller-manager").
    pub namespace: String,
    pub name: String,
    /// This candidate, unique among candidates (host name plus a random suffix).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leading.
    pub renew_deadline: Duration,
    /// How often candidates try to acquire and the leader renews.
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// Kubernetes' defaults: 15 s lease, 10 s renew deadline, 2 s retry period.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        LeaderElectionConfig {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// A configuration that cannot fence a leader.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "the renew deadline ({renew_deadline:?}) must be shorter than the lease duration ({lease_duration:?}), or a standby could take over while the old leader still acts"
    )]
    RenewDeadlineNotShorterThanLease { renew_deadline: Duration, lease_duration: Duration },
    #[error(
        "the retry period ({retry_period:?}) must be shorter than the renew deadline ({renew_deadline:?}), or the leader gives up before its first renewal"
    )]
    RetryPeriodNotShorterThanDeadline { retry_period: Duration, renew_deadline: Duration },
    #[error("the lease {field} is empty; give the Lease's namespace, its name and a unique identity")]
    Empty { field: &'static str },
}

impl LeaderElectionConfig {
    /// Checks the timing relations fencing depends on (renew deadline < lease
    /// duration, retry period < renew deadline) and that names are given.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [("namespace", &self.namespace), ("name", &self.name), ("identity", &self.identity)] {
            if value.is_empty() {
                return Err(ConfigError::Empty { field });
            }
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(ConfigError::RenewDeadlineNotShorterThanLease {
                renew_deadline: self.renew_deadline,
                lease_duration: self.lease_duration,
            });
        }
        if self.retry_period >= self.renew_deadline {
            return Err(ConfigError::RetryPeriodNotShorterThanDeadline {
                retry_period: self.retry_period,
                renew_deadline: self.renew_deadline,
            });
        }
        Ok(())
    }
}

/// Handed to the work a leader does: `lost()` resolves the moment leadership ends,
/// for tasks the work spawned and must stop.
#[derive(Debug, Clone)]
pub struct Leadership {
    leading: watch::Receiver<bool>,
}

impl Leadership {
    pub fn is_leading(&self) -> bool {
        *self.leading.borrow()
    }

    pub async fn lost(&mut self) {
        let _ = self.leading.wait_for(|leading| !*leading).await;
    }
}

pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    /// The Lease as last seen, and when (on our clock) it last changed.
    observed: Option<(Lease, Instant)>,
    /// When the write that won the Lease was sent.
    acquired_at: Instant,
    /// Open until the renew deadline of the last renewal while leading.
    fence: Fence,
}

impl LeaderElector {
    /// A candidate; nothing happens until `run`. Check `config.validate()` first:
    /// an invalid configuration is only logged here.
    pub fn new(client: &Client, config: LeaderElectionConfig) -> Self {
        if let Err(e) = config.validate() {
            tracing::error!(lease = %config.name, error = %e, "leader election is misconfigured");
        }
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
            acquired_at: Instant::now(),
            fence: Fence::closed(),
        }
    }

    /// The fence this elector keeps open only while it leads, and then no longer
    /// than the renew deadline of its last renewal: give the leader's work a client
    /// made with `Client::fenced(fence)` so that a leader woken from a pause cannot
    /// write before it notices it lost the Lease. (The elector itself writes the
    /// Lease through the unfenced client it was given.)
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// Campaigns until `shutdown` resolves: whenever this candidate leads, runs
    /// `work` and drops it the moment leadership is lost; then campaigns again. On
    /// shutdown while leading, the work is dropped and the Lease released.
    pub async fn run<W, F>(mut self, shutdown: impl Future<Output = ()>, mut work: W)
    where
        W: FnMut(Leadership) -> F,
        F: Future<Output = ()>,
    {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = self.acquire() => {}
                _ = &mut shutdown => return,
            }
            tracing::info!(lease = %self.config.name, identity = %self.config.identity, "became the leader");
            let (leading_tx, leading_rx) = watch::channel(true);
            let job = work(Leadership { leading: leading_rx });
            tokio::pin!(job);
            let stop = tokio::select! {
                _ = self.keep_renewing() => false,
                _ = &mut job => {
                    // The work ended by itself: keep the lease until shutdown so no
                    // other candidate starts the same work twice.
                    tokio::select! {
                        _ = self.keep_renewing() => false,
                        _ = &mut shutdown => true,
                    }
                }
                _ = &mut shutdown => true,
            };
            self.fence.close();
            leading_tx.send_replace(false);
            if stop {
                self.release().await;
                return;
            }
            tracing::warn!(lease = %self.config.name, identity = %self.config.identity, "lost the lease; stopped leading");
        }
    }

    /// Retries until this candidate holds the Lease.
    async fn acquire(&mut self) {
        loop {
            let sent = Instant::now();
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    self.acquired_at = sent;
                    self.fence.open_until(sent + self.config.renew_deadline);
                    return;
                }
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "acquiring the lease failed"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews every retry period; returns when leadership is lost: renewals failed
    /// for the renew deadline, or someone else holds the Lease.
    async fn keep_renewing(&mut self) {
        // When the last successful renewal was *sent*: the write committed after
        // that, so no standby can count the lease as expired before
        // `last_renewal + lease_duration`, and we stop at `last_renewal + renew_deadline`.
        let mut last_renewal = self.acquired_at;
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let remaining = self.config.renew_deadline.saturating_sub(last_renewal.elapsed());
            if remaining.is_zero() {
                return;
            }
            let sent = Instant::now();
            match tokio::time::timeout(remaining, self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => {
                    last_renewal = sent;
                    self.fence.open_until(sent + self.config.renew_deadline);
                }
                Ok(Ok(false)) => return,
                Ok(Err(e)) => tracing::warn!(error = %e, "renewing the lease failed"),
                Err(_) => tracing::warn!("renewing the lease timed out"),
            }
            if last_renewal.elapsed() >= self.config.renew_deadline {
                return;
            }
        }
    }

    /// One attempt: Ok(true) if this candidate holds the Lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, ApiError> {
        let now = MicroTime::now();
        let duration = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(current) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: Some(ObjectMeta {
                    name: self.config.name.clone(),
                    namespace: self.config.namespace.clone(),
                    ..Default::default()
                }),
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(now),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&lease).await {
                Ok(created) => {
                    self.observe(created);
                    Ok(true)
                }
                Err(e) if e.is(Reason::AlreadyExists) => Ok(false),
                Err(e) => Err(e),
            };
        };
        self.observe(current.clone());
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.config.identity;
        if !ours && !holder.is_empty() && !self.observed_expired(&spec) {
            return Ok(false);
        }
        let mut lease = current.clone();
        let new_spec = lease.spec.get_or_insert_with(Default::default);
        if !ours {
            new_spec.holder_identity = Some(self.config.identity.clone());
            new_spec.acquire_time = Some(now);
            new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        new_spec.lease_duration_seconds = Some(duration);
        new_spec.renew_time = Some(now);
        // The resourceVersion we read makes this a compare-and-swap: if anyone
        // wrote the Lease since, we lose this round.
        match self.api.update(&lease).await {
            Ok(updated) => {
                self.observe(updated);
                Ok(true)
            }
            Err(e) if e.is(Reason::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn observe(&mut self, lease: Lease) {
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|(seen, _)| seen.metadata().resource_version != lease.metadata().resource_version);
        if changed {
            self.observed = Some((lease, Instant::now()));
        }
    }

    /// The holder has not renewed for its lease duration, by our clock.
    fn observed_expired(&self, spec: &LeaseSpec) -> bool {
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0).unsigned_abs().into());
        self.observed.as_ref().is_none_or(|(_, at)| at.elapsed() >= duration)
    }

    /// Gives the Lease up if this candidate still holds it.
    async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else { return };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = Some(String::new());
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime::now());
        match self.api.update(&lease).await {
            Ok(_) => tracing::info!(lease = %self.config.name, "released the lease"),
            Err(e) => tracing::warn!(error = %e, "releasing the lease failed; a standby takes over when it expires"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_that_cannot_fence_are_refused() {
        let good = LeaderElectionConfig::new("kube-system", "scheduler", "host-1");
        assert_eq!(good.validate(), Ok(()));
        let long_deadline = LeaderElectionConfig { renew_deadline: Duration::from_secs(15), ..good.clone() };
        assert!(matches!(long_deadline.validate(), Err(ConfigError::RenewDeadlineNotShorterThanLease { .. })));
        let slow_retry = LeaderElectionConfig { retry_period: Duration::from_secs(10), ..good.clone() };
        assert!(matches!(slow_retry.validate(), Err(ConfigError::RetryPeriodNotShorterThanDeadline { .. })));
        let anonymous = LeaderElectionConfig { identity: String::new(), ..good };
        assert_eq!(anonymous.validate(), Err(ConfigError::Empty { field: "identity" }));
    }
}
