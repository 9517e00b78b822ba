//! Bridges as real processes over a real Zenoh: a producer process writes checksummed,
//! numbered messages (shm-demo's format) into a ring, `shm-bridge out` publishes them,
//! `shm-bridge in` writes them into a second ring, and this process reads that ring and checks
//! every message (order, checksum, none twice). Bridges are killed, stopped, restarted and cut
//! off, and the counters they report are compared with what the consumer saw.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shm_core::Region;
use shm_demo::stream::{encode, Stats};
use shm_ring::any::{AnyConsumer, AnyProducer};
use shm_ring::{AttachOptions, Kind, RecvTimeoutError, RingConfig, SendTimeoutError};

const BIN: &str = env!("CARGO_BIN_EXE_shm-bridge");
const SIZE: usize = 64;

/// One at a time: each test runs several processes on a 2-core machine.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn config(kind: Kind, capacity: u64) -> RingConfig {
    match kind {
        Kind::Spsc => RingConfig::spsc(capacity),
        Kind::Mpsc => RingConfig::mpsc(capacity, 4),
        Kind::Broadcast => RingConfig::broadcast(capacity, 4),
    }
}

fn make_ring(path: &Path, kind: Kind, capacity: u64) {
    let c = config(kind, capacity);
    let region = Region::create_file(path, c.region_len()).unwrap();
    shm_ring::init(&region, &c).unwrap();
}

/// A port nobody listens on now, for a bridge to listen on.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A bridge process; killed (and its log printed) if the test fails with it running.
struct Bridge {
    name: String,
    args: Vec<String>,
    netns: Option<String>,
    log: PathBuf,
    child: Option<Child>,
    runs: u32,
}

impl Bridge {
    fn new(name: &str, dir: &Path, args: &[&str], netns: Option<&str>) -> Bridge {
        let mut b = Bridge {
            name: name.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            netns: netns.map(str::to_owned),
            log: dir.join(format!("{name}.log")),
            child: None,
            runs: 0,
        };
        b.start();
        b
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "{} runs already", self.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, BIN]);
                c
            }
            None => Command::new(BIN),
        };
        cmd.args(&self.args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        self.child = Some(cmd.spawn().unwrap());
        self.runs += 1;
    }

    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    /// SIGKILL, and reap.
    fn kill(&mut self) {
        let mut c = self.child.take().expect("running");
        let _ = c.kill();
        let _ = c.wait();
    }

    /// SIGTERM; the bridge must stop cleanly (exit 0) within 20 s.
    fn stop(&mut self) {
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGTERM).unwrap();
        let mut c = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                assert!(st.success(), "{} stopped with {st}:\n{}", self.name, self.log_text());
                return;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("{} did not stop within 20 s of SIGTERM:\n{}", self.name, self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- {} log:\n{}", self.name, self.log_text());
        }
    }
}

