//! Compiles `proto/` into Rust with the pure-Rust `protox` compiler (no `protoc` needed) and
//! writes the descriptor set that server reflection serves.

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "proto/itnio/otp/v1/common.proto",
    "proto/itnio/otp/v1/apps.proto",
    "proto/itnio/otp/v1/templates.proto",
    "proto/itnio/otp/v1/flows.proto",
    "proto/itnio/otp/v1/verifications.proto",
    "proto/itnio/otp/v1/records.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    // `compile_fds` does not write the descriptor set itself, so reflection's copy is written here.
    std::fs::write(
        out_dir.join("itnio_otp_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
