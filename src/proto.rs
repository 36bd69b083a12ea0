//! Code generated from `proto/itnio/otp/v1` at build time, plus the descriptor set for reflection.

#![allow(clippy::all, missing_docs)]

/// Package `itnio.otp.v1`.
pub mod v1 {
    tonic::include_proto!("itnio.otp.v1");
}

/// The encoded `FileDescriptorSet` of our protos, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("itnio_otp_descriptor");

/// `google/rpc/status.proto` and `error_details.proto` (with the `google/protobuf` files they
/// import), for reflection, so grpcurl and other reflection clients decode error details.
///
/// tonic-types ships them as `status.proto` and `error_details.proto`; reflection clients look
/// files up by their canonical googleapis paths, so they are renamed here.
pub fn google_rpc_descriptor_set() -> Result<prost_types::FileDescriptorSet, prost::DecodeError> {
    let mut set = <prost_types::FileDescriptorSet as prost::Message>::decode(
        tonic_types::pb::FILE_DESCRIPTOR_SET,
    )?;
    for file in &mut set.file {
        if file.package() == "google.rpc" && !file.name().starts_with("google/rpc/") {
            file.name = Some(format!("google/rpc/{}", file.name()));
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_rpc_files_get_their_googleapis_paths_and_the_others_keep_theirs() {
        let set = google_rpc_descriptor_set().expect("tonic-types' descriptor set decodes");
        let names = |package: &str| -> Vec<String> {
            let mut names: Vec<String> = set
                .file
                .iter()
                .filter(|file| file.package() == package)
                .map(|file| file.name().to_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(
            names("google.rpc"),
            ["google/rpc/error_details.proto", "google/rpc/status.proto"]
        );
        let imported = names("google.protobuf");
        assert!(
            !imported.is_empty(),
            "the google/protobuf imports are there"
        );
        assert!(
            imported
                .iter()
                .all(|name| name.starts_with("google/protobuf/")),
            "{imported:?}"
        );
    }
}