/// `shm-bridge status --state PATH --json`.
fn status(state: &Path) -> serde_json::Value {
    let out = Command::new(BIN).args(["status", "--json", "--state"]).arg(state).output().unwrap();
    assert!(out.status.success(), "status failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn counter(state: &Path, name: &str) -> u64 {
    status(state)[name].as_u64().unwrap_or_else(|| panic!("no counter {name} in {}", status(state)))
}

/// A producer process: `count` messages of shm-demo's format into the ring at `path`,
/// `rate` per second (0: as fast as it goes).
fn producer(path: &Path, count: u64, rate: u64) -> shm_testkit::Forked {
    let path = path.to_owned();
    shm_testkit::fork(move || {
        let region = Region::open_file(&path).unwrap();
        let mut p = AnyProducer::open(region, None, &AttachOptions::new()).unwrap();
        let mut buf = vec![0u8; SIZE];
        let start = Instant::now();
        for seq in 0..count {
            if rate > 0 && seq % 64 == 0 {
                let due = start + Duration::from_secs_f64(seq as f64 / rate as f64);
                if let Some(d) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
            encode(&mut buf, seq);
            // A consumer (the outbound bridge) killed or stopped comes back: wait for it.
            loop {
                match p.send(&buf, Some(Duration::from_millis(100))) {
                    Ok(()) => break,
                    Err(
                        SendTimeoutError::Timeout(())
                        | SendTimeoutError::Disconnected(())
                        | SendTimeoutError::PeerDead { .. },
                    ) => {}
                    Err(e) => panic!("producer: {e}"),
                }
            }
        }
        0
    })
}

/// What the consumer saw, shared with the test's other steps while it runs.
type Seen = Arc<Mutex<Stats>>;

/// Read the ring at `path` until the message numbered `count - 1` arrived, checking each;
/// a producer (an inbound bridge) that dies or closes is waited for to come back.
fn consumer(path: &Path, count: u64, limit: Duration) -> (std::thread::JoinHandle<()>, Seen) {
    let region = Region::open_file(path).unwrap();
    let mut c = AnyConsumer::open(region, None, &AttachOptions::new()).unwrap();
    let seen: Seen = Arc::new(Mutex::new(Stats::new()));
    let s = seen.clone();
    let h = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let deadline = Instant::now() + limit;
        loop {
            match c.recv(&mut buf, Some(Duration::from_millis(100))) {
                Ok(_) => {
                    let mut st = s.lock().unwrap();
                    st.record(&buf);
                    if st.next_seq() >= count {
                        return;
                    }
                }
                Err(
                    RecvTimeoutError::Timeout
                    | RecvTimeoutError::Disconnected
                    | RecvTimeoutError::PeerDead { .. },
                ) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("consumer: {e}"),
            }
            if Instant::now() > deadline {
                let st = s.lock().unwrap();
                panic!(
                    "consumer: message {} of {count} not there after {limit:?} ({})",
                    st.next_seq(),
                    st.line()
                );
            }
        }
    });
    (h, seen)
}

fn received(seen: &Seen) -> u64 {
    seen.lock().unwrap().received
}

/// Wait until `f` holds (checked every 10 ms), or fail after `limit` saying `what`.
fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Zenoh options joining an `in` that listens on `port` and an `out` that connects to it,
/// without multicast (tests running at once do not meet).
fn endpoints(port: u16) -> (Vec<String>, Vec<String>) {
    let ep = format!("tcp/127.0.0.1:{port}");
    (
        vec!["--no-multicast".into(), "--connect".into(), ep.clone()],
        vec!["--no-multicast".into(), "--listen".into(), ep],
    )
}

struct Pair {
    dir: tempfile::TempDir,
    ring1: PathBuf,
    ring2: PathBuf,
}

impl Pair {
    fn new(k1: Kind, k2: Kind, cap2: u64) -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let ring1 = dir.path().join("ring1");
        let ring2 = dir.path().join("ring2");
        make_ring(&ring1, k1, 1 << 20);
        make_ring(&ring2, k2, cap2);
        Pair { dir, ring1, ring2 }
    }

    fn state(&self, ring: &Path, role: &str) -> PathBuf {
        PathBuf::from(format!("{}.{role}.state", ring.display()))
    }

    fn out(&self, key: &str, zenoh: &[String], netns: Option<&str>) -> Bridge {
        let mut args = vec!["out", "--ring", self.ring1.to_str().unwrap(), "--key", key];
        args.extend(zenoh.iter().map(String::as_str));
        Bridge::new("out", self.dir.path(), &args, netns)
    }

    fn inbound(&self, key: &str, zenoh: &[String], extra: &[&str], netns: Option<&str>) -> Bridge {
        let mut args = vec!["in", "--ring", self.ring2.to_str().unwrap(), "--key", key];
        args.extend(zenoh.iter().map(String::as_str));
        args.extend(extra);
        Bridge::new("in", self.dir.path(), &args, netns)
    }
}

