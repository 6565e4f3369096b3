//! Compiles the API's .proto files with prost/tonic and keeps their descriptor set, from
//! which the YAML/JSON codec learns every message's fields and JSON names.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "api/meta/v1.proto",
    "api/core/v1.proto",
    "api/apps/v1.proto",
    "api/batch/v1.proto",
    "api/coordination/v1.proto",
    "api/apiserver/v1.proto",
    "api/streaming/v1.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("api_descriptor.bin"))
        // Maps encode in key order, so equal objects encode to equal bytes.
        .btree_map(".")
        // Object payloads and Secret data are passed around without copying.
        .bytes(".")
        .compile_protos(PROTOS, &["api"])?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
