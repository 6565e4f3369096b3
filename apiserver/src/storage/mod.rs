//! Storage: objects in etcd under `<prefix>/<resource>/<namespace>/<name>`, protobuf
//! values, and the etcd revision of each object's last change as its resourceVersion.

pub mod etcd;
pub mod keys;

pub use etcd::{Etcd, Expect, StorageError, Stored, Write, WriteResult};
