//! Any text as a `grpc-timeout` header value: a parsed timeout is well formed, and the upstream
//! deadline taken from it never exceeds it.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes) {
        itnio_otp_grpc::fuzzing::grpc_timeout(text);
    }
});
