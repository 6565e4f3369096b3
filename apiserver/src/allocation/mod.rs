//! Values allocated to objects from a configured range: Service ClusterIPs and
//! NodePorts.
//!
//! Each allocated value is a key in etcd (`<prefix>/ranges/<range>/<value>`) created in
//! the same transaction as the object that holds it, and deleted with it. Two concurrent
//! creates can therefore never get the same value (the second transaction fails its
//! absence check and picks again), allocations survive restarts, and several apiservers
//! can share a range. The in-memory set of used values is only a hint for picking.

pub mod range;

use bytes::Bytes;

pub use range::{PortRange, RangeAllocator, ServiceCidr};

/// Keys to create and delete in an object's write transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reservations {
    pub reserve: Vec<(String, Bytes)>,
    pub release: Vec<String>,
}

impl Reservations {
    pub fn is_empty(&self) -> bool {
        self.reserve.is_empty() && self.release.is_empty()
    }

    pub fn extend(&mut self, other: Reservations) {
        self.reserve.extend(other.reserve);
        self.release.extend(other.release);
    }
}
