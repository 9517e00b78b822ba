//! The fuzz harness (used by `fuzz/` and by the corpus replay test): attach a consumer to
//! arbitrary header and data bytes and read until it returns. It must never panic, hang or read
//! out of bounds, whatever the bytes say. The bytes do not change while it reads, so it also
//! exercises the trusted in-place calls (`as_slice_unchecked`, `recv_batch_unchecked`), whose
//! bounds come from the same checks.

use std::sync::Arc;
use std::time::Duration;

use shm_core::Region;

use crate::{mpsc, spsc, AttachOptions, RecvError};

/// Size of the region the input is copied into: a header with up to 64 producer slots and a
/// data area of up to 4 KiB (inputs claiming more are refused at attach).
pub const REGION: usize = 8192;

/// Copy `data` to the start of a fresh shared region, attach a consumer of the kind the header
/// claims (SPSC if it claims neither), and exercise every receive call until the ring reports
/// empty, closed or corrupt (at most a few thousand calls). Returns how many messages were read.
pub fn consume_bytes(data: &[u8]) -> usize {
    let Ok(region) = Region::anonymous(REGION) else { return 0 };
    let n = data.len().min(REGION);
    if region.write_at(0, &data[..n]).is_err() {
        return 0;
    }
    let region = Arc::new(region);
    let opts = AttachOptions { init_timeout: Duration::ZERO, allow_foreign: false };
    let selector = data.get(n.saturating_sub(1)).copied().unwrap_or(0);
    let kind = data.get(16..20).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(1);
    let touch = |m: &[u8]| {
        // Read every byte, so a sanitizer sees any out-of-bounds slice.
        std::hint::black_box(m.iter().fold(0u8, |a, &b| a ^ b));
    };
    let mut read = 0;
    let mut buf = Vec::new();
    let mut small = [0u8; 16];
    macro_rules! exercise {
        ($c:expr) => {{
            let mut c = $c;
            for step in 0..2000usize {
                let r = match (selector as usize + step) % 6 {
                    0 => c.try_recv(&mut buf).map(|_| touch(&buf)),
                    1 => c.try_recv_into(&mut small).map(|_| ()),
                    2 => c.recv().map(|g| {
                        touch(&g.to_vec());
                        let n = g.copy_to(&mut small);
                        touch(&small[..n]);
                        // SAFETY: nothing else maps this private anonymous region, and this
                        // thread does not write it while the slice lives.
                        touch(unsafe { g.as_slice_unchecked() });
                    }),
                    3 => c.recv_batch(4, |m| touch(m)).map(|_| ()),
                    // SAFETY: as above: no other writer of the region exists.
                    4 => unsafe { c.recv_batch_unchecked(4, |m| touch(m)) }.map(|_| ()),
                    _ => c.recv_pod::<u64>().map(|v| {
                        std::hint::black_box(v);
                    }),
                };
                match r {
                    Ok(()) => read += 1,
                    Err(RecvError::BufferTooSmall { .. } | RecvError::SizeMismatch { .. }) => {}
                    Err(_) => break,
                }
            }
            c.flush();
        }};
    }
    if kind == 2 {
        if let Ok(c) = mpsc::Consumer::open_with(region, &opts) {
            exercise!(c);
        }
    } else if let Ok(c) = spsc::Consumer::open_with(region, &opts) {
        exercise!(c);
    }
    read
}
