//! A minimal HTTP/1.1 client for registry traffic: one connection per request (a pull
//! makes few, large requests), plain TCP or rustls, GET only, redirects left to the
//! caller so it can drop credentials when the host changes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, pki_types::ServerName};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a response (headers, or the next chunk of a body) may keep us waiting.
pub const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// `scheme://host[:port]/path?query`, the only URL shapes registries use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub path_and_query: String,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, String> {
        let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("URL {text:?} is not http:// or https://"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
        let (host, port) = split_host_port(authority, if https { 443 } else { 80 })
            .ok_or_else(|| format!("URL {text:?} has a bad host or port"))?;
        let path_and_query = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
        Ok(Url { https, host, port, path_and_query })
    }

    /// Resolves a Location header against this URL.
    pub fn join(&self, location: &str) -> Result<Url, String> {
        if location.starts_with("http://") || location.starts_with("https://") {
            Url::parse(location)
        } else if location.starts_with('/') {
            Ok(Url { path_and_query: location.to_string(), ..self.clone() })
        } else {
            let base = self.path_and_query.split('?').next().unwrap_or("/");
            let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
            Ok(Url { path_and_query: format!("{dir}{location}"), ..self.clone() })
        }
    }

    /// `host:port` as it goes in the Host header (default ports left out).
    pub fn authority(&self) -> String {
        let default = if self.https { 443 } else { 80 };
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == default { host } else { format!("{host}:{}", self.port) }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", if self.https { "https" } else { "http" }, self.authority(), self.path_and_query)
    }
}

/// Splits `host[:port]` (IPv6 in brackets).
pub fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => Some((host.to_string(), port.parse().ok()?)),
        Some(_) => None,
        None if !authority.is_empty() => Some((authority.to_string(), default_port)),
        None => None,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connecting to {0}: {1}")]
    Connect(String, String),
    #[error("TLS handshake with {0}: {1}")]
    Tls(String, String),
    #[error("request to {0}: {1}")]
    Request(String, String),
    #[error("{0} did not answer within {1:?}")]
    Timeout(String, Duration),
}

pub struct Response {
    pub status: hyper::StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Incoming,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The next chunk of the body, None at its end.
    pub async fn chunk(&mut self, url: &Url) -> Result<Option<Bytes>, HttpError> {
        loop {
            let frame = tokio::time::timeout(READ_TIMEOUT, self.body.frame())
                .await
                .map_err(|_| HttpError::Timeout(url.to_string(), READ_TIMEOUT))?;
            match frame {
                None => return Ok(None),
                Some(Err(e)) => return Err(HttpError::Request(url.to_string(), e.to_string())),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// The whole body, refusing more than `limit` bytes (manifests, tokens, errors).
    pub async fn bytes(mut self, url: &Url, limit: usize) -> Result<Vec<u8>, HttpError> {
        let mut out = Vec::new();
        while let Some(chunk) = self.chunk(url).await? {
            if out.len() + chunk.len() > limit {
                return Err(HttpError::Request(url.to_string(), format!("response is larger than {limit} bytes")));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

/// Sends one GET. `tls` is used for https URLs.
pub async fn get(
    url: &Url,
    headers: &[(&str, String)],
    tls: &Arc<rustls::ClientConfig>,
) -> Result<Response, HttpError> {
    let shown = url.to_string();
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((url.host.as_str(), url.port)))
        .await
        .map_err(|_| HttpError::Timeout(shown.clone(), CONNECT_TIMEOUT))?
        .map_err(|e| HttpError::Connect(url.authority(), e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let mut builder = hyper::Request::get(url.path_and_query.as_str()).header("host", url.authority());
    builder = builder.header("user-agent", concat!("rudder-kubelet/", env!("CARGO_PKG_VERSION")));
    for (name, value) in headers {
        builder = builder.header(*name, value.as_str());
    }
    let request = builder.body(Empty::<Bytes>::new()).map_err(|e| HttpError::Request(shown.clone(), e.to_string()))?;
    let response = if url.https {
        let name = ServerName::try_from(url.host.clone())
            .map_err(|e| HttpError::Tls(url.authority(), format!("bad server name: {e}")))?;
        let stream =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp))
                .await
                .map_err(|_| HttpError::Timeout(shown.clone(), CONNECT_TIMEOUT))?
                .map_err(|e| HttpError::Tls(url.authority(), e.to_string()))?;
        send(TokioIo::new(stream), request, &shown).await?
    } else {
        send(TokioIo::new(tcp), request, &shown).await?
    };
    let (parts, body) = response.into_parts();
    Ok(Response { status: parts.status, headers: parts.headers, body })
}

async fn send<S>(
    io: S,
    request: hyper::Request<Empty<Bytes>>,
    shown: &str,
) -> Result<hyper::Response<Incoming>, HttpError>
where
    S: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| HttpError::Request(shown.to_string(), e.to_string()))?;
    // The connection task ends when the response body has been read or dropped.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    tokio::time::timeout(READ_TIMEOUT, sender.send_request(request))
        .await
        .map_err(|_| HttpError::Timeout(shown.to_string(), READ_TIMEOUT))?
        .map_err(|e| HttpError::Request(shown.to_string(), e.to_string()))
}

/// A rustls client config trusting the system's roots plus, when given, the PEM
/// certificates in `ca_file`.
pub fn tls_config(ca_file: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let certs =
            CertificateDer::pem_file_iter(path).map_err(|e| format!("reading CA file {}: {e}", path.display()))?;
        let mut added = 0;
        for cert in certs {
            let cert = cert.map_err(|e| format!("CA file {}: {e}", path.display()))?;
            roots.add(cert).map_err(|e| format!("CA file {}: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("CA file {} holds no PEM certificate", path.display()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_join() {
        let u = Url::parse("https://auth.docker.io/token?service=x").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path_and_query.as_str()),
            (true, "auth.docker.io", 443, "/token?service=x")
        );
        let u = Url::parse("http://127.0.0.1:5000").unwrap();
        assert_eq!((u.port, u.path_and_query.as_str()), (5000, "/"));
        assert_eq!(u.join("/v2/x").unwrap().to_string(), "http://127.0.0.1:5000/v2/x");
        assert_eq!(u.join("https://cdn.example/b").unwrap().host, "cdn.example");
        assert!(Url::parse("ftp://x").is_err());
        assert_eq!(split_host_port("[::1]:5000", 80), Some(("::1".into(), 5000)));
        assert_eq!(split_host_port("h", 443), Some(("h".into(), 443)));
        assert_eq!(split_host_port("h:x", 443), None);
    }
}
