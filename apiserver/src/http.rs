//! The operations endpoint: /healthz (the process serves), /readyz (etcd answers and
//! every watch cache has loaded) and /metrics (Prometheus text).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::storage::Etcd;
use crate::watchcache::WatchCache;

pub struct Health {
    pub etcd: Etcd,
    pub caches: Vec<Arc<WatchCache>>,
    pub metrics: Metrics,
    /// Set once the system namespaces exist.
    pub bootstrapped: Arc<std::sync::atomic::AtomicBool>,
}

impl Health {
    async fn ready(&self) -> Result<(), String> {
        let not_loaded: Vec<&str> = self.caches.iter().filter(|c| !c.is_ready()).map(|c| c.info().plural).collect();
        if !not_loaded.is_empty() {
            return Err(format!("watch caches still loading: {}", not_loaded.join(", ")));
        }
        if !self.bootstrapped.load(std::sync::atomic::Ordering::Acquire) {
            return Err("creating the system namespaces".to_string());
        }
        match tokio::time::timeout(Duration::from_secs(2), self.etcd.current_revision()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("etcd: {e}")),
            Err(_) => Err("etcd did not answer within 2s".to_string()),
        }
    }

    async fn respond(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (status, body) = match request.uri().path() {
            "/healthz" | "/livez" => (StatusCode::OK, "ok".to_string()),
            "/readyz" => match self.ready().await {
                Ok(()) => (StatusCode::OK, "ok".to_string()),
                Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
            },
            "/metrics" => (StatusCode::OK, self.metrics.encode()),
            _ => (StatusCode::NOT_FOUND, "not found: try /healthz, /readyz or /metrics".to_string()),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
    }
}

/// Serves until `shutdown` turns true.
pub async fn serve(listener: TcpListener, health: Arc<Health>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (stream, _): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    continue;
                }
            },
            _ = shutdown.wait_for(|down| *down) => return,
        };
        let health = health.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let health = health.clone();
                async move { Ok::<_, Infallible>(health.respond(request).await) }
            });
            if let Err(e) =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await
            {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
}
