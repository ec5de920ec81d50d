//! Builds the kernel programs (`orca-ebpf`) for the BPF target with the nightly toolchain and
//! bpf-linker (installed by `cargo xtask setup`). Set `AYA_BUILD_SKIP=1` to skip it (for
//! `cargo check` without the eBPF toolchain); the agent then runs in /proc mode only.
use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    println!("cargo::rustc-check-cfg=cfg(orca_ebpf_skipped)");
    let skip = std::env::var("AYA_BUILD_SKIP")
        .map(|v| v == "1" || v.eq_ignore_ascii_case("true"))
        .unwrap_or(false);
    if skip {
        println!("cargo:rustc-cfg=orca_ebpf_skipped");
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ebpf/probes");
    let root = root.to_str().context("non-UTF-8 path")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "orca-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
    .context(
        "building the eBPF programs failed: run `cargo xtask setup` to install the nightly \
         rust-src component and bpf-linker, or set AYA_BUILD_SKIP=1 to build without them",
    )
}
