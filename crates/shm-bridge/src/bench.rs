//! `shm-bridge bench`: 64-byte messages through two bridges on loopback, next to plain TCP on
//! loopback, in the same run.
//!
//! - **throughput**: a producer thread writes messages into ring 1 as fast as it can, `out`
//!   publishes them, `in` writes them into ring 2, a consumer thread reads them; the rate is
//!   messages over the time from the first send to the last receive. The TCP baseline: a
//!   sender thread writes the same messages into a loopback TCP connection (buffered), a
//!   receiver thread reads them.
//! - **rtt**: a ping goes ring A -> `out` -> `in` -> ring B, an echo thread copies it into ring
//!   C -> `out` -> `in` -> ring D, back to the pinger; the TCP baseline is a ping-pong over one
//!   loopback connection with `TCP_NODELAY`.
//!
//! The bridges are processes of their own (this binary, spawned); the producer and consumer
//! threads are pinned to different cores. Results are medians of the repetitions.

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shm_core::Region;
use shm_ring::any::{AnyConsumer, AnyProducer};
use shm_ring::{AttachOptions, RingConfig};

const SIZE: usize = 64;

/// How much to measure.
#[derive(Clone, Copy, Debug)]
pub struct BenchOptions {
    /// Messages per throughput repetition.
    pub messages: u64,
    /// Round trips per latency repetition.
    pub pings: u64,
    /// Repetitions (the median is reported).
    pub repeats: usize,
}

impl BenchOptions {
    /// A full run.
    pub fn full() -> BenchOptions {
        BenchOptions { messages: 1_000_000, pings: 20_000, repeats: 5 }
    }

    /// A run of a few seconds (CI checks that it works, not what it measures).
    pub fn quick() -> BenchOptions {
        BenchOptions { messages: 50_000, pings: 2_000, repeats: 1 }
    }
}

/// One measurement, as a line of shm-bench's JSON report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    /// `shm-bridge` (through two bridges) or `tcp`.
    pub transport: &'static str,
    /// `throughput` or `rtt`.
    pub test: &'static str,
    /// Payload bytes.
    pub msg_size: usize,
    /// Producers (always 1).
    pub producers: u32,
    /// Throughput: messages per second (median).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msgs_per_s: Option<f64>,
    /// Throughput: payload megabytes per second (median).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mb_per_s: Option<f64>,
    /// Round trip: median, ns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median_ns: Option<f64>,
    /// Round trip: 99th percentile, ns (of all repetitions' samples).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ns: Option<f64>,
}

/// Run every measurement; `bridge` is the `shm-bridge` binary to spawn.
pub fn run(options: &BenchOptions, bridge: &Path) -> std::io::Result<Vec<Row>> {
    let dir = tempdir()?;
    let rows = vec![
        throughput_row("shm-bridge", options, || bridge_throughput(bridge, &dir, options.messages))?,
        throughput_row("tcp", options, || tcp_throughput(options.messages))?,
        rtt_row("shm-bridge", options, || bridge_rtt(bridge, &dir, options.pings))?,
        rtt_row("tcp", options, || tcp_rtt(options.pings))?,
    ];
    let _ = std::fs::remove_dir_all(&dir);
    Ok(rows)
}

fn throughput_row(
    transport: &'static str,
    o: &BenchOptions,
    mut f: impl FnMut() -> std::io::Result<Duration>,
) -> std::io::Result<Row> {
    let mut rates = Vec::new();
    for _ in 0..o.repeats {
        rates.push(o.messages as f64 / f()?.as_secs_f64());
    }
    let r = median(&mut rates);
    Ok(Row {
        transport,
        test: "throughput",
        msg_size: SIZE,
        producers: 1,
        msgs_per_s: Some(r),
        mb_per_s: Some(r * SIZE as f64 / 1e6),
        median_ns: None,
        p99_ns: None,
    })
}

