//! Any bytes as every ITNIO reply type (`{status, reason, data}` envelopes and the lenient field
//! decoders): decoding may fail, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    itnio_otp_grpc::fuzzing::upstream_reply(bytes);
});
