//! Accepts TCP connections on one Service address and splices each to an endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::backends::Backends;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn serve(listener: TcpListener, backends: Arc<Backends>) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let backends = backends.clone();
        tokio::spawn(async move { forward(client, peer, &backends).await });
    }
}

async fn forward(mut client: TcpStream, peer: SocketAddr, backends: &Backends) {
    let _ = client.set_nodelay(true);
    // Try a few endpoints: one that just went away should not fail the client.
    for _ in 0..3 {
        let Some(endpoint) = backends.pick(peer.ip()) else { break };
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(endpoint)).await {
            Ok(Ok(mut upstream)) => {
                let _ = upstream.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                return;
            }
            Ok(Err(e)) => tracing::debug!(%endpoint, error = %e, "connecting to an endpoint failed"),
            Err(_) => tracing::debug!(%endpoint, "connecting to an endpoint timed out"),
        }
    }
    // No endpoint: reset at once (linger 0) rather than leave the client waiting.
    let _ = client.set_zero_linger();
}
