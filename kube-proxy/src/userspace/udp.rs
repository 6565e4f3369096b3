//! Relays UDP datagrams on one Service address: each client gets a session, a socket
//! connected to the endpoint it was given, whose replies go back to the client from
//! the Service address. Sessions end after a while without traffic.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;

use super::backends::Backends;

const SESSION_IDLE: Duration = Duration::from_secs(60);

type Sessions = Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>>;

pub async fn serve(socket: UdpSocket, backends: Arc<Backends>) {
    let socket = Arc::new(socket);
    let sessions: Sessions = Arc::default();
    let mut buffer = vec![0u8; 65_536];
    loop {
        let (len, client) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(e) => {
                tracing::debug!(error = %e, "receiving a datagram failed");
                continue;
            }
        };
        let existing = sessions.lock().unwrap_or_else(|p| p.into_inner()).get(&client).cloned();
        let upstream = match existing {
            Some(upstream) => upstream,
            None => match open(&socket, &sessions, client, &backends).await {
                Some(upstream) => upstream,
                None => continue,
            },
        };
        if let Err(e) = upstream.send(&buffer[..len]).await {
            tracing::debug!(%client, error = %e, "forwarding a datagram failed");
        }
    }
}

async fn open(
    socket: &Arc<UdpSocket>,
    sessions: &Sessions,
    client: SocketAddr,
    backends: &Backends,
) -> Option<Arc<UdpSocket>> {
    let endpoint = backends.pick(client.ip())?;
    let upstream = UdpSocket::bind("0.0.0.0:0").await.ok()?;
    upstream.connect(endpoint).await.ok()?;
    let upstream = Arc::new(upstream);
    sessions.lock().unwrap_or_else(|p| p.into_inner()).insert(client, upstream.clone());
    let (socket, sessions, reader) = (socket.clone(), sessions.clone(), upstream.clone());
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 65_536];
        while let Ok(Ok(len)) = tokio::time::timeout(SESSION_IDLE, reader.recv(&mut buffer)).await {
            let _ = socket.send_to(&buffer[..len], client).await;
        }
        sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(&client);
    });
    Some(upstream)
}
