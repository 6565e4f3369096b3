//! The node-local image store: OCI image layout (blobs by digest, layers unpacked once
//! and shared), pulls from registries, and imports of image archives.
