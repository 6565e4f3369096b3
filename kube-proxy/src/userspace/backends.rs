//! The endpoints of one Service port as the userspace forwarders pick them: round
//! robin, or the client's earlier endpoint under ClientIP affinity.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddrV4};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    endpoints: Vec<SocketAddrV4>,
    next: usize,
    affinity: Option<Duration>,
    /// Client -> (endpoint, last use).
    sticky: HashMap<IpAddr, (SocketAddrV4, Instant)>,
}

#[derive(Default)]
pub struct Backends {
    state: Mutex<State>,
}

impl Backends {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn set(&self, endpoints: &[SocketAddrV4], affinity: Option<Duration>) {
        let mut state = self.lock();
        state.endpoints = endpoints.to_vec();
        state.affinity = affinity;
        if affinity.is_none() {
            state.sticky.clear();
        }
        let current = state.endpoints.clone();
        state.sticky.retain(|_, (endpoint, _)| current.contains(endpoint));
    }

    /// The endpoint for a new connection from `client`; None without endpoints.
    pub fn pick(&self, client: IpAddr) -> Option<SocketAddrV4> {
        let mut state = self.lock();
        if state.endpoints.is_empty() {
            return None;
        }
        let now = Instant::now();
        if let Some(timeout) = state.affinity {
            state.sticky.retain(|_, (_, used)| now.duration_since(*used) < timeout);
            if let Some((endpoint, used)) = state.sticky.get_mut(&client) {
                *used = now;
                return Some(*endpoint);
            }
        }
        let index = state.next % state.endpoints.len();
        state.next = state.next.wrapping_add(1);
        let endpoint = state.endpoints[index];
        if state.affinity.is_some() {
            state.sticky.insert(client, (endpoint, now));
        }
        Some(endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_and_affinity() {
        let backends = Backends::default();
        let a: SocketAddrV4 = "10.244.0.2:80".parse().unwrap();
        let b: SocketAddrV4 = "10.244.0.3:80".parse().unwrap();
        let client: IpAddr = "10.244.0.9".parse().unwrap();
        assert_eq!(backends.pick(client), None);
        backends.set(&[a, b], None);
        let picks: Vec<_> = (0..4).filter_map(|_| backends.pick(client)).collect();
        assert_eq!(picks, [a, b, a, b]);
        backends.set(&[a, b], Some(Duration::from_secs(60)));
        let first = backends.pick(client).unwrap();
        assert!((0..5).all(|_| backends.pick(client) == Some(first)));
        // The sticky endpoint leaving releases the client.
        let other = if first == a { b } else { a };
        backends.set(&[other], Some(Duration::from_secs(60)));
        assert_eq!(backends.pick(client), Some(other));
    }
}
