//! Zero-copy on both sides: the producer writes messages in place with `reserve` / `commit`,
//! the consumer reads them in place through `recv` guards. No buffer of the user's is copied.
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
    let mut grant = tx.reserve(64)?;
    grant[..11].copy_from_slice(b"hello, ring");
    grant.commit_len(11);

    // A grant dropped without commit sends nothing.
    {
        let mut unused = tx.reserve(16)?;
        unused.fill(0xff);
    }

    // Read in place; the space goes back to the producer when the guard drops.
    {
        let msg = rx.recv()?;
        println!("read {} bytes in place: {:?}", msg.len(), std::str::from_utf8(&msg)?);
    }
    assert!(rx.recv().is_err(), "the aborted grant was never sent");

    // Batches: many messages published with one store, consumed with one store.
    let msgs: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 100]).collect();
    let sent = tx.send_batch(&mut msgs.iter().peekable())?;
    let mut sum = 0u64;
    let got = rx.recv_batch(usize::MAX, |m| sum += m.iter().map(|&b| b as u64).sum::<u64>())?;
    println!("batch: sent {sent}, received {got}, byte sum {sum}");
    assert_eq!((sent, got, sum), (10, 10, 4500));
    Ok(())
}
