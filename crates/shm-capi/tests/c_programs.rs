//! C programs built with the system C compiler (`cc`, or `$CC`) against the generated header
//! and the static library, run as real processes against Rust ends in this process (or a
//! forked child of it).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use shm_core::Region;
use shm_ring::{Broadcast, Consumer, Mpsc, Producer, RecvError, RingConfig, RingKind, Spsc};
use shm_testkit::expect_line;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The static library, built once per test binary in a target directory of its own (the
/// outer cargo's is in use).
fn static_lib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("capi-target");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "--quiet", "-p", "shm-capi", "--target-dir"])
            .arg(&target)
            .current_dir(root())
            .status()
            .expect("running cargo build -p shm-capi");
        assert!(status.success(), "cargo build -p shm-capi failed");
        target.join("release/libshmipc.a")
    })
}

/// Compile `sources` (relative to the repository root) into an executable `name`.
fn compile(name: &str, sources: &[&str]) -> PathBuf {
    // Tests run in parallel: each compiles its own copy.
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}-{n}", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut cmd = Command::new(&cc);
    cmd.args(["-std=c11", "-D_GNU_SOURCE", "-O2", "-Wall", "-Wextra", "-Werror"])
        .arg("-I")
        .arg(root().join("crates/shm-capi/include"))
        .arg("-I")
        .arg(root().join("examples/c"));
    for s in sources {
        cmd.arg(root().join(s));
    }
    cmd.arg(static_lib()).args(["-lpthread", "-ldl", "-lm", "-o"]).arg(&out);
    let status = cmd.status().unwrap_or_else(|e| panic!("running the C compiler {cc}: {e}"));
    assert!(status.success(), "{cc} failed on {sources:?}");
    out
}

/// shm-demo's message `seq` of `size` bytes (the format of examples/c/stream.h).
fn encode(buf: &mut [u8], seq: u64) {
    let (head, payload) = buf.split_at_mut(24);
    for (i, b) in payload.iter_mut().enumerate() {
        *b = (seq as u8).wrapping_add(i as u8);
    }
    head[0..8].copy_from_slice(&seq.to_le_bytes());
    head[8..16].fill(0);
    head[16..20].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    head[20..24].fill(0);
}

fn decode(msg: &[u8]) -> Option<u64> {
    let crc = u32::from_le_bytes(msg.get(16..20)?.try_into().ok()?);
    (crc32fast::hash(&msg[24..]) == crc).then(|| u64::from_le_bytes(msg[0..8].try_into().unwrap()))
}

const COUNT: u64 = 200_000;

