//! The kubelet's streaming endpoint (`--address`:`--port`, published as the Node's
//! daemonEndpoints.kubeletEndpoint): container logs read from the CRI-format files
//! under the log dir, and exec through the runtime. The apiserver forwards clients'
//! calls here after resolving the pod and its container, so requests name the pod by
//! namespace, name and uid and always name the container.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use proto::streaming::v1::streaming_server::{Streaming, StreamingServer};
use proto::streaming::v1::{ExecInput, ExecOutput, LogsChunk, LogsRequest, exec_input, exec_output};
use proto::{ApiError, Reason};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status, Streaming as Incoming};

use crate::runtime::logs::{self, ReadOptions};
use crate::runtime::{ContainerInfo, ContainerState, Runtime, TerminalSize};

/// How often a `logs -f` checks whether its container still runs.
const RUNNING_POLL: Duration = Duration::from_millis(200);
/// After the command exits, how long its output may still take to drain (a process
/// it left in the background may hold the pipes open forever).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
const DEFAULT_TERMINAL: TerminalSize = TerminalSize { width: 80, height: 24 };

pub struct StreamingService {
    runtime: Arc<dyn Runtime>,
    log_dir: PathBuf,
}

/// Serves the endpoint on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    runtime: Arc<dyn Runtime>,
    log_dir: PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(StreamingServer::new(StreamingService { runtime, log_dir }))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

fn status(reason: Reason, message: impl Into<String>) -> Status {
    ApiError::new(reason, message).into()
}

/// The pod the request names, as found on this node: its uid and log directory.
fn find_pod(log_dir: &Path, namespace: &str, name: &str, uid: &str) -> Result<(String, PathBuf), Status> {
    if !uid.is_empty() {
        return Ok((uid.to_string(), log_dir.join(format!("{namespace}_{name}_{uid}"))));
    }
    // Without a uid (a caller other than the apiserver): the newest pod of that name.
    let prefix = format!("{namespace}_{name}_");
    let newest = std::fs::read_dir(log_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)))
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
    match newest {
        Some(entry) => {
            let dir_name = entry.file_name().to_string_lossy().into_owned();
            Ok((dir_name[prefix.len()..].to_string(), entry.path()))
        }
        None => Err(status(
            Reason::NotFound,
            format!("pod \"{name}\" in namespace \"{namespace}\" has never run on this node"),
        )),
    }
}

fn require_container(container: &str, pod: &str) -> Result<(), Status> {
    if container.is_empty() || container.contains('/') || container.starts_with('.') {
        return Err(status(Reason::BadRequest, format!("a valid container name must be given for pod {pod}")));
    }
    Ok(())
}

impl StreamingService {
    async fn attempts(&self, uid: &str, container: &str) -> Vec<ContainerInfo> {
        self.runtime.containers(uid).await.into_iter().filter(|i| i.name == container).collect()
    }

    /// A flag that turns false once container `id` of pod `uid` no longer runs.
    fn running_flag(&self, uid: &str, id: String, running: bool) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(running);
        if running {
            let runtime = self.runtime.clone();
            let uid = uid.to_string();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(RUNNING_POLL).await;
                    if tx.is_closed() {
                        return;
                    }
                    let still = runtime
                        .containers(&uid)
                        .await
                        .iter()
                        .any(|i| i.id == id && matches!(i.state, ContainerState::Running { .. }));
                    if !still {
                        let _ = tx.send(false);
                        return;
                    }
                }
            });
        }
        rx
    }
}

type LogsStream = Pin<Box<dyn Stream<Item = Result<LogsChunk, Status>> + Send>>;
type ExecStream = Pin<Box<dyn Stream<Item = Result<ExecOutput, Status>> + Send>>;

fn receiver_stream<T: Send + 'static>(mut rx: mpsc::Receiver<T>) -> impl Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tonic::async_trait]
impl Streaming for StreamingService {
    type LogsStream = LogsStream;
    type ExecStream = ExecStream;

