//! `shm-demo fork`: a parent and a forked child exchange messages both ways over two SPSC rings
//! in `MAP_SHARED | MAP_ANONYMOUS` memory, and each prints what it saw from the other.

use std::io;
use std::time::Duration;

use shm_core::Region;
use shm_ring::spsc::{Consumer, Producer};
use shm_ring::RingConfig;

use crate::pair::run_pair;

fn err<E: std::fmt::Display>(e: E) -> io::Error {
    io::Error::other(e.to_string())
}

/// Run the exchange with `rounds` messages each way; returns the lines the parent printed.
pub fn run(rounds: u32) -> io::Result<Vec<String>> {
    let config = RingConfig::spsc(1 << 16);
    let to_child = Region::anonymous(config.region_len())?;
    let to_parent = Region::anonymous(config.region_len())?;
    shm_ring::init(&to_child, &config).map_err(err)?;
    shm_ring::init(&to_parent, &config).map_err(err)?;
    let (to_child, to_parent) = (std::sync::Arc::new(to_child), std::sync::Arc::new(to_parent));
    let timeout = Duration::from_secs(10);
    run_pair(
        || {
            let child = || -> io::Result<()> {
                let mut rx = Consumer::open(to_child.clone()).map_err(err)?;
                let mut tx = Producer::open(to_parent.clone()).map_err(err)?;
                let me = std::process::id();
                let mut buf = Vec::new();
                for _ in 0..rounds {
                    rx.recv_timeout(&mut buf, timeout).map_err(err)?;
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    println!("child  (pid {me}) saw: {text}");
                    let reply = format!("pid {me} got \"{text}\"");
                    tx.send_timeout(reply.as_bytes(), timeout).map_err(err)?;
                }
                Ok(())
            };
            match child() {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("child: {e}");
                    1
                }
            }
        },
        || -> io::Result<Vec<String>> {
            let mut tx = Producer::open(to_child.clone()).map_err(err)?;
            let mut rx = Consumer::open(to_parent.clone()).map_err(err)?;
            let me = std::process::id();
            let mut lines = Vec::new();
            let mut buf = Vec::new();
            for i in 0..rounds {
                tx.send_timeout(format!("message {i} from pid {me}").as_bytes(), timeout).map_err(err)?;
                rx.recv_timeout(&mut buf, timeout).map_err(err)?;
                let line = format!("parent (pid {me}) saw: {}", String::from_utf8_lossy(&buf));
                println!("{line}");
                lines.push(line);
            }
            Ok(lines)
        },
    )?
}