fn key(test: &str) -> String {
    format!("shm-bridge-test/{}/{test}", std::process::id())
}

#[test]
fn a_million_checksummed_messages_cross_two_bridges_in_order_none_lost() {
    let _g = serial();
    const N: u64 = 1_000_000;
    let pair = Pair::new(Kind::Spsc, Kind::Mpsc, 1 << 20);
    let (out_z, in_z) = endpoints(free_port());
    let k = key("million");
    let (done, seen) = consumer(&pair.ring2, N, Duration::from_secs(240));
    let mut inb = pair.inbound(&k, &in_z, &[], None);
    let mut out = pair.out(&k, &out_z, None);
    let prod = producer(&pair.ring1, N, 0);
    done.join().expect("the consumer saw every message");
    prod.join();
    let st = seen.lock().unwrap();
    assert_eq!((st.received, st.lost, st.corrupt), (N, 0, 0), "{}", st.line());
    let (so, si) = (pair.state(&pair.ring1, "out"), pair.state(&pair.ring2, "in"));
    wait_until("the counters", Duration::from_secs(5), || counter(&si, "messages") == N);
    assert_eq!(counter(&so, "messages"), N);
    assert_eq!(counter(&so, "bytes"), N * SIZE as u64);
    for c in ["gaps", "missing", "duplicates", "drops"] {
        assert_eq!(counter(&si, c), 0, "in: {c}");
    }
    let s = status(&so);
    assert_eq!((s["role"].as_str(), s["running"].as_bool()), (Some("out"), Some(true)), "{s}");
    assert_eq!(s["key"].as_str(), Some(k.as_str()));
    out.stop();
    inb.stop();
    assert_eq!(status(&so)["running"].as_bool(), Some(false));
    assert!(out.log_text().contains("stopped: 1000000 msgs"), "{}", out.log_text());
}

#[test]
fn every_ring_kind_on_either_side() {
    let _g = serial();
    const N: u64 = 20_000;
    for (k1, k2) in [(Kind::Broadcast, Kind::Spsc), (Kind::Mpsc, Kind::Broadcast), (Kind::Spsc, Kind::Spsc)] {
        let pair = Pair::new(k1, k2, 1 << 16);
        let (out_z, in_z) = endpoints(free_port());
        let k = key(&format!("kinds-{k1}-{k2}"));
        let (done, seen) = consumer(&pair.ring2, N, Duration::from_secs(60));
        let mut inb = pair.inbound(&k, &in_z, &[], None);
        let mut out = pair.out(&k, &out_z, None);
        // A broadcast producer does not wait for a subscriber that has not joined: the
        // outbound bridge must be subscribed before the first message.
        wait_until("out attached", Duration::from_secs(10), || out.log_text().contains("opened the"));
        let prod = producer(&pair.ring1, N, 0);
        done.join().expect("every message");
        prod.join();
        let st = seen.lock().unwrap();
        assert_eq!((st.received, st.lost, st.corrupt), (N, 0, 0), "{k1} -> {k2}: {}", st.line());
        out.stop();
        inb.stop();
    }
}

#[test]
fn the_defaults_find_each_other_on_one_machine() {
    let _g = serial();
    const N: u64 = 10_000;
    let pair = Pair::new(Kind::Spsc, Kind::Spsc, 1 << 16);
    let k = key("defaults");
    let (done, seen) = consumer(&pair.ring2, N, Duration::from_secs(60));
    let mut inb = pair.inbound(&k, &[], &[], None);
    let mut out = pair.out(&k, &[], None);
    let prod = producer(&pair.ring1, N, 0);
    done.join().expect("every message, with Zenoh's defaults (multicast scouting)");
    prod.join();
    assert_eq!(seen.lock().unwrap().lost, 0);
    out.stop();
    inb.stop();
}

