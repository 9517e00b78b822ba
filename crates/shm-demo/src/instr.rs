//! Instructions per message, counted by valgrind's callgrind (deterministic, unlike time on a
//! shared machine): `shm-bench instr` runs `shm-bench instr-loop` under
//! `valgrind --tool=callgrind` twice per case, with `n` and `n + 10 000` iterations of
//! `try_send` + `try_recv` in one process, and reports the difference divided by 10 000, so
//! setup (mapping, attach, process start) cancels out.

use std::io;
use std::process::Command;
use std::sync::Arc;

use shm_core::Region;
use shm_ring::{Consumer, Mpsc, Producer, RingConfig, RingKind, Spsc};

/// One case: the ring kind and the message size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    /// "spsc", "spsc-blocking" or "mpsc".
    pub kind: &'static str,
    /// Payload bytes.
    pub size: usize,
}

/// The cases the README reports (`spsc-blocking`: `send` + `recv`, which wait when they must;
/// here they never have to; `spsc-in-place`: `try_reserve` + commit and `try_read` + drop, the
/// message written and read in the ring, as shm-bench's round trip does; `spsc-batch`: batches
/// of [`BATCH`] messages written in place with `write_batch` and read in place with one
/// `recv_batch`, as shm-bench's batch stream does; per message).
pub const CASES: [Case; 7] = [
    Case { kind: "spsc", size: 8 },
    Case { kind: "spsc-in-place", size: 8 },
    Case { kind: "spsc-batch", size: 64 },
    Case { kind: "spsc", size: 64 },
    Case { kind: "spsc-blocking", size: 64 },
    Case { kind: "mpsc", size: 8 },
    Case { kind: "mpsc", size: 64 },
];

/// Messages per batch of the `spsc-batch` case.
pub const BATCH: u64 = 64;

/// `n` messages of `size` bytes in batches of [`BATCH`] (the last one shorter).
fn batches(size: usize, n: u64) -> io::Result<u64> {
    let config = RingConfig::spsc(1 << 16);
    let region = Arc::new(Region::anonymous(config.region_len()).map_err(io::Error::other)?);
    let mut p = Producer::<Spsc>::create(region.clone(), &config).map_err(io::Error::other)?;
    let mut c = Consumer::<Spsc>::open(region).map_err(io::Error::other)?;
    let mut sum = 0u64;
    let mut sent = 0;
    while sent < n {
        let b = BATCH.min(n - sent);
        sent += b;
        let mut batch = p.write_batch();
        for _ in 0..b {
            // SAFETY: both ends are this process and follow the ring protocol.
            unsafe { batch.push_unchecked(size, |m| m[0] = b as u8) }.map_err(io::Error::from)?;
        }
        batch.commit();
        // SAFETY: as above.
        let got = unsafe { c.recv_batch_unchecked(usize::MAX, |m| sum += m[0] as u64) };
        got.map_err(io::Error::from)?;
    }
    Ok(sum)
}

/// The extra iterations of the second run.
const EXTRA: u64 = 10_000;

fn send_recv<K: RingKind>(
    config: &RingConfig,
    size: usize,
    n: u64,
    blocking: bool,
    in_place: bool,
) -> io::Result<u64> {
    let region = Arc::new(Region::anonymous(config.region_len()).map_err(io::Error::other)?);
    let mut p = Producer::<K>::create(region.clone(), config).map_err(io::Error::other)?;
    let mut c = Consumer::<K>::open(region).map_err(io::Error::other)?;
    let msg = vec![0x5a; size];
    let mut buf = Vec::with_capacity(size);
    let mut sum = 0u64;
    for i in 0..n {
        if in_place {
            let mut g = p.try_reserve(size).map_err(io::Error::from)?;
            // SAFETY: both ends are this process and follow the ring protocol.
            unsafe { g.as_mut_slice_unchecked() }.fill(i as u8);
            g.commit();
            let g = c.try_read().map_err(io::Error::from)?;
            // SAFETY: as above.
            sum += unsafe { g.as_slice_unchecked() }[0] as u64;
        } else if blocking {
            p.send(&msg).map_err(io::Error::from)?;
            sum += c.recv(&mut buf).map_err(io::Error::from)? as u64;
        } else {
            p.try_send(&msg).map_err(io::Error::from)?;
            sum += c.try_recv(&mut buf).map_err(io::Error::from)? as u64;
        }
    }
    Ok(sum)
}

/// The measured loop (run under callgrind by [`count`]): `n` × (`try_send` + `try_recv`) of
/// `size` bytes on a 64 KiB ring of `kind`, in this process (see [`CASES`] for the kinds).
pub fn run_loop(kind: &str, size: usize, n: u64) -> io::Result<u64> {
    match kind {
        "spsc" => send_recv::<Spsc>(&RingConfig::spsc(1 << 16), size, n, false, false),
        "spsc-in-place" => send_recv::<Spsc>(&RingConfig::spsc(1 << 16), size, n, false, true),
        "spsc-blocking" => send_recv::<Spsc>(&RingConfig::spsc(1 << 16), size, n, true, false),
        "spsc-batch" => batches(size, n),
        "mpsc" => send_recv::<Mpsc>(&RingConfig::mpsc(1 << 16, 1), size, n, false, false),
        other => Err(io::Error::other(format!(
            "kind {other:?}: expected spsc, spsc-in-place, spsc-batch, spsc-blocking or mpsc"
        ))),
    }
}

/// Instructions callgrind counted for one run of the loop.
fn instructions(exe: &std::path::Path, case: Case, n: u64) -> io::Result<u64> {
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(exe)
        .args(["instr-loop", "--kind", case.kind, "--size", &case.size.to_string(), "--n", &n.to_string()])
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("could not run valgrind (is it installed?): {e}")))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(io::Error::other(format!("valgrind failed: {stderr}")));
    }
    // "==123== Collected : 4567890"
    stderr
        .lines()
        .find_map(|l| l.split("Collected :").nth(1))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::other(format!("no \"Collected\" line in callgrind's output: {stderr}")))
}

/// Instructions per `try_send` + `try_recv` of `case`.
pub fn count(exe: &std::path::Path, case: Case) -> io::Result<f64> {
    let base = 1000;
    let a = instructions(exe, case, base)?;
    let b = instructions(exe, case, base + EXTRA)?;
    Ok(b.saturating_sub(a) as f64 / EXTRA as f64)
}
