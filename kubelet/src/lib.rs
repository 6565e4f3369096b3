//! The kubelet: the node agent. It registers its Node, runs the pods bound to it as
//! real Linux containers through its native runtime, and reports their status. It
//! talks to the cluster only through the apiserver.

pub mod images;
