//! Attach a consumer to arbitrary header and data bytes and read until it returns.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shm_ring::fuzzing::consume_bytes(data);
});
