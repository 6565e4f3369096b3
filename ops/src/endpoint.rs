//! The operations endpoint: `/healthz` (and `/livez`) answer while the process
//! serves, `/readyz` while the daemon's `Probe` says it can do its job, `/metrics`
//! in Prometheus' text format.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What a daemon tells the endpoint.
#[async_trait::async_trait]
pub trait Probe: Send + Sync + 'static {
    /// Ok when the daemon can do its job; otherwise why not, for a person to read.
    async fn ready(&self) -> Result<(), String>;
    /// The daemon's metrics in Prometheus' text format.
    fn metrics(&self) -> String;
    /// Ok(body) while the process is healthy; Err(why) makes /healthz and /livez
    /// answer 503 (a daemon whose work has silently stalled). Healthy by default.
    fn health(&self) -> Result<String, String> {
        Ok("ok".to_string())
    }
}

/// Serves until `shutdown` resolves.
pub async fn serve(listener: TcpListener, probe: Arc<dyn Probe>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let probe = probe.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let probe = probe.clone();
                async move { Ok::<_, Infallible>(respond(probe.as_ref(), &request).await) }
            });
            if let Err(e) =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await
            {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
}

async fn respond(probe: &dyn Probe, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = match request.uri().path() {
        "/healthz" | "/livez" => match probe.health() {
            Ok(body) => (StatusCode::OK, body),
            Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: {why}")),
        },
        "/readyz" => match probe.ready().await {
            Ok(()) => (StatusCode::OK, "ok".to_string()),
            Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
        },
        "/metrics" => (StatusCode::OK, probe.metrics()),
        _ => (StatusCode::NOT_FOUND, "not found: try /healthz, /readyz or /metrics".to_string()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Result<(), String>);

    #[async_trait::async_trait]
    impl Probe for Fixed {
        async fn ready(&self) -> Result<(), String> {
            self.0.clone()
        }
        fn metrics(&self) -> String {
            "up 1\n".to_string()
        }
    }

    async fn get(probe: Fixed, path: &str) -> (u16, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, Arc::new(probe), async {
            let _ = stopped.await;
        }));
        let answer = testkit::http_get(&address, path).await.unwrap();
        let _ = stop.send(());
        server.await.unwrap();
        answer
    }

    #[tokio::test]
    async fn each_path_answers_as_operators_expect() {
        assert_eq!(get(Fixed(Ok(())), "/healthz").await, (200, "ok".to_string()));
        assert_eq!(get(Fixed(Ok(())), "/readyz").await, (200, "ok".to_string()));
        let (code, body) = get(Fixed(Err("no lease".into())), "/readyz").await;
        assert_eq!((code, body.as_str()), (503, "not ready: no lease"));
        assert_eq!(get(Fixed(Ok(())), "/metrics").await, (200, "up 1\n".to_string()));
        assert_eq!(get(Fixed(Ok(())), "/nope").await.0, 404);
    }
}