/// 150 000 messages at 50 000 a second while the outbound (`out`) or inbound bridge is
/// stopped with SIGTERM (`kill`: SIGKILLed) and started again three times, every 30 000
/// messages. Returns what the consumer saw, with the rings (the state files) kept.
fn restart_three_times(name: &str, out_side: bool, kill: bool) -> (Pair, Seen) {
    const N: u64 = 150_000;
    let pair = Pair::new(Kind::Spsc, Kind::Spsc, 1 << 16);
    let (out_z, in_z) = endpoints(free_port());
    let k = key(name);
    let (done, seen) = consumer(&pair.ring2, N, Duration::from_secs(120));
    let mut inb = pair.inbound(&k, &in_z, &[], None);
    let mut out = pair.out(&k, &out_z, None);
    let prod = producer(&pair.ring1, N, 50_000);
    for i in 1..=3 {
        wait_until("progress", Duration::from_secs(30), || received(&seen) >= i * 30_000);
        let b = if out_side { &mut out } else { &mut inb };
        if kill {
            b.kill();
        } else {
            b.stop();
        }
        b.start();
    }
    done.join().expect("every message after the last restart");
    prod.join();
    (pair, seen)
}

#[test]
fn a_stopped_outbound_bridge_flushes_and_its_successor_resumes_losing_nothing() {
    let _g = serial();
    let (pair, seen) = restart_three_times("stop-out", true, false);
    let st = seen.lock().unwrap();
    assert_eq!((st.received, st.lost, st.corrupt), (150_000, 0, 0), "{}", st.line());
    let si = pair.state(&pair.ring2, "in");
    assert_eq!((counter(&si, "gaps"), counter(&si, "source_changes")), (0, 0));
}

#[test]
fn a_killed_outbound_bridge_resumes_where_it_stood_and_every_loss_is_reported() {
    let _g = serial();
    let (pair, seen) = restart_three_times("kill-out", true, true);
    let st = seen.lock().unwrap();
    let si = pair.state(&pair.ring2, "in");
    // Never twice, never out of order (either would be `corrupt`), and what was lost (what
    // the killed bridge held unacknowledged and Zenoh had not delivered) is exactly what the
    // inbound bridge reported missing.
    assert_eq!(st.corrupt, 0, "{}", st.line());
    assert_eq!(st.lost, counter(&si, "missing"), "{}; in: {}", st.line(), status(&si));
    assert_eq!(counter(&si, "source_changes"), 0, "the restarted bridge keeps its source");
    eprintln!("killed out 3 times: {}; in: {}", st.line(), status(&si));
}

#[test]
fn a_killed_inbound_bridge_restarts_losing_nothing() {
    let _g = serial();
    let (pair, seen) = restart_three_times("kill-in", false, true);
    let st = seen.lock().unwrap();
    let si = pair.state(&pair.ring2, "in");
    // What the killed bridge had not written was not acknowledged: the outbound bridge sends
    // it again, and the restarted one drops what it wrote already.
    assert_eq!((st.lost, st.corrupt), (0, 0), "{}; in: {}", st.line(), status(&si));
    assert_eq!(counter(&si, "missing"), 0);
    eprintln!("killed in 3 times: {}; in: {}", st.line(), status(&si));
}

#[test]
fn a_stopped_inbound_bridge_restarts_losing_nothing() {
    let _g = serial();
    let (pair, seen) = restart_three_times("stop-in", false, false);
    let st = seen.lock().unwrap();
    let si = pair.state(&pair.ring2, "in");
    assert_eq!((st.received, st.lost, st.corrupt), (150_000, 0, 0), "{}; in: {}", st.line(), status(&si));
}

