fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/internal.proto");
    tonic_prost_build::configure()
        .bytes(".")
        .compile_protos(&["proto/internal.proto"], &["proto"])?;
    Ok(())
}
