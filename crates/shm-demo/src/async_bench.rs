//! shm-bench's async rows: the SPSC ring awaited from tokio (`shm-spsc-async`) next to tokio's
//! own `UnixStream` (`tokio-unix-stream`), each side a process with a current-thread runtime,
//! pinned as the other rows are. The ring is written and read in place (`reserve().await` and
//! `read().await`, as the `shm-spsc` row does without waiting); the socket with `write_all` /
//! `read_exact`. Every message is checked.

use std::io;
use std::time::Instant;

use shm_ring::aio::{AsyncConsumer, AsyncProducer};
use shm_ring::spsc::{Consumer, Producer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bench::{check, fill, median, WAKE_SPACING};
use crate::pair::run_pair;
use crate::transport::{ring_error, RingPair};

/// Which async transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsyncKind {
    /// The SPSC ring's async ends.
    Ring,
    /// `tokio::net::UnixStream`.
    TokioUnix,
}

fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// A forked side's exit code: 0 if `side` (run on a runtime of its own) succeeded, 2 if no
/// runtime could be made, 3 if it failed.
fn child_side(side: impl std::future::Future<Output = io::Result<()>>) -> i32 {
    match runtime() {
        Ok(rt) => match rt.block_on(side) {
            Ok(()) => 0,
            Err(_) => 3,
        },
        Err(_) => 2,
    }
}

/// One async end: sends and receives whole messages.
#[allow(clippy::large_enum_variant)] // one per process, never moved in a loop
enum End {
    Ring { tx: Option<AsyncProducer<shm_ring::Spsc>>, rx: Option<AsyncConsumer<shm_ring::Spsc>> },
    Unix { s: tokio::net::UnixStream, buf: Vec<u8> },
}

impl End {
    async fn send(&mut self, len: usize, seq: u64) -> io::Result<()> {
        match self {
            End::Ring { tx, .. } => {
                let tx = tx.as_mut().ok_or_else(|| io::Error::other("no sending ring"))?;
                let mut grant = tx.reserve(len).await.map_err(ring_error)?;
                // SAFETY: both ends of the bench rings are this program, forked from the
                // process that made them (`RingPair`), following the ring protocol: nobody
                // else touches the bytes.
                fill(unsafe { grant.as_mut_slice_unchecked() }, seq);
                grant.commit();
                Ok(())
            }
            End::Unix { s, buf } => {
                buf.resize(len, 0);
                fill(buf, seq);
                s.write_all(buf).await
            }
        }
    }

    async fn recv(&mut self, len: usize, seq: u64) -> io::Result<()> {
        let ok = match self {
            End::Ring { rx, .. } => {
                let rx = rx.as_mut().ok_or_else(|| io::Error::other("no receiving ring"))?;
                let guard = rx.read().await.map_err(ring_error)?;
                // SAFETY: as in `send`: the producer is this program.
                check(unsafe { guard.as_slice_unchecked() }, seq, len)
            }
            End::Unix { s, buf } => {
                buf.resize(len, 0);
                s.read_exact(buf).await?;
                check(buf, seq, len)
            }
        };
        if ok {
            Ok(())
        } else {
            Err(io::Error::other(format!("message {seq} corrupt")))
        }
    }
}

/// The two sides' ends, made before the fork and turned async inside each side's runtime.
enum Ends {
    Ring(RingPair),
    Unix(std::os::unix::net::UnixStream, std::os::unix::net::UnixStream),
}

impl Ends {
    fn new(kind: AsyncKind, capacity: u64) -> io::Result<Ends> {
        Ok(match kind {
            AsyncKind::Ring => Ends::Ring(RingPair::new(capacity)?),
            AsyncKind::TokioUnix => {
                let (a, b) = std::os::unix::net::UnixStream::pair()?;
                a.set_nonblocking(true)?;
                b.set_nonblocking(true)?;
                Ends::Unix(a, b)
            }
        })
    }

    /// Side a (`first`: produces a→b, consumes b→a) or b; `duplex` false: one way only.
    /// Call inside the side's runtime.
    fn side(&self, first: bool, duplex: bool) -> io::Result<End> {
        match self {
            Ends::Ring(pair) => {
                let (ab, ba) = pair.regions();
                // Side a produces on a→b and consumes b→a; side b the other way round. One
                // way only (`duplex` false): a produces, b consumes.
                let (out, inn) = if first { (ab, ba) } else { (ba, ab) };
                let tx = if first || duplex {
                    Some(AsyncProducer::new(Producer::open(out).map_err(ring_error)?))
                } else {
                    None
                };
                let rx = if !first || duplex {
                    Some(AsyncConsumer::new(Consumer::open(inn).map_err(ring_error)?))
                } else {
                    None
                };
                Ok(End::Ring { tx, rx })
            }
            Ends::Unix(a, b) => {
                let s = if first { a } else { b };
                Ok(End::Unix { s: tokio::net::UnixStream::from_std(s.try_clone()?)?, buf: Vec::new() })
            }
        }
    }
}

