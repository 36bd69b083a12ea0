//! Code generated from `proto/itnio/otp/v1` at build time, plus the descriptor set for reflection.

#![allow(clippy::all, missing_docs)]

/// Package `itnio.otp.v1`.
pub mod v1 {
    tonic::include_proto!("itnio.otp.v1");
}

/// The encoded `FileDescriptorSet` of our protos, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("itnio_otp_descriptor");
