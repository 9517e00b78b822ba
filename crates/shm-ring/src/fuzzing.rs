//! The fuzz harness (used by `fuzz/` and by the corpus replay test): attach a consumer to
//! arbitrary header and data bytes and read until it returns. It must never panic, hang or read
//! out of bounds, whatever the bytes say. The bytes do not change while it reads, so it also
//! exercises the trusted in-place calls (`as_slice_unchecked`, `recv_batch_unchecked`), whose
//! bounds come from the same checks.

use std::sync::Arc;
use std::time::Duration;

use shm_core::Region;

use crate::{broadcast, mpsc, spsc, AttachOptions, Consumer, Producer, RingKind, TryRecvError};

/// Size of the region the input is copied into: a header with up to 64 producer slots and a
/// data area of up to 4 KiB (inputs claiming more are refused at attach).
pub const REGION: usize = 8192;

/// Copy `data` to the start of a fresh shared region, attach a consumer of the kind the header
/// claims (SPSC if it claims none; a broadcast subscriber starts with a history of the last
/// byte's worth of messages, so that it reads what the image holds), and exercise every receive
/// call until the ring reports empty, closed or corrupt (at most a few thousand calls). Returns
/// how many messages were read.
pub fn consume_bytes(data: &[u8]) -> usize {
    let Ok(region) = Region::anonymous(REGION) else { return 0 };
    let n = data.len().min(REGION);
    if region.write_at(0, &data[..n]).is_err() {
        return 0;
    }
    let region = Arc::new(region);
    let opts = AttachOptions::new().init_timeout(Duration::ZERO);
    let selector = data.get(n.saturating_sub(1)).copied().unwrap_or(0);
    let kind = data.get(16..20).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(1);
    match kind {
        2 => mpsc::Consumer::open_with(region, &opts).map_or(0, |c| read_all(c, selector)),
        3 => {
            let opts = opts.history(u64::from(selector));
            broadcast::Subscriber::open_with(region, &opts).map_or(0, |c| read_all(c, selector))
        }
        _ => spsc::Consumer::open_with(region, &opts).map_or(0, |c| read_all(c, selector)),
    }
}

/// Read every byte, so a sanitizer sees any out-of-bounds slice.
fn touch(m: &[u8]) {
    std::hint::black_box(m.iter().fold(0u8, |a, &b| a ^ b));
}

/// Every receive path of `c`, up to 2000 calls or the first error other than a size mismatch;
/// returns how many calls read something.
fn read_all<K: RingKind>(mut c: Consumer<K>, selector: u8) -> usize {
    let (mut read, mut buf, mut small) = (0, Vec::new(), [0u8; 16]);
    for step in 0..2000usize {
        let r = match (selector as usize + step) % 6 {
            0 => c.try_recv(&mut buf).map(|_| touch(&buf)),
            1 => c.try_recv_into(&mut small).map(|_| ()),
            2 => c.try_read().map(|g| {
                touch(&g.to_vec());
                let n = g.copy_to(&mut small);
                touch(&small[..n]);
                // SAFETY: nothing else maps this private anonymous region, and this thread does
                // not write it while the slice lives.
                touch(unsafe { g.as_slice_unchecked() });
            }),
            3 => c.recv_batch(4, touch).map(|_| ()),
            // SAFETY: as above: no other writer of the region exists.
            4 => unsafe { c.recv_batch_unchecked(4, touch) }.map(|_| ()),
            _ => c.try_recv_pod::<u64>().map(|v| {
                std::hint::black_box(v);
            }),
        };
        match r {
            Ok(()) => read += 1,
            Err(TryRecvError::BufferTooSmall { .. } | TryRecvError::SizeMismatch { .. }) => {}
            Err(_) => break,
        }
    }
    c.flush();
    read
}

/// Bytes of the input that form the region image in [`produce_bytes`]; the rest is a script of
/// hostile writes.
pub const PRODUCER_IMAGE: usize = 2048;

/// The producer-side harness: copy the first [`PRODUCER_IMAGE`] bytes of `data` to a fresh
/// region, attach a producer of the kind the header claims, and alternate send calls with the
/// writes of a hostile consumer (or broadcast subscriber) taken from the rest of the input (each 10 bytes: a header or
/// data offset (u16) and a u64 to store there). Every call must return — `try_*` at once, timed
/// calls within their timeout — and never panic or write out of bounds. Returns how many sends
/// succeeded.
pub fn produce_bytes(data: &[u8]) -> usize {
    let Ok(region) = Region::anonymous(REGION) else { return 0 };
    let n = data.len().min(PRODUCER_IMAGE);
    if region.write_at(0, &data[..n]).is_err() {
        return 0;
    }
    let region = Arc::new(region);
    let opts = AttachOptions::new().init_timeout(Duration::ZERO);
    let kind = data.get(16..20).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(1);
    let script: Vec<(usize, u64)> = data
        .get(PRODUCER_IMAGE..)
        .unwrap_or(&[])
        .chunks_exact(10)
        .map(|c| {
            let off = u16::from_le_bytes([c[0], c[1]]) as usize & !7;
            (off % REGION, u64::from_le_bytes(c[2..10].try_into().unwrap_or([0; 8])))
        })
        .collect();
    match kind {
        2 => mpsc::Producer::open_with(region.clone(), &opts).map_or(0, |p| send_all(p, &region, &script)),
        3 => {
            broadcast::Producer::open_with(region.clone(), &opts).map_or(0, |p| send_all(p, &region, &script))
        }
        _ => spsc::Producer::open_with(region.clone(), &opts).map_or(0, |p| send_all(p, &region, &script)),
    }
}

/// Every send path of `p`, 200 calls, each after one write of the hostile `script` into
/// `region`; returns how many succeeded.
fn send_all<K: RingKind>(mut p: Producer<K>, region: &Region, script: &[(usize, u64)]) -> usize {
    let msg = [0x5au8; 40];
    let mut sent = 0;
    for step in 0..200usize {
        if let Some(&(off, v)) = script.get(step % script.len().max(1)) {
            let _ = region.write_at(off, &v.to_le_bytes());
        }
        let len = (step * 7) % 48;
        let ok = match step % 4 {
            0 => p.try_send(&msg[..len % 40]).is_ok(),
            // Timed calls are slow to fuzz (they wait when the ring is full): one in 16.
            1 if step % 16 == 1 => p.send_timeout(&msg[..len % 40], Duration::from_micros(50)).is_ok(),
            1 => p.try_send(&msg[len % 8..len % 40]).is_ok(),
            2 => match p.try_reserve(len) {
                Ok(g) => {
                    if step % 8 == 2 {
                        g.commit();
                    }
                    true
                }
                Err(_) => false,
            },
            _ => p.try_send_pod(step as u64).is_ok(),
        };
        sent += ok as usize;
        let _ = p.len_bytes();
    }
    sent
}