#[test]
fn a_full_ring_holds_the_stream_back_or_drops_and_counts_as_told() {
    let _g = serial();
    const N: u64 = 20_000;
    // Drop: the consumer reads nothing until all was sent, into a ring of 4 KiB.
    let pair = Pair::new(Kind::Spsc, Kind::Spsc, 4096);
    let (out_z, in_z) = endpoints(free_port());
    let k = key("drop");
    let _inb = pair.inbound(&k, &in_z, &["--on-full", "drop"], None);
    let _out = pair.out(&k, &out_z, None);
    let prod = producer(&pair.ring1, N, 0);
    prod.join();
    let (si, so) = (pair.state(&pair.ring2, "in"), pair.state(&pair.ring1, "out"));
    wait_until("all published", Duration::from_secs(30), || counter(&so, "messages") == N);
    wait_until("all written or dropped", Duration::from_secs(30), || {
        counter(&si, "messages") + counter(&si, "drops") == N
    });
    let (written, drops) = (counter(&si, "messages"), counter(&si, "drops"));
    assert!(drops > 0 && written > 0, "written {written}, dropped {drops}");
    let region = Region::open_file(&pair.ring2).unwrap();
    let mut c = AnyConsumer::open(region, None, &AttachOptions::new()).unwrap();
    let mut buf = Vec::new();
    let mut got = 0;
    while c.recv(&mut buf, Some(Duration::ZERO)).is_ok() {
        got += 1;
    }
    assert_eq!(got, written, "the ring holds what was written");
    drop(c);

    // Block (the default): the same, and nothing is lost; the producer is held back, for
    // longer than the lease (1 s here) and than Zenoh's wait before it closes a blocked link
    // (5 s): the outbound bridge waits for acknowledgements instead of filling Zenoh's queues.
    let pair = Pair::new(Kind::Spsc, Kind::Spsc, 4096);
    let (mut out_z, mut in_z) = endpoints(free_port());
    for z in [&mut out_z, &mut in_z] {
        z.extend(["--lease".to_string(), "1s".into()]);
    }
    let k = key("block");
    let _inb = pair.inbound(&k, &in_z, &[], None);
    let _out = pair.out(&k, &out_z, None);
    let prod = producer(&pair.ring1, N, 0);
    let si = pair.state(&pair.ring2, "in");
    std::thread::sleep(Duration::from_secs(6));
    assert!(counter(&si, "messages") < N, "a ring of 4 KiB cannot hold every message");
    let (done, seen) = consumer(&pair.ring2, N, Duration::from_secs(60));
    done.join().expect("every message");
    prod.join();
    assert_eq!(seen.lock().unwrap().lost, 0);
    assert_eq!((counter(&si, "drops"), counter(&si, "missing")), (0, 0));
}

/// Two network namespaces joined by a veth pair, removed on drop.
struct Netns {
    a: String,
    b: String,
}

