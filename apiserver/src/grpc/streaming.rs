//! The Streaming service (logs, exec): resolves the pod and its container, checks what
//! Kubernetes checks (a node assigned, a container named when there are several, the
//! container started), then forwards the call to the kubelet of the pod's node at the
//! address and port the Node reports, and relays the streams both ways.
//!
//! The hop to the kubelet is plain gRPC: there is no TLS or authentication between
//! the apiserver and kubelets yet.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use proto::core::v1::{Node, Pod};
use proto::streaming::v1::streaming_client::StreamingClient;
use proto::streaming::v1::streaming_server::Streaming;
use proto::streaming::v1::{ExecInput, ExecOutput, LogsChunk, LogsRequest, exec_input};
use proto::{ApiError, Reason};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming as Incoming};

use crate::registry::kinds::Registries;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct StreamingService {
    registries: Arc<Registries>,
}

impl StreamingService {
    pub fn new(registries: Arc<Registries>) -> Self {
        StreamingService { registries }
    }

    async fn get<T: prost::Message + Default>(&self, resource: &str, namespace: &str, name: &str) -> Result<T, Status> {
        let api = self
            .registries
            .get(resource)
            .ok_or_else(|| Status::from(ApiError::internal(format!("no registry for {resource}"))))?;
        let bytes = api.get(namespace, name, "").await?;
        T::decode(bytes).map_err(|e| ApiError::internal(format!("decoding a stored {resource} object: {e}")).into())
    }

    /// The pod and the container the call is about.
    async fn pod_and_container(
        &self,
        namespace: &str,
        pod_name: &str,
        container: &str,
    ) -> Result<(Pod, String), Status> {
        let namespace = if namespace.is_empty() { "default" } else { namespace };
        let pod: Pod = self.get("pods", namespace, pod_name).await?;
        let container = container_name(&pod, container)?;
        let node_name = pod.spec.as_ref().map(|s| s.node_name.as_str()).unwrap_or_default();
        if node_name.is_empty() {
            return Err(bad_request(format!("pod {pod_name} does not have a host assigned")));
        }
        Ok((pod, container))
    }

    /// A client of the kubelet of the pod's node.
    async fn kubelet(&self, pod: &Pod) -> Result<StreamingClient<Channel>, Status> {
        let node_name = pod.spec.as_ref().map(|s| s.node_name.as_str()).unwrap_or_default();
        let node: Node = self.get("nodes", "", node_name).await?;
        kubelet_client(&node).await
    }
}

fn bad_request(message: String) -> Status {
    ApiError::new(Reason::BadRequest, message).into()
}

/// The named container, or the only one; errors as Kubernetes words them.
fn container_name(pod: &Pod, requested: &str) -> Result<String, Status> {
    let name = pod.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    let init: Vec<&str> = spec.init_containers.iter().map(|c| c.name.as_str()).collect();
    if requested.is_empty() {
        return match names.as_slice() {
            [only] => Ok(only.to_string()),
            _ => {
                let mut message =
                    format!("a container name must be specified for pod {name}, choose one of: [{}]", names.join(" "));
                if !init.is_empty() {
                    message.push_str(&format!(" or one of the init containers: [{}]", init.join(" ")));
                }
                Err(bad_request(message))
            }
        };
    }
    if names.contains(&requested) || init.contains(&requested) {
        Ok(requested.to_string())
    } else {
        Err(bad_request(format!(
            "container {requested} is not valid for pod {name} (its containers: {})",
            names.iter().chain(init.iter()).copied().collect::<Vec<_>>().join(", ")
        )))
    }
}

fn container_state(pod: &Pod, container: &str) -> Option<proto::core::v1::ContainerState> {
    let status = pod.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .chain(status.init_container_statuses.iter())
        .find(|s| s.name == container)
        .and_then(|s| s.state.clone())
}

