//! The API: every kind as a protobuf message (generated from `api/**/*.proto`), the
//! gRPC services, and what gives them their Kubernetes form: YAML/JSON encoding with
//! strict decoding, quantities, int-or-string, label and field selectors, and
//! Kubernetes' validation rules for names and labels.
//!
//! This crate is pure data and rules: it performs no I/O and holds no state.

pub mod meta {
    pub mod v1 {
        tonic::include_proto!("meta.v1");
    }
}

pub mod core {
    pub mod v1 {
        tonic::include_proto!("core.v1");
    }
}

pub mod apps {
    pub mod v1 {
        tonic::include_proto!("apps.v1");
    }
}

pub mod batch {
    pub mod v1 {
        tonic::include_proto!("batch.v1");
    }
}

pub mod coordination {
    pub mod v1 {
        tonic::include_proto!("coordination.v1");
    }
}

pub mod apiserver {
    pub mod v1 {
        tonic::include_proto!("apiserver.v1");
    }
}

/// Container logs and exec (served by the apiserver and by each kubelet).
pub mod streaming {
    pub mod v1 {
        tonic::include_proto!("streaming.v1");
    }
}

/// The descriptor set of every message above, for descriptor-driven encoding.
pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/api_descriptor.bin"));

pub mod resource;

pub use resource::{KINDS, KindInfo, Resource};
pub mod codec;
pub mod cron;
pub mod field_error;
pub mod fields;
pub mod intorstring;
pub mod labels;
pub mod quantity;
pub mod status;
pub mod time;
pub mod validation;

pub use codec::{DecodeError, DynamicObject, FieldError};
pub use status::{ApiError, Reason};