fn rtt_row(
    transport: &'static str,
    o: &BenchOptions,
    mut f: impl FnMut() -> std::io::Result<Vec<f64>>,
) -> std::io::Result<Row> {
    let mut medians = Vec::new();
    let mut all = Vec::new();
    for _ in 0..o.repeats {
        let mut s = f()?;
        medians.push(median(&mut s));
        all.extend(s);
    }
    all.sort_by(f64::total_cmp);
    let p99 = all[((all.len() as f64 * 0.99) as usize).min(all.len() - 1)];
    Ok(Row {
        transport,
        test: "rtt",
        msg_size: SIZE,
        producers: 1,
        msgs_per_s: None,
        mb_per_s: None,
        median_ns: Some(median(&mut medians)),
        p99_ns: Some(p99),
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn tempdir() -> std::io::Result<PathBuf> {
    let d =
        std::env::temp_dir().join(format!("shm-bridge-bench-{}-{}", std::process::id(), fastrand::u32(..)));
    std::fs::create_dir(&d)?;
    Ok(d)
}

/// Pin the calling thread to the `i`th core this process may use.
fn pin(i: usize) {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let Ok(allowed) = sched_getaffinity(Pid::from_raw(0)) else { return };
    let cores: Vec<usize> = (0..CpuSet::count()).filter(|&c| allowed.is_set(c).unwrap_or(false)).collect();
    if cores.len() < 2 {
        return;
    }
    let mut set = CpuSet::new();
    if set.set(cores[i % cores.len()]).is_ok() {
        let _ = sched_setaffinity(Pid::from_raw(0), &set);
    }
}

fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn ring(dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("{name}-{}", fastrand::u32(..)));
    let c = RingConfig::spsc(1 << 20);
    let region = Region::create_file(&path, c.region_len()).map_err(other)?;
    shm_ring::init(&region, &c).map_err(other)?;
    Ok(path)
}

fn producer(path: &Path) -> std::io::Result<AnyProducer> {
    AnyProducer::open(Region::open_file(path).map_err(other)?, None, &AttachOptions::new()).map_err(other)
}

fn consumer(path: &Path) -> std::io::Result<AnyConsumer> {
    AnyConsumer::open(Region::open_file(path).map_err(other)?, None, &AttachOptions::new()).map_err(other)
}

/// A pair of bridge processes from ring `from` to ring `to` over a fresh key and port; stopped
/// (SIGTERM) on drop.
struct Bridges(Vec<Child>);

impl Bridges {
    fn start(bridge: &Path, from: &Path, to: &Path) -> std::io::Result<Bridges> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let ep = format!("tcp/127.0.0.1:{port}");
        let key = format!("shm-bridge-bench/{}/{port}", std::process::id());
        let spawn = |args: &[&str]| {
            Command::new(bridge)
                .args(args)
                .args(["--no-multicast", "--status-every", "0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        };
        let inb = spawn(&["in", "--ring", path_str(to)?, "--key", &key, "--listen", &ep])?;
        let out = spawn(&["out", "--ring", path_str(from)?, "--key", &key, "--connect", &ep])?;
        Ok(Bridges(vec![inb, out]))
    }
}

impl Drop for Bridges {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

fn path_str(p: &Path) -> std::io::Result<&str> {
    p.to_str().ok_or_else(|| other(format!("path {} is not UTF-8", p.display())))
}

/// Wait up to 30 s for the first message (the bridges find each other), failing clearly.
fn first(c: &mut AnyConsumer, buf: &mut [u8]) -> std::io::Result<()> {
    c.recv_into(buf, Some(Duration::from_secs(30)))
        .map(drop)
        .map_err(|e| other(format!("no message through the bridges within 30 s: {e}")))
}

fn bridge_throughput(bridge: &Path, dir: &Path, n: u64) -> std::io::Result<Duration> {
    let (r1, r2) = (ring(dir, "tp1")?, ring(dir, "tp2")?);
    let mut rx = consumer(&r2)?;
    let mut tx = producer(&r1)?;
    let _bridges = Bridges::start(bridge, &r1, &r2)?;
    let mut buf = [0u8; SIZE];
    // Warm up: one message across, so the bridges are connected before the clock starts.
    tx.send(&buf, None).map_err(other)?;
    first(&mut rx, &mut buf)?;
    let start = Instant::now();
    let sender = std::thread::spawn(move || {
        pin(0);
        let mut m = [0u8; SIZE];
        for i in 0..n {
            m[..8].copy_from_slice(&i.to_le_bytes());
            if tx.send(&m, None).is_err() {
                return;
            }
        }
    });
    pin(1);
    for _ in 0..n {
        rx.recv_into(&mut buf, Some(Duration::from_secs(30))).map_err(other)?;
    }
    let took = start.elapsed();
    sender.join().map_err(|_| other("the sender panicked"))?;
    Ok(took)
}

fn bridge_rtt(bridge: &Path, dir: &Path, pings: u64) -> std::io::Result<Vec<f64>> {
    let (a, b, c, d) = (ring(dir, "a")?, ring(dir, "b")?, ring(dir, "c")?, ring(dir, "d")?);
    let mut ping = producer(&a)?;
    let mut pong = consumer(&d)?;
    let mut echo_in = consumer(&b)?;
    let mut echo_out = producer(&c)?;
    let _there = Bridges::start(bridge, &a, &b)?;
    let _back = Bridges::start(bridge, &c, &d)?;
    let total = pings + 1;
    let echo = std::thread::spawn(move || {
        pin(1);
        let mut m = [0u8; SIZE];
        for _ in 0..total {
            if echo_in.recv_into(&mut m, Some(Duration::from_secs(30))).is_err()
                || echo_out.send(&m, None).is_err()
            {
                return;
            }
        }
    });
    pin(0);
    let mut m = [0u8; SIZE];
    ping.send(&m, None).map_err(other)?;
    first(&mut pong, &mut m)?;
    let mut samples = Vec::with_capacity(pings as usize);
    for _ in 0..pings {
        let t = Instant::now();
        ping.send(&m, None).map_err(other)?;
        pong.recv_into(&mut m, Some(Duration::from_secs(30))).map_err(other)?;
        samples.push(t.elapsed().as_nanos() as f64);
    }
    echo.join().map_err(|_| other("the echo thread panicked"))?;
    Ok(samples)
}

fn tcp_throughput(n: u64) -> std::io::Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        pin(0);
        let mut w = BufWriter::with_capacity(64 * 1024, TcpStream::connect(addr)?);
        let mut m = [0u8; SIZE];
        for i in 0..n {
            m[..8].copy_from_slice(&i.to_le_bytes());
            w.write_all(&m)?;
        }
        w.flush()
    });
    pin(1);
    let (s, _) = listener.accept()?;
    let mut r = BufReader::with_capacity(64 * 1024, s);
    let mut m = [0u8; SIZE];
    r.read_exact(&mut m)?;
    let start = Instant::now();
    for _ in 1..n {
        r.read_exact(&mut m)?;
    }
    let took = start.elapsed();
    sender.join().map_err(|_| other("the sender panicked"))??;
    // n - 1 messages timed: scale to n.
    Ok(took.mul_f64(n as f64 / (n - 1).max(1) as f64))
}

fn tcp_rtt(pings: u64) -> std::io::Result<Vec<f64>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let total = pings + 1;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        pin(1);
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut m = [0u8; SIZE];
        for _ in 0..total {
            s.read_exact(&mut m)?;
            s.write_all(&m)?;
        }
        Ok(())
    });
    pin(0);
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut m = [0u8; SIZE];
    s.write_all(&m)?;
    s.read_exact(&mut m)?;
    let mut samples = Vec::with_capacity(pings as usize);
    for _ in 0..pings {
        let t = Instant::now();
        s.write_all(&m)?;
        s.read_exact(&mut m)?;
        samples.push(t.elapsed().as_nanos() as f64);
    }
    echo.join().map_err(|_| other("the echo thread panicked"))??;
    Ok(samples)
}

