//! Coalesced writes on a gRPC connection.
//!
//! HTTP/2 in hyper writes each unary response in two or three pieces (HEADERS and
//! DATA, then the trailers), each in its own `writev` as soon as the connection task
//! runs, because the task that produces the response and the connection task take
//! turns. On loopback every write also pays the receiver's TCP processing, so under
//! load these small writes cost more CPU than the request itself.
//!
//! `Coalesced` buffers what the connection writes, and on a flush first lets the other
//! ready tasks run once (a self-wake, which puts the connection task at the back of the
//! run queue), then writes everything buffered by then in one system call. Nothing is
//! held back longer than one turn of the scheduler, and a shutdown writes what is
//! buffered first.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Above this many buffered bytes a write waits until the buffer is written out.
const MAX_BUFFERED: usize = 256 * 1024;

pub struct Coalesced<T> {
    inner: T,
    buffer: Vec<u8>,
    /// Bytes of `buffer` already written to `inner`.
    written: usize,
    /// Whether the pending flush has already let the other tasks run once.
    yielded: bool,
}

impl<T> Coalesced<T> {
    pub fn new(inner: T) -> Self {
        Coalesced { inner, buffer: Vec::new(), written: 0, yielded: false }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncWrite + Unpin> Coalesced<T> {
    /// Writes out everything buffered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buffer.len() {
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buffer[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buffer.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Room for more bytes, writing the buffer out first when it is full.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.buffer.len() >= MAX_BUFFERED {
            std::task::ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesced<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesced<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_room(cx))?;
        let n = data.len().min(MAX_BUFFERED.saturating_sub(self.buffer.len()).max(1));
        self.buffer.extend_from_slice(&data[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        slices: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_room(cx))?;
        let mut total = 0;
        for slice in slices {
            let room = MAX_BUFFERED.saturating_sub(self.buffer.len());
            if room == 0 && total > 0 {
                break;
            }
            let n = slice.len().min(room.max(1));
            self.buffer.extend_from_slice(&slice[..n]);
            total += n;
            if n < slice.len() {
                break;
            }
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.buffer.is_empty() {
            self.yielded = false;
            return Pin::new(&mut self.inner).poll_flush(cx);
        }
        if !self.yielded {
            // Let the tasks that are about to add to this write run first.
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        std::task::ready!(self.poll_drain(cx))?;
        self.yielded = false;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Coalesced<tokio::net::TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn writes_arrive_whole_and_in_order_after_a_flush() {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let mut writer = Coalesced::new(client);
        let mut expected = Vec::new();
        for i in 0..1000u32 {
            let chunk = format!("chunk {i};");
            writer.write_all(chunk.as_bytes()).await.expect("write");
            expected.extend_from_slice(chunk.as_bytes());
        }
        // Nothing has gone to the peer before the flush: that is the coalescing.
        assert_eq!(writer.buffer.len(), expected.len());
        writer.flush().await.expect("flush");
        assert!(writer.buffer.is_empty());
        let mut received = vec![0u8; expected.len()];
        server.read_exact(&mut received).await.expect("read");
        assert_eq!(received, expected);
    }

    #[tokio::test]
    async fn more_than_the_buffer_holds_is_written_out_in_full() {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let data: Vec<u8> = (0..(3 * MAX_BUFFERED + 17)).map(|i| (i % 251) as u8).collect();
        let reader = tokio::spawn(async move {
            let mut received = Vec::new();
            server.read_to_end(&mut received).await.map(|_| received)
        });
        let mut writer = Coalesced::new(client);
        writer.write_all(&data).await.expect("write");
        writer.shutdown().await.expect("shutdown");
        drop(writer);
        let received = reader.await.expect("reader task").expect("read");
        assert_eq!(received, data);
    }
}
