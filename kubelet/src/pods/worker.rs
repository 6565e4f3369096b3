//! One pod's worker: it drives the pod's sandbox and containers towards its spec
//! (init containers in order, then the app containers, restarted by restartPolicy with
//! a back-off that survives a kubelet restart), runs its probes, posts its status, and
//! on deletion stops it within its grace period, removes what it left and lets the
//! apiserver remove the object.
//! Level-triggered: every sync reads the runtime's state afresh, so a restarted kubelet
//! picks a running pod up where it was.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::runtime::Informer;
use client::{Api, Client};
use proto::Reason;
use proto::core::v1::{Container, Pod, PodStatus, Secret, Service};
use proto::meta::v1::{DeleteOptions, Preconditions, Time};
use tokio::sync::mpsc;

use super::backoff::{self, Decision, RestartBackoff};
use super::probes::Prober;
use super::spec;
use super::status::{self, ContainerView};
use crate::config::Settings;
use crate::images::{ImageStore, PullPolicy, RegistryAuth};
use crate::network::PodNetwork;
use crate::runtime::{ContainerConfig, ContainerInfo, ContainerState, ImageSpec, Runtime, Sandbox, SandboxConfig};
use crate::volumes::{HostVolume, Volumes};

const RESYNC: Duration = Duration::from_secs(1);
const VOLUME_REFRESH: Duration = Duration::from_secs(30);

/// What every worker shares.
pub struct Context {
    pub client: Client,
    /// Every Service, for the environment variables of the containers started (as
    /// Kubernetes' service lister: no apiserver round trip per container start).
    pub services: Arc<Informer<Service>>,
    pub runtime: Arc<dyn Runtime>,
    pub network: Arc<PodNetwork>,
    pub volumes: Volumes,
    pub images: ImageStore,
    pub settings: Settings,
    pub node_ip: Ipv4Addr,
}

pub enum Message {
    Update(Arc<Pod>),
    /// The pod is no longer bound here (deleted without grace, or gone from the API).
    Gone,
    /// Something changed in the runtime (a container exited): sync now.
    Poke,
}

struct PullBackoff {
    until: Instant,
    delay: Duration,
    message: String,
}

pub struct Worker {
    ctx: Arc<Context>,
    pod: Arc<Pod>,
    uid: String,
    prober: Prober,
    pokes: mpsc::UnboundedReceiver<()>,
    /// Persisted under the pod's state directory: it outlives a kubelet restart.
    restart_backoff: RestartBackoff,
    pull_backoff: HashMap<String, PullBackoff>,
    waiting: HashMap<String, (String, String)>,
    pod_ip: Option<Ipv4Addr>,
    volumes: Option<(HashMap<String, HostVolume>, Instant)>,
    last_posted: Option<PodStatus>,
    start_time: Time,
    /// The pod reached Succeeded or Failed and its resources were released.
    finished: bool,
    message: Option<(String, String)>,
}

enum Step {
    Continue,
    Done,
}

fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl Worker {
    pub fn new(ctx: Arc<Context>, pod: Arc<Pod>) -> Self {
        let (poke, pokes) = mpsc::unbounded_channel();
        let uid = pod.metadata.as_ref().map(|m| m.uid.clone()).unwrap_or_default();
        // A pod that already finished never runs again (not even after a kubelet restart).
        let finished = pod.status.as_ref().is_some_and(|s| matches!(s.phase.as_str(), "Succeeded" | "Failed"));
        let restart_backoff = RestartBackoff::load(&ctx.settings.root_dir.join("pods").join(&uid));
        Worker {
            ctx,
            pod,
            uid,
            prober: Prober::new(poke),
            pokes,
            restart_backoff,
            pull_backoff: HashMap::new(),
            waiting: HashMap::new(),
            pod_ip: None,
            volumes: None,
            last_posted: None,
            start_time: Time::now_seconds(),
            finished,
            message: None,
        }
    }

    fn name(&self) -> String {
        let meta = self.pod.metadata.clone().unwrap_or_default();
        format!("{}/{}", meta.namespace, meta.name)
    }

    pub async fn run(mut self, mut messages: mpsc::UnboundedReceiver<Message>) {
        let mut gone = false;
        loop {
            // Boxed: a sync's future is ~13 KB, held only while it runs rather than for
            // the pod's life inside this loop's (measured by bench pod-startup).
            let step = if gone { Box::pin(self.stop_and_remove(false)).await } else { Box::pin(self.sync()).await };
            match step {
                Ok(Step::Done) => return,
                Ok(Step::Continue) => {}
                Err(e) => tracing::warn!(pod = %self.name(), error = %e, "pod sync failed; retrying"),
            }
            tokio::select! {
                message = messages.recv() => match message {
                    Some(Message::Update(pod)) => self.pod = pod,
                    Some(Message::Gone) => gone = true,
                    Some(Message::Poke) => {}
                    // The manager is gone (the kubelet is stopping): leave the pod running.
                    None => return,
                },
                _ = self.pokes.recv() => {}
                _ = tokio::time::sleep(RESYNC) => {}
            }
            while let Ok(message) = messages.try_recv() {
                match message {
                    Message::Update(pod) => self.pod = pod,
                    Message::Gone => gone = true,
                    Message::Poke => {}
                }
            }
        }
    }

    fn spec(&self) -> proto::core::v1::PodSpec {
        self.pod.spec.clone().unwrap_or_default()
    }

    async fn sync(&mut self) -> anyhow::Result<Step> {
        let meta = self.pod.metadata.clone().unwrap_or_default();
        if meta.deletion_timestamp.is_some() {
            return self.stop_and_remove(true).await;
        }
        if self.finished {
            return Ok(Step::Continue);
        }
        let spec = self.spec();
        if let Some(limit) = spec.active_deadline_seconds
            && now_unix() - self.started_at() >= limit
        {
            return self.exceed_deadline(&spec).await;
        }
        let sandbox = match self.ensure_sandbox(&spec).await {
            Ok(s) => s,
            Err(e) => {
                self.message = Some(("SandboxError".into(), e.to_string()));
                self.post_status(&spec, &[], "Pending", false).await;
                return Err(e);
            }
        };
        let volumes = match self.ensure_volumes().await {
            Ok(v) => v,
            Err(e) => {
                self.message = Some(("FailedMount".into(), e.to_string()));
                self.post_status(&spec, &[], "Pending", false).await;
                return Err(anyhow::anyhow!(e));
            }
        };
        self.message = None;
        let etc = self.write_etc_files()?;
        let infos = self.ctx.runtime.containers(&self.uid).await;
        let latest = |name: &str| infos.iter().rfind(|i| i.name == name).cloned();
        let policy = if spec.restart_policy.is_empty() { "Always".to_string() } else { spec.restart_policy.clone() };

        // Init containers, one at a time, unless the app containers have already run.
        let app_started = spec.containers.iter().any(|c| latest(&c.name).is_some());
        let mut initialized = app_started;
        let mut failed = false;
        if !app_started {
            initialized = true;
            for container in &spec.init_containers {
                match latest(&container.name) {
                    None => {
                        self.start(container, 0, &sandbox, &volumes, &etc).await;
                        initialized = false;
                        break;
                    }
                    Some(info) => match &info.state {
                        ContainerState::Running { .. } => {
                            initialized = false;
                            break;
                        }
                        ContainerState::Exited { exit_code: 0, .. } => continue,
                        ContainerState::Exited { .. } => {
                            initialized = false;
                            if policy == "Never" {
                                failed = true;
                            } else {
                                self.restart(container, &info, &sandbox, &volumes, &etc).await;
                            }
                            break;
                        }
                    },
                }
            }
        }
        if initialized {
            for container in &spec.containers {
                match latest(&container.name) {
                    None => self.start(container, 0, &sandbox, &volumes, &etc).await,
                    Some(info) => match &info.state {
                        ContainerState::Running { .. } => {
                            self.waiting.remove(&container.name);
                            // Probes of a container adopted after a kubelet restart start here.
                            let ip = self.pod_ip.unwrap_or(self.ctx.node_ip);
                            self.prober.start(&info.id, container, ip, self.ctx.runtime.clone());
                            let probe = self.prober.state(&info.id);
                            if let Some(why) = probe.failed {
                                tracing::info!(pod = %self.name(), container = %container.name, why, "restarting the container");
                                self.prober.stop(&info.id);
                                let grace = container
                                    .liveness_probe
                                    .as_ref()
                                    .and_then(|p| p.termination_grace_period_seconds)
                                    .or(spec.termination_grace_period_seconds)
                                    .unwrap_or(30);
                                self.stop_container(container, &info.id, Duration::from_secs(grace.max(0) as u64))
                                    .await;
                            }
                        }
                        ContainerState::Exited { exit_code, .. } => {
                            self.prober.stop(&info.id);
                            let restart = match policy.as_str() {
                                "Never" => false,
                                "OnFailure" => *exit_code != 0,
                                _ => true,
                            };
                            if restart {
                                self.restart(container, &info, &sandbox, &volumes, &etc).await;
                            } else {
                                self.waiting.remove(&container.name);
                            }
                        }
                    },
                }
            }
        }
        self.prune(&spec).await;

        let infos = self.ctx.runtime.containers(&self.uid).await;
        let phase = self.phase(&spec, &infos, initialized, failed, &policy);
        self.post_status(&spec, &infos, phase, initialized).await;
        if matches!(phase, "Succeeded" | "Failed") {
            // Nothing will run again: release the sandbox, address and volumes now.
            self.release(&spec).await?;
            self.finished = true;
        }
        Ok(Step::Continue)
    }

    /// When the pod started on this node (status.startTime, which outlives a kubelet
    /// restart; this worker's own start until the first status is posted).
    fn started_at(&self) -> i64 {
        self.pod.status.as_ref().and_then(|s| s.start_time).unwrap_or(self.start_time).seconds
    }

    /// activeDeadlineSeconds has passed: stop every container within the grace period
    /// and fail the pod, as Kubernetes does (reason DeadlineExceeded). It is not deleted.
    async fn exceed_deadline(&mut self, spec: &proto::core::v1::PodSpec) -> anyhow::Result<Step> {
        tracing::info!(pod = %self.name(), "the pod passed its activeDeadlineSeconds; stopping it");
        self.stop_all(spec, self.grace(spec)).await;
        let infos = self.ctx.runtime.containers(&self.uid).await;
        self.message =
            Some(("DeadlineExceeded".into(), "Pod was active on the node longer than the specified deadline".into()));
        let initialized =
            spec.init_containers.is_empty() || spec.containers.iter().any(|c| infos.iter().any(|i| i.name == c.name));
        self.post_status(spec, &infos, "Failed", initialized).await;
        self.release(spec).await?;
        self.finished = true;
        Ok(Step::Continue)
    }

    fn phase(
        &self,
        spec: &proto::core::v1::PodSpec,
        infos: &[ContainerInfo],
        initialized: bool,
        failed: bool,
        policy: &str,
    ) -> &'static str {
        if failed {
            return "Failed";
        }
        if !initialized {
            return "Pending";
        }
        let latest: Vec<Option<&ContainerInfo>> =
            spec.containers.iter().map(|c| infos.iter().rfind(|i| i.name == c.name)).collect();
        if latest.iter().any(|l| l.is_none()) {
            return "Pending";
        }
        let exits: Vec<Option<i32>> = latest
            .iter()
            .map(|l| match l.map(|i| &i.state) {
                Some(ContainerState::Exited { exit_code, .. }) => Some(*exit_code),
                _ => None,
            })
            .collect();
        if exits.iter().any(|e| e.is_none()) {
            return "Running";
        }
        // Everything has exited: terminal unless something will be restarted.
        match policy {
            "Always" => "Running",
            "OnFailure" if exits.iter().any(|e| *e != Some(0)) => "Running",
            _ if exits.iter().all(|e| *e == Some(0)) => "Succeeded",
            _ => "Failed",
        }
    }

    async fn ensure_sandbox(&mut self, spec: &proto::core::v1::PodSpec) -> anyhow::Result<Sandbox> {
        if let Some(sandbox) = self.ctx.runtime.sandbox(&self.uid).await {
            if self.pod_ip.is_none() {
                self.pod_ip = Some(if spec.host_network {
                    self.ctx.node_ip
                } else {
                    self.ctx.network.attach(&self.uid, sandbox.pid).await?
                });
            }
            return Ok(sandbox);
        }
        // No sandbox, or a dead one: whatever ran in it is gone too.
        if !self.ctx.runtime.containers(&self.uid).await.is_empty() {
            tracing::warn!(pod = %self.name(), "the pod sandbox died; starting it again");
            self.prober.stop_all();
            self.ctx.runtime.remove_sandbox(&self.uid).await?;
            let _ = self.ctx.network.detach(&self.uid).await;
        }
        let meta = self.pod.metadata.clone().unwrap_or_default();
        let hostname = if spec.hostname.is_empty() { meta.name.clone() } else { spec.hostname.clone() };
        let config = SandboxConfig {
            pod_uid: self.uid.clone(),
            hostname,
            host_network: spec.host_network,
            host_ipc: spec.host_ipc,
            share_pid: spec.share_process_namespace == Some(true),
            limits: spec::pod_limits(&self.pod, self.ctx.settings.pod_max_pids),
        };
        let sandbox = self.ctx.runtime.run_sandbox(&config).await?;
        let ip =
            if spec.host_network { self.ctx.node_ip } else { self.ctx.network.attach(&self.uid, sandbox.pid).await? };
        self.pod_ip = Some(ip);
        tracing::info!(pod = %self.name(), %ip, "started the pod sandbox");
        Ok(sandbox)
    }

    async fn ensure_volumes(&mut self) -> Result<HashMap<String, HostVolume>, crate::volumes::VolumeError> {
        if let Some((volumes, at)) = &self.volumes
            && at.elapsed() < VOLUME_REFRESH
        {
            return Ok(volumes.clone());
        }
        let volumes = self.ctx.volumes.setup(&self.pod).await?;
        self.volumes = Some((volumes.clone(), Instant::now()));
        Ok(volumes)
    }

    fn pod_dir(&self) -> PathBuf {
        self.ctx.settings.root_dir.join("pods").join(&self.uid)
    }

    /// Writes the pod's etc files (those that changed); returns the directory holding them.
    fn write_etc_files(&self) -> anyhow::Result<PathBuf> {
        let dir = self.pod_dir();
        std::fs::create_dir_all(&dir)?;
        let s = &self.ctx.settings;
        let spec = self.spec();
        let hostname = if spec.host_network {
            nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
        } else if spec.hostname.is_empty() {
            self.pod.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default()
        } else {
            spec.hostname.clone()
        };
        let files = [
            spec::hosts_file(&self.pod, self.pod_ip, &s.cluster_domain),
            spec::resolv_conf(&self.pod, s.cluster_dns, &s.cluster_domain),
            format!("{hostname}\n"),
        ];
        for (name, text) in spec::ETC_FILES.into_iter().zip(files) {
            let path = spec::etc_file(&dir, name);
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                std::fs::write(&path, text)?;
            }
        }
        Ok(dir)
    }

    async fn pull_auth(&self) -> Vec<RegistryAuth> {
        let meta = self.pod.metadata.clone().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(&self.ctx.client, &meta.namespace);
        let mut auths = Vec::new();
        for reference in &self.spec().image_pull_secrets {
            let Ok(Some(secret)) = secrets.get_opt(&reference.name).await else { continue };
            let Some(raw) = secret.data.get(".dockerconfigjson").or_else(|| secret.data.get(".dockercfg")) else {
                continue;
            };
            let Ok(json) = serde_json::from_slice::<serde_json::Value>(raw) else { continue };
            let entries = json.get("auths").unwrap_or(&json);
            let Some(map) = entries.as_object() else { continue };
            for (registry, entry) in map {
                let text = |k: &str| entry.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
                let (mut username, mut password) = (text("username"), text("password"));
                if username.is_empty() {
                    use base64::Engine as _;
                    if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(text("auth"))
                        && let Some((u, p)) = String::from_utf8_lossy(&decoded).split_once(':')
                    {
                        (username, password) = (u.to_string(), p.to_string());
                    }
                }
                auths.push(RegistryAuth { registry: registry.clone(), username, password });
            }
        }
        auths
    }

    /// The container's image, or None with the reason set in its waiting state.
    async fn image(&mut self, container: &Container) -> Option<ImageSpec> {
        let name = container.name.clone();
        if let Some(b) = self.pull_backoff.get(&name)
            && Instant::now() < b.until
        {
            let message = format!("Back-off pulling image \"{}\": {}", container.image, b.message);
            self.waiting.insert(name, ("ImagePullBackOff".into(), message));
            return None;
        }
        let policy = match PullPolicy::from_spec(&container.image_pull_policy, &container.image) {
            Ok(p) => p,
            Err(e) => {
                self.waiting.insert(name, ("InvalidImageName".into(), e));
                return None;
            }
        };
        let auth = self.pull_auth().await;
        match self.ctx.images.ensure(&container.image, policy, &auth).await {
            Ok(image) => {
                self.pull_backoff.remove(&name);
                Some(ImageSpec {
                    reference: image.reference.clone(),
                    id: image.repo_digest(),
                    layers: image.layers.clone(),
                    entrypoint: image.config.entrypoint.clone(),
                    cmd: image.config.cmd.clone(),
                    env: image.config.env.clone(),
                    working_dir: image.config.working_dir.clone(),
                    user: image.config.user.clone(),
                })
            }
            Err(e) => {
                let reason = match &e {
                    crate::images::ImageError::NeverPull { .. } => "ErrImageNeverPull",
                    crate::images::ImageError::Invalid { .. } => "InvalidImageName",
                    _ => "ErrImagePull",
                };
                let delay =
                    self.pull_backoff.get(&name).map(|b| backoff::next_delay(b.delay)).unwrap_or(backoff::START);
                self.pull_backoff
                    .insert(name.clone(), PullBackoff { until: Instant::now() + delay, delay, message: e.to_string() });
                tracing::warn!(pod = %self.name(), container = %name, error = %e, "image not available");
                self.waiting.insert(name, (reason.into(), e.to_string()));
                None
            }
        }
    }

    async fn start(
        &mut self,
        container: &Container,
        attempt: u32,
        sandbox: &Sandbox,
        volumes: &HashMap<String, HostVolume>,
        etc: &std::path::Path,
    ) {
        let name = container.name.clone();
        let Some(image) = self.image(container).await else { return };
        match self.container_config(container, attempt, image, volumes, etc).await {
            Err(e) => {
                self.waiting.insert(name, (e.reason.into(), e.message));
            }
            Ok(config) => match self.ctx.runtime.start_container(sandbox, &config).await {
                Ok(id) => {
                    self.waiting.remove(&name);
                    tracing::info!(pod = %self.name(), container = %name, attempt, "started the container");
                    let ip = self.pod_ip.unwrap_or(self.ctx.node_ip);
                    self.prober.start(&id, container, ip, self.ctx.runtime.clone());
                    if let Some(hook) = container.lifecycle.as_ref().and_then(|l| l.post_start.as_ref())
                        && let Some(exec) = &hook.exec
                    {
                        let result = self.ctx.runtime.exec(&id, &exec.command, Duration::from_secs(30)).await;
                        if !matches!(result, Ok(ref r) if r.exit_code == 0) {
                            tracing::warn!(pod = %self.name(), container = %name, "postStart hook failed; killing the container");
                            let _ = self.ctx.runtime.kill(&id).await;
                        }
                    }
                }
                Err(e) => {
                    self.waiting.insert(name, ("RunContainerError".into(), e.to_string()));
                }
            },
        }
    }

    async fn container_config(
        &self,
        container: &Container,
        attempt: u32,
        image: ImageSpec,
        volumes: &HashMap<String, HostVolume>,
        etc: &std::path::Path,
    ) -> Result<ContainerConfig, spec::ConfigError> {
        let meta = self.pod.metadata.clone().unwrap_or_default();
        let services: Vec<Service> = self
            .ctx
            .services
            .store()
            .list()
            .into_iter()
            .filter(|s| s.metadata.as_ref().is_some_and(|m| m.namespace == meta.namespace))
            .map(|s| (*s).clone())
            .collect();
        let ctx = spec::EnvContext {
            client: &self.ctx.client,
            pod: &self.pod,
            pod_ip: self.pod_ip,
            host_ip: self.ctx.node_ip,
            services: &services,
        };
        let env = spec::environment(&ctx, container, &image).await?;
        let argv = spec::argv(container, &image, &env);
        let (uid, gid, groups) = spec::user(&self.pod, container, &image)?;
        let mounts = spec::mounts(container, volumes, etc)?;
        let cwd =
            if container.working_dir.is_empty() { image.working_dir.clone() } else { container.working_dir.clone() };
        let log_path = self.log_dir().join(&container.name).join(format!("{attempt}.log"));
        Ok(ContainerConfig {
            name: container.name.clone(),
            attempt,
            image,
            argv,
            env,
            cwd,
            uid,
            gid,
            groups,
            mounts,
            limits: spec::limits(container),
            log_path,
            privileges: spec::privileges(&self.pod, container)?,
            termination_message: spec::termination_message(container),
            host_pid: self.pod.spec.as_ref().is_some_and(|s| s.host_pid),
        })
    }

    /// Starts the next attempt of an exited container once its back-off allows.
    async fn restart(
        &mut self,
        container: &Container,
        info: &ContainerInfo,
        sandbox: &Sandbox,
        volumes: &HashMap<String, HostVolume>,
        etc: &std::path::Path,
    ) {
        let ContainerState::Exited { started_at, finished_at, .. } = &info.state else { return };
        let recorded = self.restart_backoff.delay(&container.name);
        match backoff::decide(recorded, *started_at, *finished_at, now_unix()) {
            Decision::Wait { delay, .. } => {
                let meta = self.pod.metadata.clone().unwrap_or_default();
                let message = format!(
                    "back-off {}s restarting failed container={} pod={}_{}({})",
                    delay.as_secs(),
                    container.name,
                    meta.name,
                    meta.namespace,
                    meta.uid
                );
                self.waiting.insert(container.name.clone(), ("CrashLoopBackOff".into(), message));
            }
            Decision::Restart { next } => {
                // Recorded before the start, so a kubelet that stops right after it
                // still finds the longer back-off.
                if let Err(e) = self.restart_backoff.set(&container.name, next) {
                    tracing::warn!(pod = %self.name(), container = %container.name, error = %e, "recording the restart back-off");
                }
                self.start(container, info.attempt + 1, sandbox, volumes, etc).await;
            }
        }
    }

    /// This pod's log directory: `<log-dir>/<namespace>_<name>_<uid>`.
    fn log_dir(&self) -> PathBuf {
        let meta = self.pod.metadata.clone().unwrap_or_default();
        self.ctx.settings.log_dir.join(format!("{}_{}_{}", meta.namespace, meta.name, meta.uid))
    }

    /// Keeps each container's latest two attempts (the last one for lastState), and
    /// the logs of those two (the older one for `logs --previous`).
    async fn prune(&self, spec: &proto::core::v1::PodSpec) {
        let infos = self.ctx.runtime.containers(&self.uid).await;
        for container in spec.init_containers.iter().chain(spec.containers.iter()) {
            let logs = self.log_dir().join(&container.name);
            if let Err(e) = crate::runtime::logs::prune_instances(&logs, 2) {
                tracing::warn!(pod = %self.name(), container = %container.name, error = %e, "removing old logs");
            }
            let attempts: Vec<&ContainerInfo> = infos.iter().filter(|i| i.name == container.name).collect();
            if attempts.len() > 2 {
                for old in &attempts[..attempts.len() - 2] {
                    if matches!(old.state, ContainerState::Exited { .. })
                        && let Err(e) = self.ctx.runtime.remove_container(&old.id).await
                    {
                        tracing::warn!(container = %old.id, error = %e, "removing an old container");
                    }
                }
            }
        }
        // Attempts of containers no longer in the spec cannot be restarted: drop them.
        for info in &infos {
            let known = spec.init_containers.iter().chain(spec.containers.iter()).any(|c| c.name == info.name);
            if !known {
                let _ = self.ctx.runtime.kill(&info.id).await;
            }
        }
    }

    fn views(&self, containers: &[Container], infos: &[ContainerInfo], init: bool) -> Vec<ContainerView> {
        containers
            .iter()
            .map(|c| {
                let attempts: Vec<&ContainerInfo> = infos.iter().filter(|i| i.name == c.name).collect();
                let latest = attempts.last().map(|i| (*i).clone());
                let previous = attempts.len().checked_sub(2).map(|i| attempts[i].clone());
                let running = matches!(latest.as_ref().map(|l| &l.state), Some(ContainerState::Running { .. }));
                let probe = latest.as_ref().map(|l| self.prober.state(&l.id)).unwrap_or_default();
                let ready = if init {
                    matches!(latest.as_ref().map(|l| &l.state), Some(ContainerState::Exited { exit_code: 0, .. }))
                } else {
                    running && probe.started && probe.ready
                };
                let waiting = match latest.as_ref().map(|l| &l.state) {
                    Some(ContainerState::Running { .. }) => None,
                    _ => self.waiting.get(&c.name).cloned(),
                };
                ContainerView {
                    name: c.name.clone(),
                    image: c.image.clone(),
                    latest,
                    previous,
                    waiting,
                    ready,
                    started: running && probe.started,
                }
            })
            .collect()
    }

    async fn post_status(
        &mut self,
        spec: &proto::core::v1::PodSpec,
        infos: &[ContainerInfo],
        phase: &str,
        initialized: bool,
    ) {
        let init = self.views(&spec.init_containers, infos, true);
        let app = self.views(&spec.containers, infos, false);
        let inputs = status::Inputs {
            pod: &self.pod,
            phase,
            init: &init,
            app: &app,
            initialized,
            host_ip: self.ctx.node_ip,
            pod_ip: self.pod_ip,
            start_time: self.start_time,
            qos_class: spec::qos_class(&self.pod),
            message: self.message.clone(),
        };
        let new = status::pod_status(&inputs);
        let current = self.pod.status.clone().unwrap_or_default();
        if self.last_posted.as_ref().is_some_and(|last| status::same(last, &new)) && status::same(&current, &new) {
            return;
        }
        let mut pod = (*self.pod).clone();
        if let Some(meta) = pod.metadata.as_mut() {
            // Status is the kubelet's alone: write it whatever the pod's version.
            meta.resource_version.clear();
        }
        pod.status = Some(new.clone());
        let api: Api<Pod> = Api::all(&self.ctx.client);
        match api.update_status(&pod).await {
            Ok(updated) => {
                self.pod = Arc::new(updated);
                self.last_posted = Some(new);
            }
            Err(e) if e.is(Reason::NotFound) => {}
            Err(e) => tracing::warn!(pod = %self.name(), error = %e, "posting the pod status"),
        }
    }

    /// Stops one container: preStop hook, its stop signal, SIGKILL after `grace`.
    async fn stop_container(&self, container: &Container, id: &str, grace: Duration) {
        let deadline = Instant::now() + grace;
        if let Some(hook) = container.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
            if let Some(exec) = &hook.exec {
                let _ = self.ctx.runtime.exec(id, &exec.command, grace).await;
            } else if let Some(sleep) = &hook.sleep {
                tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(grace)).await;
            }
        }
        let signal = container
            .lifecycle
            .as_ref()
            .and_then(|l| l.stop_signal.as_deref())
            .and_then(|s| s.parse::<nix::sys::signal::Signal>().ok())
            .unwrap_or(nix::sys::signal::Signal::SIGTERM);
        let _ = self.ctx.runtime.signal(id, signal).await;
        while Instant::now() < deadline {
            if !self.is_running(id).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.ctx.runtime.kill(id).await;
        let until = Instant::now() + Duration::from_secs(10);
        while self.is_running(id).await && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn is_running(&self, id: &str) -> bool {
        self.ctx
            .runtime
            .containers(&self.uid)
            .await
            .iter()
            .any(|i| i.id == id && matches!(i.state, ContainerState::Running { .. }))
    }

    /// Stops every container within the grace period and releases the pod's resources;
    /// then, when `delete` is set, removes the pod object (grace 0, this pod's uid only).
    async fn stop_and_remove(&mut self, delete: bool) -> anyhow::Result<Step> {
        let meta = self.pod.metadata.clone().unwrap_or_default();
        let spec = self.spec();
        self.stop_all(&spec, self.grace(&spec)).await;
        self.release(&spec).await?;
        // A finished pod keeps its logs (`logs` of a completed Job's pod) until it goes.
        if let Err(e) = crate::runtime::logs::remove_pod(&self.ctx.settings.log_dir, &self.uid) {
            tracing::warn!(pod = %self.name(), error = %e, "removing the pod's logs");
        }
        if delete {
            let api: Api<Pod> = Api::namespaced(&self.ctx.client, &meta.namespace);
            let options = DeleteOptions {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions { uid: Some(meta.uid.clone()), resource_version: None }),
                ..Default::default()
            };
            match api.delete(&meta.name, options).await {
                Ok(_) => {}
                Err(e) if e.is(Reason::NotFound) || e.is(Reason::Conflict) => {}
                Err(e) => return Err(anyhow::anyhow!("deleting the pod: {e}")),
            }
            tracing::info!(pod = %self.name(), "pod stopped and removed");
        }
        Ok(Step::Done)
    }

    /// The pod's grace period: the deletion's, else the spec's, else 30 s.
    fn grace(&self, spec: &proto::core::v1::PodSpec) -> Duration {
        let deletion = self.pod.metadata.as_ref().and_then(|m| m.deletion_grace_period_seconds);
        Duration::from_secs(deletion.or(spec.termination_grace_period_seconds).unwrap_or(30).max(0) as u64)
    }

    /// Stops every running container at once, each within `grace` (probes stop in `release`).
    async fn stop_all(&self, spec: &proto::core::v1::PodSpec, grace: Duration) {
        let infos = self.ctx.runtime.containers(&self.uid).await;
        let running: Vec<(&Container, String)> = infos
            .iter()
            .filter(|i| matches!(i.state, ContainerState::Running { .. }))
            .filter_map(|i| {
                let c = spec.containers.iter().chain(spec.init_containers.iter()).find(|c| c.name == i.name)?;
                Some((c, i.id.clone()))
            })
            .collect();
        if !running.is_empty() {
            tracing::info!(pod = %self.name(), ?grace, "stopping the pod");
        }
        futures::future::join_all(running.iter().map(|(c, id)| self.stop_container(c, id, grace))).await;
    }

    async fn release(&mut self, spec: &proto::core::v1::PodSpec) -> anyhow::Result<()> {
        self.prober.stop_all();
        self.ctx.runtime.remove_sandbox(&self.uid).await?;
        if !spec.host_network {
            self.ctx.network.detach(&self.uid).await?;
        }
        self.ctx.volumes.teardown(&self.uid)?;
        self.volumes = None;
        Ok(())
    }
}

/// Cleans up a pod the kubelet has state for but no longer runs.
pub async fn remove_orphan(ctx: &Context, uid: &str) -> anyhow::Result<()> {
    ctx.runtime.remove_sandbox(uid).await?;
    ctx.network.detach(uid).await?;
    ctx.volumes.teardown(uid)?;
    if let Err(e) = crate::runtime::logs::remove_pod(&ctx.settings.log_dir, uid) {
        tracing::warn!(pod = uid, error = %e, "removing the pod's logs");
    }
    Ok(())
}
