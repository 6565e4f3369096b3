//! A connection to the apiserver and the calls of its gRPC API, untyped: objects are
//! encoded bytes of a known kind. `Api<K>` (in `api.rs`) adds types on top.

use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use proto::apiserver::v1::discovery_client::DiscoveryClient;
use proto::apiserver::v1::resources_client::ResourcesClient;
use proto::apiserver::v1::{
    ApiResource, ApiResourcesRequest, BindRequest, CreateRequest, DeleteRequest, GetRequest, ListRequest, PatchRequest,
    UpdateRequest, VersionInfo, VersionRequest, WatchRequest,
};
use proto::core::v1::Binding;
use proto::meta::v1::DeleteOptions;
use proto::{ApiError, KindInfo, Reason};
use tonic::transport::{Channel, Endpoint};

use crate::fence::Fence;
use crate::kubeconfig::{Kubeconfig, KubeconfigError, Resolved};

/// Largest message accepted: a big list arrives in one message.
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Why a daemon has no client.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("--master {server}: {source}")]
    Master { server: String, source: ApiError },
    #[error(transparent)]
    Kubeconfig(#[from] KubeconfigError),
    #[error(transparent)]
    Client(#[from] ApiError),
}

#[derive(Clone)]
pub struct Client {
    resources: ResourcesClient<Channel>,
    discovery: DiscoveryClient<Channel>,
    server: String,
    namespace: String,
    /// Checked before every write when set (a leader's client).
    fence: Option<Fence>,
}

/// Options of a list.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub label_selector: String,
    pub field_selector: String,
    pub limit: i64,
    pub continue_token: String,
    /// "" for the latest state; "0" accepts the server's cache.
    pub resource_version: String,
}

impl ListParams {
    pub fn labels(selector: &str) -> Self {
        ListParams { label_selector: selector.to_string(), ..Default::default() }
    }

    pub fn fields(selector: &str) -> Self {
        ListParams { field_selector: selector.to_string(), ..Default::default() }
    }
}

/// A page of encoded objects.
#[derive(Debug, Clone, Default)]
pub struct RawList {
    pub items: Vec<Bytes>,
    pub resource_version: String,
    pub continue_token: String,
}

/// One event of a watch, the object still encoded.
#[derive(Debug, Clone, PartialEq)]
pub enum RawEvent {
    Added(Bytes),
    Modified(Bytes),
    Deleted(Bytes),
    /// Everything up to this resourceVersion has been delivered.
    Bookmark(String),
}

pub type RawEventStream = Pin<Box<dyn Stream<Item = Result<RawEvent, ApiError>> + Send>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// RFC 7386 JSON merge patch.
    Merge,
    /// RFC 6902 JSON patch.
    Json,
}

impl PatchType {
    fn as_str(self) -> &'static str {
        match self {
            PatchType::Merge => "merge",
            PatchType::Json => "json",
        }
    }
}

/// The URL to connect to for a server address: `http://host:port`, or `host:port` as
/// kubectl takes it. Any other scheme is refused here, where it can be named, rather than
/// failing later as an apiserver that cannot be reached.
fn server_url(server: &str) -> Result<String, ApiError> {
    let example = "give an address such as http://127.0.0.1:6443";
    match server.split_once("://") {
        None => Ok(format!("http://{server}")),
        Some(("http", _)) => Ok(server.to_string()),
        Some(("https", _)) => Err(ApiError::bad_request(format!(
            "server address \"{server}\": TLS servers (https://) are not supported by this build; use an http:// server address"
        ))),
        Some((scheme, _)) => {
            Err(ApiError::bad_request(format!("server address \"{server}\" has the scheme \"{scheme}\": {example}")))
        }
    }
}