/// Round-trip samples (ns) of 8-byte pings, as the sync rows measure them; `spaced`: each
/// ping waits [`WAKE_SPACING`] first (untimed), so the peer sleeps before every one.
pub fn rtt(kind: AsyncKind, iters: u64, spaced: bool) -> io::Result<Vec<u64>> {
    let ends = Ends::new(kind, 1 << 16)?;
    let warm = iters / 10;
    let total = iters + warm;
    run_pair(
        || {
            child_side(async {
                let mut b = ends.side(false, true)?;
                for seq in 0..total {
                    b.recv(8, seq).await?;
                    b.send(8, seq).await?;
                }
                Ok(())
            })
        },
        || -> io::Result<Vec<u64>> {
            runtime()?.block_on(async {
                let mut a = ends.side(true, true)?;
                let mut samples = Vec::with_capacity(iters as usize);
                for seq in 0..total {
                    if spaced {
                        std::thread::sleep(WAKE_SPACING);
                    }
                    let t = Instant::now();
                    a.send(8, seq).await?;
                    a.recv(8, seq).await?;
                    if seq >= warm {
                        samples.push(t.elapsed().as_nanos() as u64);
                    }
                }
                Ok(samples)
            })
        },
    )?
}

/// Messages per second of a one-way stream of `n` messages of `size` bytes, timed at the
/// consumer from the first message to the last.
pub fn throughput(kind: AsyncKind, size: usize, n: u64) -> io::Result<f64> {
    let ends = Ends::new(kind, 1 << 18)?;
    run_pair(
        || {
            child_side(async {
                let mut p = ends.side(true, false)?;
                for seq in 0..n {
                    p.send(size, seq).await?;
                }
                Ok(())
            })
        },
        || -> io::Result<f64> {
            runtime()?.block_on(async {
                let mut c = ends.side(false, false)?;
                let mut start = Instant::now();
                for seq in 0..n {
                    c.recv(size, seq).await?;
                    if seq == 0 {
                        start = Instant::now();
                    }
                }
                Ok((n - 1) as f64 / start.elapsed().as_secs_f64())
            })
        },
    )?
}

/// Messages per segment of [`async_vs_spinning`].
pub const ASYNC_SEGMENT: u64 = 100_000;

/// The async ring's 64 B throughput over the spinning ring's, in one pair of processes that
/// switch between the two every [`ASYNC_SEGMENT`] messages (both written and read in place):
/// one ratio per repetition, the median of its async segments' rates over the median of its
/// spinning ones (the first two segments warm up).
pub fn async_vs_spinning(size: usize, reps: usize, segments: u64) -> io::Result<Vec<f64>> {
    let asynchronous = |seq: u64| (seq / ASYNC_SEGMENT) % 2 == 1;
    let n = ASYNC_SEGMENT * segments.max(4);
    (0..reps)
        .map(|_| {
            let ends = Ends::new(AsyncKind::Ring, 1 << 18)?;
            run_pair(
                || {
                    child_side(async {
                        let mut p = ends.side(true, false)?;
                        for seq in 0..n {
                            if asynchronous(seq) {
                                p.send(size, seq).await?;
                                continue;
                            }
                            let End::Ring { tx: Some(tx), .. } = &mut p else { unreachable!("a ring end") };
                            let mut grant = loop {
                                match tx.try_reserve(size) {
                                    Ok(g) => break g,
                                    Err(shm_ring::TrySendError::Full(())) => std::hint::spin_loop(),
                                    Err(e) => return Err(ring_error(e)),
                                }
                            };
                            // SAFETY: as in `End::send`: both ends are this program.
                            fill(unsafe { grant.as_mut_slice_unchecked() }, seq);
                            grant.commit();
                        }
                        Ok(())
                    })
                },
                || -> io::Result<f64> {
                    runtime()?.block_on(async {
                        let mut c = ends.side(false, false)?;
                        let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
                        let mut start = Instant::now();
                        for seq in 0..n {
                            if asynchronous(seq) {
                                c.recv(size, seq).await?;
                            } else {
                                let End::Ring { rx: Some(rx), .. } = &mut c else {
                                    unreachable!("a ring end")
                                };
                                let ok = loop {
                                    match rx.try_read() {
                                        // SAFETY: as in `End::send`: the producer is this program.
                                        Ok(g) => break check(unsafe { g.as_slice_unchecked() }, seq, size),
                                        Err(shm_ring::TryRecvError::Empty) => std::hint::spin_loop(),
                                        Err(e) => return Err(ring_error(e)),
                                    }
                                };
                                if !ok {
                                    return Err(io::Error::other(format!("message {seq} corrupt")));
                                }
                            }
                            if (seq + 1) % ASYNC_SEGMENT == 0 {
                                if seq >= 2 * ASYNC_SEGMENT {
                                    rates[asynchronous(seq) as usize]
                                        .push(ASYNC_SEGMENT as f64 / start.elapsed().as_secs_f64());
                                }
                                start = Instant::now();
                            }
                        }
                        let [spinning, asynchronous] = rates;
                        Ok(median(asynchronous) / median(spinning))
                    })
                },
            )?
        })
        .collect()
}
