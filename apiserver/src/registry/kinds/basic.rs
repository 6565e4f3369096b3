//! The strategy of kinds with no rules beyond the shared metadata ones.

use proto::Resource;

use crate::registry::{Shape, Strategy};

pub struct Basic;

impl<K: Resource + Shape> Strategy<K> for Basic {}