/// Connects to the kubelet at the Node's InternalIP (else ExternalIP, else Hostname)
/// and its reported kubelet port.
async fn kubelet_client(node: &Node) -> Result<StreamingClient<Channel>, Status> {
    let name = node.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or_default();
    let status = node.status.clone().unwrap_or_default();
    let address = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|kind| status.addresses.iter().find(|a| a.r#type == *kind && !a.address.is_empty()))
        .map(|a| a.address.clone());
    let port = status.daemon_endpoints.and_then(|d| d.kubelet_endpoint).map(|e| e.port).unwrap_or(0);
    let (Some(address), true) = (address, port > 0) else {
        return Err(ApiError::new(
            Reason::ServiceUnavailable,
            format!("node {name} has not reported the address and port of its kubelet yet"),
        )
        .into());
    };
    let host = if address.contains(':') { format!("[{address}]") } else { address };
    let url = format!("http://{host}:{port}");
    let unreachable = |e: &dyn std::fmt::Display| -> Status {
        ApiError::new(Reason::ServiceUnavailable, format!("cannot reach the kubelet of node {name} at {url}: {e}"))
            .into()
    };
    let endpoint = Endpoint::from_shared(url.clone()).map_err(|e| unreachable(&e))?.connect_timeout(CONNECT_TIMEOUT);
    let channel = endpoint.connect().await.map_err(|e| unreachable(&e))?;
    Ok(StreamingClient::new(channel))
}

type LogsStream = Pin<Box<dyn Stream<Item = Result<LogsChunk, Status>> + Send>>;
type ExecStream = Pin<Box<dyn Stream<Item = Result<ExecOutput, Status>> + Send>>;

#[tonic::async_trait]
impl Streaming for StreamingService {
    type LogsStream = LogsStream;
    type ExecStream = ExecStream;

    async fn logs(&self, request: Request<LogsRequest>) -> Result<Response<LogsStream>, Status> {
        let mut r = request.into_inner();
        let (pod, container) = self.pod_and_container(&r.namespace, &r.pod, &r.container).await?;
        let state = container_state(&pod, &container);
        let started = state.as_ref().is_some_and(|s| s.running.is_some() || s.terminated.is_some());
        if !started && !r.previous {
            let reason = state
                .and_then(|s| s.waiting)
                .map(|w| w.reason)
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "ContainerCreating".into());
            return Err(bad_request(format!(
                "container \"{container}\" in pod \"{}\" is waiting to start: {reason}",
                r.pod
            )));
        }
        let mut kubelet = self.kubelet(&pod).await?;
        let meta = pod.metadata.unwrap_or_default();
        r.namespace = meta.namespace;
        r.pod_uid = meta.uid;
        r.container = container;
        let stream = kubelet.logs(r).await?.into_inner();
        Ok(Response::new(Box::pin(stream)))
    }

    async fn exec(&self, request: Request<Incoming<ExecInput>>) -> Result<Response<ExecStream>, Status> {
        let mut input = request.into_inner();
        let mut start = match input.message().await? {
            Some(ExecInput { input: Some(exec_input::Input::Start(start)) }) => start,
            _ => return Err(bad_request("an exec must begin with its start message".into())),
        };
        if start.command.is_empty() {
            return Err(bad_request("you must specify at least one command for the container".into()));
        }
        let (pod, container) = self.pod_and_container(&start.namespace, &start.pod, &start.container).await?;
        let phase = pod.status.as_ref().map(|s| s.phase.as_str()).unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            return Err(bad_request(format!(
                "cannot exec into a container in a completed pod; current phase is {phase}"
            )));
        }
        if container_state(&pod, &container).is_none_or(|s| s.running.is_none()) {
            return Err(bad_request(format!("container \"{container}\" in pod \"{}\" is not running", start.pod)));
        }
        let mut kubelet = self.kubelet(&pod).await?;
        let meta = pod.metadata.unwrap_or_default();
        start.namespace = meta.namespace;
        start.pod_uid = meta.uid;
        start.container = container;
        let first = ExecInput { input: Some(exec_input::Input::Start(start)) };
        // The caller's later messages follow as they come; its stream's end ends ours.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<ExecInput>(16);
        tokio::spawn(async move {
            while let Ok(Some(message)) = input.message().await {
                if tx.send(message).await.is_err() {
                    return;
                }
            }
        });
        let rest = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let outbound = futures::stream::once(async move { first }).chain(rest);
        let stream = kubelet.exec(outbound).await?.into_inner();
        Ok(Response::new(Box::pin(stream)))
    }
}
