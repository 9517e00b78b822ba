//! Attach a producer to arbitrary header and data bytes and send while a hostile consumer
//! (the rest of the input) writes the header and records.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shm_ring::fuzzing::produce_bytes(data);
});
