//! The Discovery service: the server's version and the kinds it serves.

use proto::apiserver::v1::discovery_server::Discovery;
use proto::apiserver::v1::{ApiResource, ApiResourceList, ApiResourcesRequest, VersionInfo, VersionRequest};
use proto::resource::KINDS;
use tonic::{Request, Response, Status};

pub struct DiscoveryService;

/// The version every component reports.
pub fn version() -> VersionInfo {
    let version = env!("CARGO_PKG_VERSION");
    let mut parts = version.split('.');
    VersionInfo {
        major: parts.next().unwrap_or("0").to_string(),
        minor: parts.next().unwrap_or("0").to_string(),
        git_version: format!("v{version}"),
        git_commit: option_env!("GIT_COMMIT").unwrap_or("unknown").to_string(),
        build_date: option_env!("BUILD_DATE").unwrap_or("unknown").to_string(),
        compiler: "rustc".to_string(),
        platform: format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    }
}

#[tonic::async_trait]
impl Discovery for DiscoveryService {
    async fn version(&self, _: Request<VersionRequest>) -> Result<Response<VersionInfo>, Status> {
        Ok(Response::new(version()))
    }

    async fn api_resources(&self, _: Request<ApiResourcesRequest>) -> Result<Response<ApiResourceList>, Status> {
        let resources = KINDS
            .iter()
            .map(|k| {
                let mut verbs = vec!["create", "delete", "get", "list", "patch", "update", "watch"];
                if k.has_status {
                    verbs.push("updatestatus");
                }
                ApiResource {
                    name: k.plural.to_string(),
                    singular_name: k.singular.to_string(),
                    namespaced: k.namespaced,
                    group: k.group.to_string(),
                    version: k.version.to_string(),
                    kind: k.kind.to_string(),
                    verbs: verbs.into_iter().map(str::to_string).collect(),
                    short_names: k.short_names.iter().map(|s| s.to_string()).collect(),
                    categories: k.categories.iter().map(|s| s.to_string()).collect(),
                }
            })
            .collect();
        Ok(Response::new(ApiResourceList { resources }))
    }
}