/// The table `shm-bridge bench` prints, with the ratios against TCP.
pub fn table(rows: &[Row]) -> String {
    let find = |t: &str, test: &str| rows.iter().find(|r| r.transport == t && r.test == test);
    let mut s = String::from("64 B messages on loopback      throughput          round trip median (p99)\n");
    for t in ["shm-bridge", "tcp"] {
        let tp = find(t, "throughput").and_then(|r| r.msgs_per_s).unwrap_or(f64::NAN);
        let rtt = find(t, "rtt");
        let (m, p) = (
            rtt.and_then(|r| r.median_ns).unwrap_or(f64::NAN),
            rtt.and_then(|r| r.p99_ns).unwrap_or(f64::NAN),
        );
        let name = if t == "tcp" { "plain TCP" } else { "two shm-bridges over Zenoh" };
        s.push_str(&format!(
            "{name:<30} {:>8.3} M msg/s      {:>8.1} µs ({:.1} µs)\n",
            tp / 1e6,
            m / 1e3,
            p / 1e3
        ));
    }
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b).unwrap_or(f64::NAN);
    s.push_str(&format!(
        "bridges vs TCP: {:.2}x the throughput, {:.2}x the round trip\n",
        ratio(
            find("shm-bridge", "throughput").and_then(|r| r.msgs_per_s),
            find("tcp", "throughput").and_then(|r| r.msgs_per_s)
        ),
        ratio(
            find("shm-bridge", "rtt").and_then(|r| r.median_ns),
            find("tcp", "rtt").and_then(|r| r.median_ns)
        ),
    ));
    s
}