    async fn logs(&self, request: Request<LogsRequest>) -> Result<Response<LogsStream>, Status> {
        let r = request.into_inner();
        require_container(&r.container, &r.pod)?;
        let (uid, pod_dir) = find_pod(&self.log_dir, &r.namespace, &r.pod, &r.pod_uid)?;
        let container_dir = pod_dir.join(&r.container);
        let infos = self.attempts(&uid, &r.container).await;
        let instances = logs::instances(&container_dir);
        let latest = infos.iter().map(|i| i.attempt).chain(instances.iter().copied()).max();
        let Some(latest) = latest else {
            return Err(status(
                Reason::BadRequest,
                format!("container \"{}\" in pod \"{}\" is waiting to start", r.container, r.pod),
            ));
        };
        let attempt = if r.previous {
            instances.iter().copied().filter(|a| *a < latest).max().ok_or_else(|| {
                status(
                    Reason::BadRequest,
                    format!("previous terminated container \"{}\" in pod \"{}\" not found", r.container, r.pod),
                )
            })?
        } else {
            latest
        };
        let path = container_dir.join(format!("{attempt}.log"));
        let running = infos
            .iter()
            .find(|i| i.attempt == attempt)
            .is_some_and(|i| matches!(i.state, ContainerState::Running { .. }));
        let running = self.running_flag(&uid, format!("{uid}_{}_{attempt}", r.container), running);
        let negative = |value: Option<i64>, what: &str| -> Result<Option<i64>, Status> {
            match value {
                Some(v) if v < 0 => Err(status(Reason::BadRequest, format!("{what} must not be negative (got {v})"))),
                other => Ok(other),
            }
        };
        let since_nanos = negative(r.since_seconds, "sinceSeconds")?.map(|s| {
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0).saturating_sub(s.saturating_mul(1_000_000_000))
        });
        let options = ReadOptions {
            follow: r.follow,
            tail_lines: negative(r.tail_lines, "tailLines")?.map(|n| n as usize),
            since_nanos,
            timestamps: r.timestamps,
            limit_bytes: negative(r.limit_bytes, "limitBytes")?.map(|n| n as u64),
        };
        let (tx, rx) = mpsc::channel(16);
        tokio::task::spawn_blocking(move || logs::stream(&path, options, running, tx));
        let stream = futures::StreamExt::map(receiver_stream(rx), |chunk: std::io::Result<Vec<u8>>| match chunk {
            Ok(data) => Ok(LogsChunk { data: data.into() }),
            Err(e) => Err(status(Reason::InternalError, format!("reading the container's log: {e}"))),
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn exec(&self, request: Request<Incoming<ExecInput>>) -> Result<Response<ExecStream>, Status> {
        let mut input = request.into_inner();
        let start = match input.message().await? {
            Some(ExecInput { input: Some(exec_input::Input::Start(start)) }) => start,
            _ => return Err(status(Reason::BadRequest, "an exec must begin with its start message")),
        };
        require_container(&start.container, &start.pod)?;
        if start.command.is_empty() {
            return Err(status(Reason::BadRequest, "exec needs a command to run"));
        }
        let (uid, _) = find_pod(&self.log_dir, &start.namespace, &start.pod, &start.pod_uid)?;
        let running = self
            .attempts(&uid, &start.container)
            .await
            .into_iter()
            .rfind(|i| matches!(i.state, ContainerState::Running { .. }))
            .ok_or_else(|| {
                status(
                    Reason::BadRequest,
                    format!("container \"{}\" in pod \"{}\" is not running", start.container, start.pod),
                )
            })?;
        let tty = start.tty.then(|| {
            start
                .size
                .map(|s| TerminalSize {
                    width: s.width.min(u16::MAX.into()) as u16,
                    height: s.height.min(u16::MAX.into()) as u16,
                })
                .filter(|s| s.width > 0 && s.height > 0)
                .unwrap_or(DEFAULT_TERMINAL)
        });
        let session = self
            .runtime
            .exec_session(&running.id, &start.command, start.stdin, tty)
            .await
            .map_err(|e| status(Reason::InternalError, e.to_string()))?;
        tracing::info!(pod = %start.pod, container = %start.container, command = ?start.command, tty = start.tty, "exec");

        let (out_tx, out_rx) = mpsc::channel::<Result<ExecOutput, Status>>(16);
        let is_tty = tty.is_some();
        let mut stdin = session.stdin;
        let terminal = session.terminal;
        let pump = tokio::spawn(async move {
            while let Ok(Some(message)) = input.message().await {
                match message.input {
                    Some(exec_input::Input::Stdin(data)) => {
                        if let Some(w) = stdin.as_mut()
                            && (w.write_all(&data).await.is_err() || w.flush().await.is_err())
                        {
                            stdin = None;
                        }
                    }
                    Some(exec_input::Input::StdinClosed(_)) => {
                        // A pipe ends by closing it; a terminal by its end-of-file character.
                        if is_tty && let Some(w) = stdin.as_mut() {
                            let _ = w.write_all(&[4]).await;
                            let _ = w.flush().await;
                        }
                        stdin = None;
                    }
                    Some(exec_input::Input::Resize(size)) => {
                        if let Some(t) = &terminal {
                            let size = TerminalSize { width: size.width as u16, height: size.height as u16 };
                            if let Err(e) = t.resize(size) {
                                tracing::debug!(error = %e, "resizing an exec terminal");
                            }
                        }
                    }
                    Some(exec_input::Input::Start(_)) | None => {}
                }
            }
        });
        let mut readers = vec![copy_output(session.stdout, out_tx.clone(), false)];
        if let Some(stderr) = session.stderr {
            readers.push(copy_output(stderr, out_tx.clone(), true));
        }
        let exit = session.exit;
        tokio::spawn(async move {
            let code = tokio::select! {
                code = exit => code,
                // The caller went away: dropping the exit future kills the command.
                _ = out_tx.closed() => {
                    pump.abort();
                    return;
                }
            };
            let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, futures::future::join_all(readers)).await;
            pump.abort();
            let last = match code {
                Ok(code) => Ok(ExecOutput { output: Some(exec_output::Output::ExitCode(code)) }),
                Err(e) => Err(status(Reason::InternalError, e.to_string())),
            };
            let _ = out_tx.send(last).await;
        });
        Ok(Response::new(Box::pin(receiver_stream(out_rx))))
    }
}

/// Forwards one output stream of the command until it ends (EOF, or EIO from a
/// terminal whose last user closed it).
fn copy_output(
    mut from: Pin<Box<dyn tokio::io::AsyncRead + Send>>,
    to: mpsc::Sender<Result<ExecOutput, Status>>,
    stderr: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let data = bytes::Bytes::copy_from_slice(&buf[..n]);
            let output = if stderr { exec_output::Output::Stderr(data) } else { exec_output::Output::Stdout(data) };
            if to.send(Ok(ExecOutput { output: Some(output) })).await.is_err() {
                return;
            }
        }
    })
}
