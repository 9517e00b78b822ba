//! Writing and reading in place. The producer writes messages straight into the ring with
//! `reserve` / `commit`; the consumer takes them with `recv` guards. With a peer you do not
//! trust, both copy with atomic word accesses (`write_at`, `copy_to`); with a peer you trust
//! (here: both ends are this process), the `unsafe` `_unchecked` calls lend the bytes in place
//! as slices, with no copy at all.
//!
//! Run: `cargo run --example zero_copy`

use std::sync::Arc;

use shm_ipc::core::Region;
use shm_ipc::ring::spsc::{Consumer, Producer};
use shm_ipc::ring::RingConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = RingConfig::spsc(4096);
    let region = Arc::new(Region::anonymous(config.region_len())?);
    let mut tx = Producer::create(region.clone(), &config)?;
    let mut rx = Consumer::open(region)?;

    // Reserve 64 bytes, write 11 of them in place, publish those 11.
    let mut grant = tx.try_reserve(64)?;
    grant.write_at(0, b"hello, ring");
    grant.commit_len(11);

    // A grant dropped without commit sends nothing.
    {
        let mut unused = tx.try_reserve(16)?;
        unused.copy_from_slice(&[0xff; 16]);
    }

    // Take the message; the space goes back to the producer when the guard drops.
    {
        let msg = rx.try_read()?;
        let mut buf = [0u8; 64];
        let n = msg.copy_to(&mut buf);
        println!("read {} bytes: {:?}", msg.len(), std::str::from_utf8(&buf[..n])?);
    }
    assert!(rx.try_read().is_err(), "the aborted grant was never sent");

    // Trusted peer: no copy. Sound here because no other process maps this ring.
    let mut grant = tx.try_reserve(5)?;
    // SAFETY: both ends are in this process, which follows the ring protocol.
    unsafe { grant.as_mut_slice_unchecked() }.copy_from_slice(b"bytes");
    grant.commit();
    let msg = rx.try_read()?;
    // SAFETY: as above: nobody writes a published message.
    let bytes = unsafe { msg.as_slice_unchecked() };
    println!("borrowed {} bytes in place: {:?}", bytes.len(), std::str::from_utf8(bytes)?);
    drop(msg);

    // Batches: many messages published with one store, consumed with one store.
    let msgs: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 100]).collect();
    let sent = tx.send_batch(&mut msgs.iter().peekable())?;
    let mut sum = 0u64;
    let got = rx.recv_batch(usize::MAX, |m| sum += m.iter().map(|&b| b as u64).sum::<u64>())?;
    println!("batch: sent {sent}, received {got}, byte sum {sum}");
    assert_eq!((sent, got, sum), (10, 10, 4500));
    Ok(())
}
