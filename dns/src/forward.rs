//! Forwarding a query for a name outside the cluster domain to the upstream
//! resolvers, in order: over UDP (again over TCP when the answer is truncated),
//! or over TCP when the client asked over TCP. Each upstream gets its own fresh
//! socket and query id, so a late or forged answer cannot be mistaken for another
//! query's.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};

use crate::wire::{HEADER_LEN, is_truncated_response, message_id, set_message_id};

/// Largest UDP answer read from an upstream.
const MAX_UDP: usize = 65535;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// The first upstream's answer, with the client's id, or None when none answered
/// within `timeout` each.
pub async fn forward(
    query: &[u8],
    upstreams: &[SocketAddr],
    timeout: Duration,
    transport: Transport,
) -> Option<Vec<u8>> {
    let client_id = message_id(query)?;
    for &upstream in upstreams {
        let mut ours = query.to_vec();
        set_message_id(&mut ours, rand::random());
        let attempt = async {
            match transport {
                Transport::Udp => {
                    let answer = over_udp(&ours, upstream).await?;
                    if is_truncated_response(&answer) { over_tcp(&ours, upstream).await } else { Ok(answer) }
                }
                Transport::Tcp => over_tcp(&ours, upstream).await,
            }
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(mut answer)) => {
                set_message_id(&mut answer, client_id);
                return Some(answer);
            }
            Ok(Err(e)) => tracing::debug!(%upstream, error = %e, "upstream failed; trying the next"),
            Err(_) => tracing::debug!(%upstream, ?timeout, "upstream did not answer in time; trying the next"),
        }
    }
    None
}

fn is_answer_to(answer: &[u8], query: &[u8]) -> bool {
    answer.len() >= HEADER_LEN && message_id(answer) == message_id(query) && answer[2] & 0x80 != 0
}

async fn over_udp(query: &[u8], upstream: SocketAddr) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr =
        if upstream.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().map_err(std::io::Error::other)?;
    let socket = UdpSocket::bind(local).await?;
    // Connected: only the upstream's datagrams arrive, and an ICMP "port
    // unreachable" fails the read at once instead of waiting out the timeout.
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; MAX_UDP];
    loop {
        let n = socket.recv(&mut buf).await?;
        if is_answer_to(&buf[..n], query) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn over_tcp(query: &[u8], upstream: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    write_framed(&mut stream, query).await?;
    loop {
        let answer = read_framed(&mut stream).await?;
        if is_answer_to(&answer, query) {
            return Ok(answer);
        }
    }
}

/// Writes one message with its two-byte length (RFC 1035 §4.2.2).
pub async fn write_framed(stream: &mut (impl tokio::io::AsyncWrite + Unpin), message: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(message.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "DNS message over 65535 bytes"))?;
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    stream.write_all(&framed).await
}

/// Reads one length-prefixed message.
pub async fn read_framed(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u16().await?;
    let mut message = vec![0u8; usize::from(len)];
    stream.read_exact(&mut message).await?;
    Ok(message)
}
