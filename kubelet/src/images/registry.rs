//! A Docker registry HTTP API v2 client for pulling: manifests and blobs of one
//! repository, with bearer-token and basic authentication and redirects (blob
//! downloads are often redirected to other hosts, which never get our credentials).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use tokio_rustls::rustls;

use super::digest::Digest;
use super::http::{self, Response, Url};
use super::layout::{BlobError, BlobWriter, Layout};
use super::oci::MANIFEST_ACCEPT;

const MAX_REDIRECTS: usize = 5;
/// Manifests, token responses and error bodies are small; refuse giant ones.
const DOCUMENT_LIMIT: usize = 4 << 20;

/// Where and how to reach one registry.
#[derive(Clone)]
pub struct Endpoint {
    /// The registry as named in the image reference (for messages).
    pub registry: String,
    /// `http(s)://host:port` actually contacted (a mirror, or registry-1.docker.io).
    pub base: Url,
    pub tls: Arc<rustls::ClientConfig>,
}

pub struct Credentials {
    pub username: String,
    pub password: String,
}

pub struct RegistryClient {
    endpoint: Endpoint,
    repository: String,
    credentials: Option<Credentials>,
    /// The Authorization header value that worked, reused for later requests.
    authorization: Option<String>,
}

/// A fetched manifest-endpoint document.
pub struct Document {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    pub digest: Digest,
}

impl RegistryClient {
    pub fn new(endpoint: Endpoint, repository: &str, credentials: Option<Credentials>) -> RegistryClient {
        RegistryClient { endpoint, repository: repository.to_string(), credentials, authorization: None }
    }

    /// GET /v2/<name>/manifests/<reference>.
    pub async fn manifest(&mut self, reference: &str) -> Result<Document, String> {
        let path = format!("/v2/{}/manifests/{reference}", self.repository);
        let what = format!("manifest {}:{reference}", self.repository);
        let (response, url) = self.get(&path, &[("accept", MANIFEST_ACCEPT.to_string())], &what).await?;
        let content_type = response.header("content-type").map(str::to_string);
        let bytes = response.bytes(&url, DOCUMENT_LIMIT).await.map_err(|e| e.to_string())?;
        Ok(Document { digest: Digest::of(&bytes), bytes, content_type })
    }

