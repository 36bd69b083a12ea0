//! The first byte picks one of the gRPC request messages, the rest is its protobuf encoding:
//! an accepted request yields a clean, bounded body with well-shaped ids, a refused one names
//! each bad field once (`itnio_otp_grpc::fuzzing::request_validation`).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    itnio_otp_grpc::fuzzing::request_validation(bytes);
});
