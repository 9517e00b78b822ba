//! Two unrelated processes on a file-backed ring: this program creates the ring, starts itself
//! again as the consumer (terminal 2 in a real deployment), and sends it 100 000 messages.
//!
//! Run: `cargo run --example two_processes`

use std::process::Command;
use std::time::Duration;

use shm_ipc::core::Region;
use shm_ipc::ring::spsc::{Consumer, Producer};
use shm_ipc::ring::{RecvTimeoutError, RingConfig};

const COUNT: u64 = 100_000;

fn consumer(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut rx = Consumer::open(Region::open_file(path)?)?;
    let (mut n, mut buf) = (0u64, Vec::new());
    loop {
        match rx.recv_timeout(&mut buf, Duration::from_secs(10)) {
            Ok(_) => {
                let seq = u64::from_le_bytes(buf[..8].try_into()?);
                assert_eq!(seq, n, "messages arrive once each, in order");
                n += 1;
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    println!("consumer (pid {}): received {n} messages in order", std::process::id());
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, path] = args.as_slice() {
        if flag == "--consumer" {
            return consumer(path);
        }
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("ring");
    let config = RingConfig::spsc(1 << 20);
    let mut tx = Producer::create(Region::create_file(&path, config.region_len())?, &config)?;
    let mut peer = Command::new(std::env::current_exe()?).arg("--consumer").arg(&path).spawn()?;
    for seq in 0..COUNT {
        let mut msg = [0u8; 32];
        msg[..8].copy_from_slice(&seq.to_le_bytes());
        tx.send_timeout(msg, Duration::from_secs(10))?;
    }
    drop(tx); // close: the consumer drains, then sees Disconnected
    println!("producer (pid {}): sent {COUNT} messages to pid {}", std::process::id(), peer.id());
    assert!(peer.wait()?.success(), "consumer failed");
    Ok(())
}
