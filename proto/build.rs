//! Compiles the contracts with protox (pure Rust), so no system `protoc` is needed, and
//! generates canonical proto3 JSON (pbjson) for the JSON output and HTTP API.
use anyhow::Context as _;
use prost::Message as _;

const PROTOS: &[&str] = &[
    "orca/topology/v1/topology.proto",
    "orca/cluster/v1/agent.proto",
    "orca/scheduler/v1/scheduler.proto",
    "orca/operator/v1/operator.proto",
];

fn main() -> anyhow::Result<()> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["."]).context("compiling the .proto contracts")?;
    let descriptor_bytes = descriptors.encode_to_vec();
    tonic_prost_build::configure()
        .compile_fds(descriptors)
        .context("generating Rust code from the contracts")?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)
        .context("registering descriptors for JSON")?
        .build(&[".orca"])
        .context("generating JSON mappings")?;
    Ok(())
}
