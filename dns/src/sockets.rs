//! The listening sockets, made by hand so options can be set before `bind`:
//! SO_REUSEADDR on TCP (a restarted server rebinds at once) and, when asked,
//! IP_FREEBIND (bind to an address no interface has yet).

use std::net::SocketAddr;
use std::os::fd::{AsRawFd as _, OwnedFd};

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, listen, setsockopt, socket, sockopt,
};
use tokio::net::{TcpListener, UdpSocket};

fn new_socket(address: SocketAddr, kind: SockType, free_bind: bool) -> std::io::Result<OwnedFd> {
    let family = if address.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let fd = socket(family, kind, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)?;
    if free_bind {
        setsockopt(&fd, sockopt::IpFreebind, &true)?;
    }
    if kind == SockType::Stream {
        setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(address))?;
    Ok(fd)
}

pub fn tcp_listener(address: SocketAddr, free_bind: bool) -> std::io::Result<TcpListener> {
    let fd = new_socket(address, SockType::Stream, free_bind)?;
    listen(&fd, Backlog::MAXCONN)?;
    TcpListener::from_std(std::net::TcpListener::from(fd))
}

pub fn udp_socket(address: SocketAddr, free_bind: bool) -> std::io::Result<UdpSocket> {
    let fd = new_socket(address, SockType::Datagram, free_bind)?;
    UdpSocket::from_std(std::net::UdpSocket::from(fd))
}