/// A C consumer process receives COUNT messages from a Rust producer of kind `K`, in order and
/// whole, and sees the end of the stream.
fn c_consumer_of_rust_producer<K: RingKind>(config: RingConfig) {
    let exe = compile("consumer", &["examples/c/consumer.c"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring");
    let mut tx =
        Producer::<K>::create(Region::create_file(&path, config.region_len()).unwrap(), &config).unwrap();
    let mut child = Command::new(exe).arg(&path).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    expect_line(&mut out, "ready"); // attached (a broadcast subscriber sees every message)
    let mut buf = vec![0u8; 100];
    for seq in 0..COUNT {
        buf.resize(24 + (seq % 77) as usize, 0);
        encode(&mut buf, seq);
        tx.send(&buf).unwrap();
    }
    drop(tx);
    let summary = expect_line(&mut out, "received ");
    assert!(child.wait().unwrap().success(), "C consumer failed: {summary}");
    assert_eq!(summary, format!("{COUNT}, lost 0, corrupt 0"));
}

#[test]
fn a_c_consumer_receives_from_a_rust_spsc_producer() {
    c_consumer_of_rust_producer::<Spsc>(RingConfig::spsc(1 << 14));
}

#[test]
fn a_c_consumer_receives_from_a_rust_mpsc_producer() {
    c_consumer_of_rust_producer::<Mpsc>(RingConfig::mpsc(1 << 14, 4));
}

#[test]
fn a_c_subscriber_receives_from_a_rust_broadcast_producer() {
    c_consumer_of_rust_producer::<Broadcast>(RingConfig::broadcast(1 << 14, 2));
}

/// A Rust consumer of kind `K` receives COUNT messages from a C producer process (half of them
/// written in place), in order and whole.
fn rust_consumer_of_c_producer<K: RingKind>(config: RingConfig) {
    let exe = compile("producer", &["examples/c/producer.c"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring");
    let region = Arc::new(Region::create_file(&path, config.region_len()).unwrap());
    let mut rx = Consumer::<K>::create(region, &config).unwrap();
    let mut child = Command::new(exe).arg(&path).arg(COUNT.to_string()).arg("100").spawn().unwrap();
    let mut buf = Vec::new();
    let mut next = 0;
    loop {
        match rx.recv(&mut buf) {
            Ok(_) => {
                assert_eq!(decode(&buf), Some(next), "message {next}: wrong or corrupt");
                next += 1;
            }
            // The C producer attaches after we start waiting: its close ends the stream.
            Err(RecvError::Disconnected) if next > 0 => break,
            Err(RecvError::Disconnected) => std::thread::sleep(std::time::Duration::from_millis(5)),
            Err(e) => panic!("after {next} messages: {e}"),
        }
    }
    assert!(child.wait().unwrap().success(), "C producer failed");
    assert_eq!(next, COUNT);
}

#[test]
fn a_rust_consumer_receives_from_a_c_producer() {
    rust_consumer_of_c_producer::<Spsc>(RingConfig::spsc(1 << 14));
}

#[test]
fn a_rust_mpsc_consumer_receives_from_a_c_producer() {
    rust_consumer_of_c_producer::<Mpsc>(RingConfig::mpsc(1 << 14, 2));
}

#[test]
fn a_c_consumer_of_a_killed_producer_gets_peer_dead() {
    let exe = compile("consumer", &["examples/c/consumer.c"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring");
    let config = RingConfig::spsc(1 << 12);
    // Initialised here, then opened by the producer process (the slot is free again).
    drop(
        Producer::<Spsc>::create(Region::create_file(&path, config.region_len()).unwrap(), &config).unwrap(),
    );
    let gate = shm_testkit::Gate::new();
    let gate_fd = gate.write_fd();
    let producer = {
        let path = path.clone();
        shm_testkit::fork(move || {
            let mut tx = Producer::<Spsc>::open(Region::open_file(&path).unwrap()).unwrap();
            let mut buf = vec![0u8; 40];
            for seq in 0..10 {
                encode(&mut buf, seq);
                tx.send(&buf).unwrap();
            }
            shm_testkit::Gate::open_fd(gate_fd);
            loop {
                std::thread::park(); // until SIGKILL
            }
        })
    };
    assert!(gate.wait(1, std::time::Duration::from_secs(30)), "producer did not send");
    let mut child =
        Command::new(exe).arg(&path).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    expect_line(&mut out, "ready");
    producer.kill(nix::sys::signal::Signal::SIGKILL);
    producer.wait();
    let summary = expect_line(&mut out, "received ");
    let mut err = String::new();
    BufReader::new(child.stderr.take().unwrap()).read_line(&mut err).unwrap();
    assert!(!child.wait().unwrap().success());
    assert_eq!(summary, "10, lost 0, corrupt 0");
    assert!(err.contains("SHM_ERR_PEER_DEAD"), "C consumer said {err:?}");
}

#[test]
fn bad_input_gets_a_status_and_a_message_from_c() {
    let exe = compile("errors", &["crates/shm-capi/tests/c/errors.c"]);
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(exe).arg(dir.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("0 failures"), "{text}");
}

/// The header's layout constants are the Rust layout's (`shm_ring::layout::C_CONSTANTS`), and
/// `docs/layout.md` names each of them.
#[test]
fn the_header_and_the_spec_give_the_rust_layouts_constants() {
    let table = shm_ring::layout::C_CONSTANTS;
    let mut src = String::from("#include <stdio.h>\n#include \"shm_ipc.h\"\nint main(void) {\n");
    for (name, _) in table {
        src += &format!("    printf(\"%s %llu\\n\", \"{name}\", (unsigned long long)({name}));\n");
    }
    src += "    return 0;\n}\n";
    let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("constants-{}.c", std::process::id()));
    std::fs::write(&file, src).unwrap();
    let exe = compile("constants", &[file.to_str().unwrap()]);
    let out = Command::new(exe).output().unwrap();
    assert!(out.status.success());
    let printed: Vec<(String, u64)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (n, v) = l.split_once(' ').unwrap();
            (n.to_owned(), v.parse().unwrap())
        })
        .collect();
    let expected: Vec<(String, u64)> = table.iter().map(|(n, v)| (n.to_string(), *v)).collect();
    assert_eq!(printed, expected, "shm_ipc.h against the Rust layout");
    let spec = std::fs::read_to_string(root().join("docs/layout.md")).expect("docs/layout.md");
    for (name, _) in table {
        assert!(spec.contains(name), "docs/layout.md does not name {name}");
    }
}