impl Client {
    /// A client for `server` ("http://127.0.0.1:6443"). Connects on first use, so a
    /// component may start before the apiserver does.
    pub fn new(server: &str, namespace: &str) -> Result<Client, ApiError> {
        let endpoint = Endpoint::from_shared(server_url(server)?)
            .map_err(|e| ApiError::bad_request(format!("invalid server address \"{server}\": {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let channel = endpoint.connect_lazy();
        Ok(Client {
            resources: ResourcesClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            discovery: DiscoveryClient::new(channel),
            server: server.to_string(),
            namespace: if namespace.is_empty() { "default".to_string() } else { namespace.to_string() },
            fence: None,
        })
    }

    /// A client for a kubeconfig context.
    pub fn from_kubeconfig(resolved: &Resolved) -> Result<Client, ApiError> {
        Client::new(&resolved.cluster.server, &resolved.namespace)
            .map_err(|e| ApiError::bad_request(format!("context \"{}\": {}", resolved.context, e.message())))
    }

    /// A daemon's client: `--master` when given, else the current context of the
    /// kubeconfig (`--kubeconfig`, $KUBECONFIG or ~/.kube/config).
    pub fn for_daemon(master: Option<&str>, kubeconfig: Option<&Path>) -> Result<Client, ConnectError> {
        if let Some(server) = master {
            return Client::new(server, "default")
                .map_err(|source| ConnectError::Master { server: server.to_string(), source });
        }
        let path = Kubeconfig::locate(kubeconfig).ok_or(KubeconfigError::NotFound)?;
        let resolved = Kubeconfig::load(&path)?.resolve(None)?;
        Ok(Client::from_kubeconfig(&resolved)?)
    }

    /// The same connection, refusing every write while `fence` is closed: the
    /// client a leader-elected component acts through.
    pub fn fenced(&self, fence: Fence) -> Client {
        Client { fence: Some(fence), ..self.clone() }
    }

    fn check_fence(&self) -> Result<(), ApiError> {
        self.fence.as_ref().map_or(Ok(()), Fence::check)
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// The namespace used when a call names none (the context's).
    pub fn default_namespace(&self) -> &str {
        &self.namespace
    }

    /// Turns a gRPC failure into an API error; one that never reached the server
    /// says which server could not be reached.
    fn error(&self, status: tonic::Status) -> ApiError {
        let error = ApiError::from_grpc(&status);
        let transport = status.details().is_empty()
            && matches!(status.code(), tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled);
        if transport {
            let cause = std::error::Error::source(&status).map(|s| format!(": {s}")).unwrap_or_default();
            return ApiError::new(
                Reason::ServiceUnavailable,
                format!("cannot reach the apiserver at {}: {}{cause}", self.server, status.message()),
            );
        }
        error
    }

    pub async fn version(&self) -> Result<VersionInfo, ApiError> {
        let mut discovery = self.discovery.clone();
        Ok(discovery.version(VersionRequest {}).await.map_err(|s| self.error(s))?.into_inner())
    }

    pub async fn api_resources(&self) -> Result<Vec<ApiResource>, ApiError> {
        let mut discovery = self.discovery.clone();
        Ok(discovery.api_resources(ApiResourcesRequest {}).await.map_err(|s| self.error(s))?.into_inner().resources)
    }

    pub async fn create(
        &self,
        info: &KindInfo,
        namespace: &str,
        object: Bytes,
        dry_run: bool,
    ) -> Result<Bytes, ApiError> {
        self.check_fence()?;
        let request =
            CreateRequest { resource: info.qualified_plural(), namespace: namespace.to_string(), object, dry_run };
        let mut resources = self.resources.clone();
        Ok(resources.create(request).await.map_err(|s| self.error(s))?.into_inner().object)
    }

    pub async fn get(&self, info: &KindInfo, namespace: &str, name: &str) -> Result<Bytes, ApiError> {
        let request = GetRequest {
            resource: info.qualified_plural(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            resource_version: String::new(),
        };
        let mut resources = self.resources.clone();
        Ok(resources.get(request).await.map_err(|s| self.error(s))?.into_inner().object)
    }

    pub async fn list(&self, info: &KindInfo, namespace: &str, params: &ListParams) -> Result<RawList, ApiError> {
        let request = ListRequest {
            resource: info.qualified_plural(),
            namespace: namespace.to_string(),
            label_selector: params.label_selector.clone(),
            field_selector: params.field_selector.clone(),
            limit: params.limit,
            r#continue: params.continue_token.clone(),
            resource_version: params.resource_version.clone(),
        };
        let mut resources = self.resources.clone();
        let response = resources.list(request).await.map_err(|s| self.error(s))?.into_inner();
        let meta = response.metadata.unwrap_or_default();
        Ok(RawList { items: response.items, resource_version: meta.resource_version, continue_token: meta.r#continue })
    }

    pub async fn update(
        &self,
        info: &KindInfo,
        namespace: &str,
        object: Bytes,
        dry_run: bool,
        status: bool,
    ) -> Result<Bytes, ApiError> {
        self.check_fence()?;
        let request =
            UpdateRequest { resource: info.qualified_plural(), namespace: namespace.to_string(), object, dry_run };
        let mut resources = self.resources.clone();
        let response = if status { resources.update_status(request).await } else { resources.update(request).await };
        Ok(response.map_err(|s| self.error(s))?.into_inner().object)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        info: &KindInfo,
        namespace: &str,
        name: &str,
        kind: PatchType,
        patch: &[u8],
        dry_run: bool,
        status: bool,
    ) -> Result<Bytes, ApiError> {
        self.check_fence()?;
        let request = PatchRequest {
            resource: info.qualified_plural(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            patch_type: kind.as_str().to_string(),
            patch: Bytes::copy_from_slice(patch),
            dry_run,
            status,
        };
        let mut resources = self.resources.clone();
        Ok(resources.patch(request).await.map_err(|s| self.error(s))?.into_inner().object)
    }

    /// Deletes; returns the object and whether it is gone (false: held by a grace
    /// period or finalizers).
    pub async fn delete(
        &self,
        info: &KindInfo,
        namespace: &str,
        name: &str,
        options: DeleteOptions,
    ) -> Result<(Bytes, bool), ApiError> {
        self.check_fence()?;
        let request = DeleteRequest {
            resource: info.qualified_plural(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            options: Some(options),
        };
        let mut resources = self.resources.clone();
        let response = resources.delete(request).await.map_err(|s| self.error(s))?.into_inner();
        Ok((response.object, response.removed))
    }

    /// Watches from `resource_version` ("" for the current state first).
    pub async fn watch(
        &self,
        info: &KindInfo,
        namespace: &str,
        params: &ListParams,
        resource_version: &str,
        bookmarks: bool,
    ) -> Result<RawEventStream, ApiError> {
        let request = WatchRequest {
            resource: info.qualified_plural(),
            namespace: namespace.to_string(),
            label_selector: params.label_selector.clone(),
            field_selector: params.field_selector.clone(),
            resource_version: resource_version.to_string(),
            allow_bookmarks: bookmarks,
        };
        let mut resources = self.resources.clone();
        let stream = resources.watch(request).await.map_err(|s| self.error(s))?.into_inner();
        let client = self.clone();
        let events = stream.flat_map(move |response| {
            let items: Vec<Result<RawEvent, ApiError>> = match response {
                Ok(response) => response
                    .events
                    .into_iter()
                    .map(|event| match event.r#type.as_str() {
                        "ADDED" => Ok(RawEvent::Added(event.object)),
                        "MODIFIED" => Ok(RawEvent::Modified(event.object)),
                        "DELETED" => Ok(RawEvent::Deleted(event.object)),
                        "BOOKMARK" => Ok(RawEvent::Bookmark(resource_version_of(&event.object))),
                        other => Err(ApiError::internal(format!("unknown watch event type \"{other}\""))),
                    })
                    .collect(),
                Err(status) => vec![Err(client.error(status))],
            };
            futures::stream::iter(items)
        });
        Ok(Box::pin(events))
    }

    /// The pods/binding subresource.
    pub async fn bind(&self, binding: Binding) -> Result<Bytes, ApiError> {
        self.check_fence()?;
        let mut resources = self.resources.clone();
        Ok(resources.bind(BindRequest { binding: Some(binding) }).await.map_err(|s| self.error(s))?.into_inner().object)
    }
}

/// The resourceVersion of any encoded object.
pub fn resource_version_of(object: &[u8]) -> String {
    use prost::Message as _;
    proto::meta::v1::PartialObjectMetadata::decode(object)
        .ok()
        .and_then(|p| p.metadata)
        .map(|m| m.resource_version)
        .unwrap_or_default()
}

/// The next event of a watch, for callers that do not depend on `futures` themselves.
pub async fn next_event(stream: &mut RawEventStream) -> Option<Result<RawEvent, ApiError>> {
    stream.next().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_are_http_urls_or_bare_host_ports() {
        assert_eq!(server_url("http://10.0.0.1:6443").unwrap(), "http://10.0.0.1:6443");
        assert_eq!(server_url("localhost:6443").unwrap(), "http://localhost:6443");
        for (server, expected) in [
            ("https://10.0.0.1:6443", "TLS servers (https://) are not supported"),
            ("ftp://10.0.0.1:6443", "has the scheme \"ftp\": give an address such as http://127.0.0.1:6443"),
        ] {
            let error = server_url(server).unwrap_err();
            assert_eq!(error.reason(), Reason::BadRequest);
            assert!(error.message().contains(expected), "{server}: {}", error.message());
            assert!(Client::new(server, "default").is_err(), "{server}");
        }
        let Err(error) = Client::new("http://[bad", "default") else { panic!("a malformed address was taken") };
        assert!(error.message().contains("invalid server address \"http://[bad\""), "{}", error.message());
    }
}
