//! Compiles the protocol definitions in `proto/` with a vendored protoc, so no system protoc
//! is needed on a fresh machine.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment meanwhile.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = ["social.proto", "coordinator.proto", "internal.proto"].map(|f| root.join("tinysns").join(f));
    tonic_prost_build::configure().compile_protos(&files, std::slice::from_ref(&root))?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