    /// Downloads blob `digest` into the store, verifying digest and size.
    pub async fn blob(&mut self, layout: &Layout, digest: &Digest, size: u64) -> Result<(), String> {
        let path = format!("/v2/{}/blobs/{digest}", self.repository);
        let what = format!("blob {digest} of {}", self.repository);
        let (mut response, url) = self.get(&path, &[], &what).await?;
        let mut writer = BlobWriter::create(layout).map_err(|e| format!("creating a download file: {e}"))?;
        loop {
            let chunk = match response.chunk(&url).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    writer.abandon();
                    return Err(format!("downloading {what}: {e}"));
                }
            };
            if let Err(e) = writer.write(&chunk) {
                writer.abandon();
                return Err(format!("writing {what}: {e}"));
            }
            if writer.written() > size {
                writer.abandon();
                return Err(format!("{what} is larger than the {size} bytes its manifest declares"));
            }
        }
        writer.commit(layout, digest, size).map_err(|e| match e {
            BlobError::Mismatch { actual, .. } => {
                format!("{what} failed verification: its content has digest {actual}")
            }
            other => format!("{what}: {other}"),
        })
    }

    /// GET with authentication and redirects; a non-2xx answer becomes an error that
    /// carries the registry's own message.
    async fn get(&mut self, path: &str, headers: &[(&str, String)], what: &str) -> Result<(Response, Url), String> {
        let mut authenticated = false;
        loop {
            let mut url = self.endpoint.base.join(path).map_err(|e| e.to_string())?;
            let mut response = None;
            for _ in 0..=MAX_REDIRECTS {
                let mut all: Vec<(&str, String)> = headers.to_vec();
                // Credentials go only to the registry itself, never to a redirect target.
                let same_host = url.host == self.endpoint.base.host && url.port == self.endpoint.base.port;
                if let (true, Some(auth)) = (same_host, &self.authorization) {
                    all.push(("authorization", auth.clone()));
                }
                let r = http::get(&url, &all, &self.endpoint.tls).await.map_err(|e| e.to_string())?;
                if r.status.is_redirection() {
                    let location = r.header("location").ok_or_else(|| {
                        format!("registry {} redirected {what} without a Location", self.endpoint.registry)
                    })?;
                    url = url.join(location)?;
                    continue;
                }
                response = Some(r);
                break;
            }
            let response = response.ok_or_else(|| {
                format!("registry {} redirected {what} more than {MAX_REDIRECTS} times", self.endpoint.registry)
            })?;
            if response.status == hyper::StatusCode::UNAUTHORIZED && !authenticated {
                let challenge = response.header("www-authenticate").unwrap_or("").to_string();
                self.authorization = Some(self.authenticate(&challenge, what).await?);
                authenticated = true;
                continue;
            }
            if !response.status.is_success() {
                let status = response.status;
                let body = response.bytes(&url, DOCUMENT_LIMIT).await.unwrap_or_default();
                return Err(self.describe_failure(status, &body, what));
            }
            return Ok((response, url));
        }
    }

    /// Answers a 401's WWW-Authenticate challenge with an Authorization header value.
    async fn authenticate(&self, challenge: &str, what: &str) -> Result<String, String> {
        let registry = &self.endpoint.registry;
        let (scheme, params) = parse_challenge(challenge);
        let basic = self.credentials.as_ref().map(|c| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password))
            )
        });
        match scheme.as_str() {
            "bearer" => {
                let realm = params
                    .get("realm")
                    .ok_or_else(|| format!("registry {registry} asked for a bearer token without naming a realm"))?;
                let mut token_url = Url::parse(realm).map_err(|e| format!("registry {registry}'s token realm: {e}"))?;
                let mut query = Vec::new();
                if let Some(service) = params.get("service") {
                    query.push(format!("service={}", encode_query(service)));
                }
                let scope =
                    params.get("scope").cloned().unwrap_or_else(|| format!("repository:{}:pull", self.repository));
                query.push(format!("scope={}", encode_query(&scope)));
                let sep = if token_url.path_and_query.contains('?') { '&' } else { '?' };
                token_url.path_and_query = format!("{}{sep}{}", token_url.path_and_query, query.join("&"));
                let mut headers = Vec::new();
                if let Some(basic) = &basic {
                    headers.push(("authorization", basic.clone()));
                }
                let response = http::get(&token_url, &headers, &self.endpoint.tls).await.map_err(|e| e.to_string())?;
                if !response.status.is_success() {
                    let status = response.status;
                    let hint = if basic.is_some() {
                        "the credentials from the pod's imagePullSecrets were refused"
                    } else {
                        "the registry needs credentials: add an imagePullSecret for it"
                    };
                    return Err(format!("token server {} answered {status} for {what}: {hint}", token_url.authority()));
                }
                let body = response.bytes(&token_url, DOCUMENT_LIMIT).await.map_err(|e| e.to_string())?;
                #[derive(serde::Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let token: Token = serde_json::from_slice(&body)
                    .map_err(|e| format!("token server {} sent an unreadable answer: {e}", token_url.authority()))?;
                let token = token
                    .token
                    .or(token.access_token)
                    .ok_or_else(|| format!("token server {} sent no token", token_url.authority()))?;
                Ok(format!("Bearer {token}"))
            }
            "basic" => basic.ok_or_else(|| {
                format!("registry {registry} needs a user name and password for {what}: add an imagePullSecret for it")
            }),
            _ => Err(format!("registry {registry} refused {what} with 401 and an unsupported challenge {challenge:?}")),
        }
    }

    fn describe_failure(&self, status: hyper::StatusCode, body: &[u8], what: &str) -> String {
        #[derive(serde::Deserialize)]
        struct Errors {
            #[serde(default)]
            errors: Vec<RegistryError>,
        }
        #[derive(serde::Deserialize)]
        struct RegistryError {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
        }
        let detail = serde_json::from_slice::<Errors>(body)
            .ok()
            .filter(|e| !e.errors.is_empty())
            .map(|e| e.errors.iter().map(|e| format!("{}: {}", e.code, e.message)).collect::<Vec<_>>().join("; "))
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string());
        let hint = match status {
            hyper::StatusCode::UNAUTHORIZED | hyper::StatusCode::FORBIDDEN if self.credentials.is_some() => {
                " (the credentials from imagePullSecrets were refused)"
            }
            hyper::StatusCode::UNAUTHORIZED | hyper::StatusCode::FORBIDDEN => {
                " (the registry needs credentials: add an imagePullSecret for it)"
            }
            hyper::StatusCode::NOT_FOUND => " (check the image name and tag)",
            _ => "",
        };
        format!("registry {} answered {status} for {what}: {detail}{hint}", self.endpoint.registry)
    }
}

/// Parses `Bearer realm="...",service="...",scope="..."` into a lowercase scheme and
/// its parameters.
pub fn parse_challenge(header: &str) -> (String, BTreeMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else { break };
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(key, value);
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    (scheme.to_ascii_lowercase(), params)
}

fn encode_query(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(scheme, "bearer");
        assert_eq!(params["realm"], "https://auth.docker.io/token");
        assert_eq!(params["service"], "registry.docker.io");
        assert_eq!(params["scope"], "repository:library/busybox:pull");
        let (scheme, params) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!((scheme.as_str(), params["realm"].as_str()), ("basic", "Registry Realm"));
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode_query("repository:a/b:pull,push"), "repository:a/b:pull%2Cpush");
        assert_eq!(encode_query("a b"), "a%20b");
    }
}