impl Netns {
    /// `None` (and why) where they cannot be made: not root, or no `ip`.
    fn new() -> Result<Netns, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("not root (network namespaces need CAP_SYS_ADMIN)".into());
        }
        let id = std::process::id() % 100_000;
        let n = Netns { a: format!("shmb-a-{id}"), b: format!("shmb-b-{id}") };
        let (va, vb) = (format!("shmba{id}"), format!("shmbb{id}"));
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", &n.a],
            vec!["netns", "add", &n.b],
            vec!["link", "add", &va, "type", "veth", "peer", "name", &vb],
            vec!["link", "set", &va, "netns", &n.a],
            vec!["link", "set", &vb, "netns", &n.b],
            vec!["-n", &n.a, "addr", "add", "10.231.0.1/24", "dev", &va],
            vec!["-n", &n.b, "addr", "add", "10.231.0.2/24", "dev", &vb],
            vec!["-n", &n.a, "link", "set", &va, "up"],
            vec!["-n", &n.b, "link", "set", &vb, "up"],
            vec!["-n", &n.a, "link", "set", "lo", "up"],
            vec!["-n", &n.b, "link", "set", "lo", "up"],
        ];
        for s in steps {
            match Command::new("ip").args(&s).output() {
                Ok(o) if o.status.success() => {}
                Ok(o) => {
                    return Err(format!("ip {}: {}", s.join(" "), String::from_utf8_lossy(&o.stderr).trim()))
                }
                Err(e) => return Err(format!("cannot run ip ({e}); install iproute2")),
            }
        }
        Ok(n)
    }

    fn link(&self, up: bool) {
        let id = std::process::id() % 100_000;
        let st = Command::new("ip")
            .args(["-n", &self.a, "link", "set", &format!("shmba{id}"), if up { "up" } else { "down" }])
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn two_hosts_in_network_namespaces_survive_a_cut_link() {
    let _g = serial();
    let net = match Netns::new() {
        Ok(n) => n,
        Err(why) => {
            eprintln!("skipped: two_hosts_in_network_namespaces_survive_a_cut_link: {why}");
            return;
        }
    };
    const N: u64 = 200_000;
    let pair = Pair::new(Kind::Spsc, Kind::Spsc, 1 << 16);
    let k = key("netns");
    let lease = ["--lease", "2s", "--no-multicast"].map(String::from);
    let mut out_z = vec!["--listen".to_string(), "tcp/10.231.0.1:7450".into()];
    out_z.extend(lease.iter().cloned());
    let mut in_z = vec!["--connect".to_string(), "tcp/10.231.0.1:7450".into()];
    in_z.extend(lease.iter().cloned());
    let (done, seen) = consumer(&pair.ring2, N, Duration::from_secs(120));
    let _out = pair.out(&k, &out_z, Some(&net.a));
    let _inb = pair.inbound(&k, &in_z, &[], Some(&net.b));
    let prod = producer(&pair.ring1, N, 20_000);
    let (si, so) = (pair.state(&pair.ring2, "in"), pair.state(&pair.ring1, "out"));

    // A short cut (well within the lease): TCP retransmits, nothing is lost.
    wait_until("progress", Duration::from_secs(30), || received(&seen) >= 20_000);
    net.link(false);
    std::thread::sleep(Duration::from_millis(500));
    net.link(true);
    wait_until("progress after the short cut", Duration::from_secs(30), || received(&seen) >= 50_000);
    let after_short = seen.lock().unwrap().lost;
    assert_eq!((after_short, counter(&si, "missing")), (0, 0), "a cut shorter than the lease loses nothing");

    // A long cut (beyond the lease): the session closes; the outbound bridge holds the
    // messages in its ring until a subscriber matches again, reconnects by itself, and sends
    // again what was not acknowledged.
    net.link(false);
    std::thread::sleep(Duration::from_secs(5));
    net.link(true);
    done.join().expect("the stream resumes by itself after the link is back");
    prod.join();
    let st = seen.lock().unwrap();
    // What the closed session lost was not acknowledged, and is sent again.
    assert_eq!((st.lost, st.corrupt), (0, 0), "{}; in: {}; out: {}", st.line(), status(&si), status(&so));
    assert_eq!(counter(&si, "missing"), 0);
    assert!(counter(&so, "reconnects") >= 1, "out saw the session come back: {}", status(&so));
    eprintln!("cut 0.5 s and 5 s: {}; in: {}; out: {}", st.line(), status(&si), status(&so));
}

#[test]
fn the_bench_reports_bridges_and_tcp_in_shm_bench_format() {
    let _g = serial();
    let out = Command::new(BIN).args(["bench", "--quick", "--json"]).output().unwrap();
    assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // Shape only: what it measures is for people to read, never asserted.
    for (transport, test, field) in [
        ("shm-bridge", "throughput", "msgs_per_s"),
        ("tcp", "throughput", "msgs_per_s"),
        ("shm-bridge", "rtt", "median_ns"),
        ("tcp", "rtt", "median_ns"),
    ] {
        let row = rows
            .iter()
            .find(|r| r["transport"] == transport && r["test"] == test)
            .unwrap_or_else(|| panic!("no {transport} {test} row in {rows:?}"));
        assert!(row[field].as_f64().is_some_and(|v| v > 0.0), "{row}");
        assert_eq!(row["msg_size"], 64);
    }
}
