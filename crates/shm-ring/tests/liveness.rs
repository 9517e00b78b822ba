//! Liveness of ring ends from positive evidence only, with real processes:
//!
//! - an end in another PID namespace (this test binary re-run as a peer under
//!   `unshare --pid --fork --mount-proc`) on file and POSIX shm rings, SPSC and MPSC, consumer
//!   and producer: never taken over, never cleaned up, shown attached; after SIGKILL its blocked
//!   peer gets `PeerDead` promptly, and the slot can then be taken over;
//! - an end in another PID namespace on an anonymous ring (no lock to prove anything): never
//!   declared dead, not even after it died;
//! - a checker whose descriptor table is full declares nobody dead;
//! - two ends in one process on one region see each other's locks.
//!
//! Tests that need root or `unshare` print why they skip when they cannot run.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use shm_core::Region;
use shm_ring::{
    mpsc, spsc, AttachError, EndState, Evidence, RecvTimeoutError, RingConfig, Role, SendTimeoutError,
    TryRecvError,
};
use shm_testkit::{expect_line, fork, load_u32, role, spawn_peer_via, unique_name, wait_until};

/// Header offsets watched as handshakes (see `shm_ring::layout`).
const DATA_WAITERS: usize = 384 + 4;
const SPACE_WAITERS: usize = 512 + 4;
/// How long a blocked end may take to notice a killed peer: generous, the machine is shared.
/// (It rechecks every 40 ms; the time taken is printed.)
const NOTICE: Duration = Duration::from_secs(2);

const UNSHARE: [&str; 5] = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"];

/// Whether peers can be started in a new PID namespace here; prints why not.
fn can_unshare(test: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED {test}: needs root to create a PID namespace (unshare --pid)");
        return false;
    }
    match Command::new(UNSHARE[0]).args(&UNSHARE[1..]).arg("true").output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!(
                "SKIPPED {test}: `{} true` failed ({}): {}",
                UNSHARE.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("SKIPPED {test}: cannot run {}: {e}", UNSHARE[0]);
            false
        }
    }
}

/// Where a test ring lives: a file in a temporary directory, or a POSIX shm object.
enum Place {
    File { dir: tempfile::TempDir, path: PathBuf },
    Shm { name: String },
}

impl Place {
    fn file() -> Place {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        Place::File { dir, path }
    }

    fn shm() -> Place {
        Place::Shm { name: unique_name("/shm-ring-liveness") }
    }

    fn create(&self, config: &RingConfig) -> Arc<Region> {
        let region = match self {
            Place::File { path, .. } => Region::create_file(path, config.region_len()).unwrap(),
            Place::Shm { name } => Region::create_shm(name, config.region_len()).unwrap(),
        };
        shm_ring::init(&region, config).unwrap();
        Arc::new(region)
    }

    fn open(&self) -> Region {
        match self {
            Place::File { path, .. } => Region::open_file(path).unwrap(),
            Place::Shm { name } => Region::open_shm(name).unwrap(),
        }
    }

    /// The directory `cleanup` looks in, and the ring's path there.
    fn dir_and_path(&self) -> (PathBuf, PathBuf) {
        match self {
            Place::File { dir, path } => (dir.path().to_owned(), path.clone()),
            Place::Shm { name } => (PathBuf::from("/dev/shm"), Path::new("/dev/shm").join(&name[1..])),
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Place::File { path, .. } => vec![("SHM_FILE", path.display().to_string())],
            Place::Shm { name } => vec![("SHM_NAME", name.clone())],
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Place::Shm { name } = self {
            let _ = Region::unlink_shm(name);
        }
    }
}

/// A peer end running in a new PID namespace, attached once constructed.
struct NsPeer {
    child: Child,
    /// The peer's pid as seen from here (it is pid 1 in its own namespace).
    pid: Pid,
}

impl NsPeer {
    fn start(role: &str, place: &Place) -> NsPeer {
        let mut child = spawn_peer_via(&UNSHARE, "peer", role, &place.env());
        let mut out = BufReader::new(child.stdout.take().unwrap());
        // Handshake: the peer prints this once its end is attached.
        let inner = expect_line(&mut out, "attached as pid ");
        assert_eq!(inner, "1", "the peer runs as the init of a new PID namespace");
        // unshare forked the peer: it is unshare's only child.
        let id = child.id();
        let children = std::fs::read_to_string(format!("/proc/{id}/task/{id}/children")).unwrap();
        let pid =
            Pid::from_raw(children.split_whitespace().next().expect("unshare's child").parse().unwrap());
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        NsPeer { child, pid }
    }

    /// SIGKILL the peer process itself (not unshare).
    fn kill(&mut self) -> Instant {
        let at = Instant::now();
        nix::sys::signal::kill(self.pid, Signal::SIGKILL).unwrap();
        at
    }
}

impl Drop for NsPeer {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn watch(region: &Region, offset: usize) -> u32 {
    // SAFETY: `region` is a mapped ring region longer than the header; offsets are 4-aligned
    // header words below 640.
    unsafe { load_u32(region.as_ptr(), offset) }
}

/// What every test of an end in another namespace checks before killing it: its slot is shown
/// attached by lock evidence from another namespace, and `cleanup` leaves the ring alone.
fn check_not_dead_not_cleaned(place: &Place, region: &Region, consumer: bool) {
    let s = shm_ring::status(region).unwrap();
    let e = if consumer { &s.consumer } else { &s.producers[0] };
    assert_eq!(e.state, EndState::Attached, "{e:?}");
    assert_eq!(e.evidence, Some(Evidence::Lock), "{e:?}");
    assert_eq!(e.same_pid_namespace, Some(false), "{e:?}");
    assert_eq!(e.pid, 1, "{e:?}");
    assert!(s.in_use());
    let (dir, path) = place.dir_and_path();
    let would = shm_ring::cleanup(&dir, &shm_ring::CleanupOptions::new().dry_run(true)).unwrap();
    assert!(!would.removed().any(|p| p == path), "cleanup would remove a ring in use: {would:?}");
}

fn assert_noticed(killed: Instant, at: Instant, what: &str) {
    let took = at.duration_since(killed);
    eprintln!("{what}: the killed peer in another PID namespace was noticed after {took:?}");
    assert!(took < NOTICE, "death noticed only after {took:?}");
}

#[test]
fn spsc_consumer_in_another_pid_namespace() {
    if !can_unshare("spsc_consumer_in_another_pid_namespace") {
        return;
    }
    let config = RingConfig::spsc(4096);
    let place = Place::shm();
    let region = place.create(&config);
    let mut peer = NsPeer::start("spsc-consumer", &place);

    // A second consumer is refused: the peer's lock proves it alive.
    let e = spsc::Consumer::open(place.open()).unwrap_err();
    assert!(matches!(e, AttachError::AlreadyAttached { role: Role::Consumer, pid: 1 }), "{e:?}");
    check_not_dead_not_cleaned(&place, &region, true);

    // A producer blocked on a full ring learns of the peer's death.
    let mut p = spsc::Producer::open(region.clone()).unwrap();
    while p.try_send([7u8; 100]).is_ok() {}
    let sender = std::thread::spawn(move || {
        (p.send_timeout([8u8; 100], Duration::from_secs(20)).map_err(|e| e.to_string()), Instant::now())
    });
    assert!(wait_until(Duration::from_secs(20), || watch(&region, SPACE_WAITERS) != 0));
    let killed = peer.kill();
    let (r, at) = sender.join().unwrap();
    assert_eq!(r, Err("consumer process 1 died".to_owned()), "a blocked producer (waiting at most 20 s)");
    assert_noticed(killed, at, "spsc producer");

    // Its slot can now be taken over, and the new consumer reads what was sent.
    let mut c = spsc::Consumer::open(place.open()).unwrap();
    assert_eq!(c.try_read().unwrap().to_vec(), [7u8; 100]);
    let s = shm_ring::status(&region).unwrap();
    assert_eq!((s.consumer.state, s.consumer.same_pid_namespace), (EndState::Attached, Some(true)));
}

#[test]
fn spsc_producer_in_another_pid_namespace() {
    if !can_unshare("spsc_producer_in_another_pid_namespace") {
        return;
    }
    let config = RingConfig::spsc(4096);
    let place = Place::file();
    let region = place.create(&config);
    let mut peer = NsPeer::start("spsc-producer", &place);

    let e = spsc::Producer::open(place.open()).unwrap_err();
    assert!(matches!(e, AttachError::AlreadyAttached { role: Role::Producer, pid: 1 }), "{e:?}");
    check_not_dead_not_cleaned(&place, &region, false);

    let mut c = spsc::Consumer::open(region.clone()).unwrap();
    let mut buf = Vec::new();
    c.recv_timeout(&mut buf, Duration::from_secs(20)).unwrap();
    assert_eq!(buf, b"hello from another namespace");
    let receiver =
        std::thread::spawn(move || (c.recv_timeout(&mut buf, Duration::from_secs(20)), Instant::now()));
    assert!(wait_until(Duration::from_secs(20), || watch(&region, DATA_WAITERS) != 0));
    let killed = peer.kill();
    let (r, at) = receiver.join().unwrap();
    assert_eq!(r, Err(RecvTimeoutError::PeerDead { pid: 1 }), "a blocked consumer (waiting at most 20 s)");
    assert_noticed(killed, at, "spsc consumer");

    let mut p = spsc::Producer::open(place.open()).unwrap();
    p.try_send(b"taken over").unwrap();
}

#[test]
fn mpsc_consumer_in_another_pid_namespace() {
    if !can_unshare("mpsc_consumer_in_another_pid_namespace") {
        return;
    }
    let config = RingConfig::mpsc(4096, 2);
    let place = Place::file();
    let region = place.create(&config);
    let mut peer = NsPeer::start("mpsc-consumer", &place);

    let e = mpsc::Consumer::open(place.open()).unwrap_err();
    assert!(matches!(e, AttachError::AlreadyAttached { role: Role::Consumer, pid: 1 }), "{e:?}");
    check_not_dead_not_cleaned(&place, &region, true);

    let mut p = mpsc::Producer::open(region.clone()).unwrap();
    while p.try_send([7u8; 100]).is_ok() {}
    let sender = std::thread::spawn(move || {
        (p.send_timeout([8u8; 100], Duration::from_secs(20)).map_err(|e| e.to_string()), Instant::now())
    });
    assert!(wait_until(Duration::from_secs(20), || watch(&region, SPACE_WAITERS) != 0));
    let killed = peer.kill();
    let (r, at) = sender.join().unwrap();
    assert_eq!(r, Err("consumer process 1 died".to_owned()), "a blocked producer (waiting at most 20 s)");
    assert_noticed(killed, at, "mpsc producer");

    let mut c = mpsc::Consumer::open(place.open()).unwrap();
    assert_eq!(c.try_read().unwrap().to_vec(), [7u8; 100]);
}

#[test]
fn mpsc_producer_in_another_pid_namespace() {
    if !can_unshare("mpsc_producer_in_another_pid_namespace") {
        return;
    }
    let config = RingConfig::mpsc(4096, 1);
    let place = Place::shm();
    let region = place.create(&config);
    let mut peer = NsPeer::start("mpsc-producer", &place);

    // Its one slot is not taken over.
    let e = mpsc::Producer::open(place.open()).unwrap_err();
    assert!(matches!(e, AttachError::NoFreeSlot { slots: 1 }), "{e:?}");
    check_not_dead_not_cleaned(&place, &region, false);

    let mut c = mpsc::Consumer::open(region.clone()).unwrap();
    let mut buf = Vec::new();
    c.recv_timeout(&mut buf, Duration::from_secs(20)).unwrap();
    assert_eq!(buf, b"hello from another namespace");
    let receiver =
        std::thread::spawn(move || (c.recv_timeout(&mut buf, Duration::from_secs(20)), Instant::now()));
    assert!(wait_until(Duration::from_secs(20), || watch(&region, DATA_WAITERS) != 0));
    let killed = peer.kill();
    let (r, at) = receiver.join().unwrap();
    assert_eq!(r, Err(RecvTimeoutError::PeerDead { pid: 1 }), "a blocked consumer (waiting at most 20 s)");
    assert_noticed(killed, at, "mpsc consumer");

    let p = mpsc::Producer::open(place.open()).unwrap();
    assert_eq!(p.slot(), 0, "the dead producer's slot is taken over");
}

/// The ends started in another PID namespace by the tests above.
#[test]
#[ignore = "started by the other tests as a separate process"]
fn peer() {
    let Some(role) = role() else { return };
    let region = match (std::env::var("SHM_FILE"), std::env::var("SHM_NAME")) {
        (Ok(path), _) => Region::open_file(path).unwrap(),
        (_, Ok(name)) => Region::open_shm(&name).unwrap(),
        _ => panic!("SHM_FILE or SHM_NAME"),
    };
    let hello = b"hello from another namespace";
    // Keep the end alive until killed.
    let _end: Box<dyn std::any::Any> = match role.as_str() {
        "spsc-consumer" => Box::new(spsc::Consumer::open(region).unwrap()),
        "spsc-producer" => {
            let mut p = spsc::Producer::open(region).unwrap();
            p.try_send(hello).unwrap();
            Box::new(p)
        }
        "mpsc-consumer" => Box::new(mpsc::Consumer::open(region).unwrap()),
        "mpsc-producer" => {
            let mut p = mpsc::Producer::open(region).unwrap();
            p.try_send(hello).unwrap();
            Box::new(p)
        }
        other => panic!("unknown role {other}"),
    };
    println!("attached as pid {}", std::process::id());
    loop {
        nix::unistd::pause();
    }
}

/// On an anonymous ring there is no lock: an end whose PID namespace differs from the checker's
/// can be told neither alive nor dead, so it is never declared dead, not even once it died.
#[test]
fn an_anonymous_ring_end_in_another_pid_namespace_is_never_declared_dead() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED an_anonymous_ring_end_in_another_pid_namespace_is_never_declared_dead: needs root to unshare a PID namespace");
        return;
    }
    let config = RingConfig::spsc(4096);
    let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
    shm_ring::init(&region, &config).unwrap();
    let flags = Region::anonymous(4096).unwrap();
    // SAFETY: the first two words of a page-aligned mapping that outlives every use, touched
    // only atomically by this process and its children.
    let (ready, inner_pid) = unsafe {
        let p = flags.as_ptr() as *const AtomicU32;
        (&*p, &*p.add(1))
    };
    let child = fork(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID).expect("unshare(CLONE_NEWPID)");
        // The first child after unshare is pid 1 of the new namespace.
        let inner = fork(|| {
            let _c = spsc::Consumer::open(region.clone()).unwrap();
            // SYNC POINT: Release pairs with the parent's Acquire: the slot is claimed.
            ready.store(1, Ordering::Release);
            loop {
                nix::unistd::pause();
            }
        });
        inner_pid.store(inner.pid() as u32, Ordering::Release);
        match inner.wait() {
            shm_testkit::Exit::Signal(9) => 0,
            other => panic!("inner peer ended {other:?}"),
        }
    });
    // Handshake: the inner peer claimed the slot, and its pid (as seen here) is known.
    assert!(wait_until(Duration::from_secs(20), || ready.load(Ordering::Acquire) != 0
        && inner_pid.load(Ordering::Acquire) != 0));
    let inner = Pid::from_raw(inner_pid.load(Ordering::Acquire) as i32);
    let check = || {
        let s = shm_ring::status(&region).unwrap();
        assert_eq!(s.consumer.state, EndState::Unknown, "{:?}", s.consumer);
        assert_eq!((s.consumer.pid, s.consumer.evidence), (1, Some(Evidence::Pid)));
        assert_eq!(s.consumer.same_pid_namespace, Some(false));
        let e = spsc::Consumer::open(region.clone()).unwrap_err();
        assert!(matches!(e, AttachError::AlreadyAttached { role: Role::Consumer, pid: 1 }), "{e:?}");
    };
    check();
    nix::sys::signal::kill(inner, Signal::SIGKILL).unwrap();
    child.join();
    check(); // dead, but nothing here can prove it
}

/// A checker (a forked child) whose descriptor table is full: lock probes need no descriptor
/// and pid checks that cannot read `/proc` say "unknown", so nobody is declared dead, taken
/// over, or reported dead to a waiting end.
#[test]
fn a_checker_at_the_descriptor_limit_declares_nobody_dead() {
    let config = RingConfig::spsc(4096);
    let place = Place::file();
    let file = place.create(&config);
    let anon = Arc::new(Region::anonymous(config.region_len()).unwrap());
    shm_ring::init(&anon, &config).unwrap();
    // This process holds the consumer ends: by lock on the file, by pid on the anonymous ring.
    let _file_consumer = spsc::Consumer::open(file.clone()).unwrap();
    let _anon_consumer = spsc::Consumer::open(anon.clone()).unwrap();
    let child = fork(|| {
        use nix::sys::resource::{setrlimit, Resource};
        setrlimit(Resource::RLIMIT_NOFILE, 64, 64).expect("lower RLIMIT_NOFILE");
        let mut hoard = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            hoard.push(f);
        }
        assert_eq!(std::fs::File::open("/dev/null").unwrap_err().raw_os_error(), Some(libc::EMFILE));
        for (region, expect) in [(&file, EndState::Attached), (&anon, EndState::Unknown)] {
            let s = shm_ring::status(region).unwrap();
            assert_eq!(s.consumer.state, expect, "{:?}", s.consumer);
            let e = spsc::Consumer::open(region.clone()).unwrap_err();
            assert!(matches!(e, AttachError::AlreadyAttached { role: Role::Consumer, .. }), "{e:?}");
            // A producer (attached without a lock: no descriptor for one) waits on a full ring,
            // checking the consumer every 40 ms, and times out instead of seeing it dead.
            let mut p = spsc::Producer::open(region.clone()).unwrap();
            while p.try_send([1u8; 100]).is_ok() {}
            match p.send_timeout([2u8; 100], Duration::from_millis(300)) {
                Err(SendTimeoutError::Timeout(_)) => {}
                other => panic!("expected a timeout, got {:?}", other.map_err(|e| e.to_string())),
            }
        }
        0
    });
    child.join();
}

/// Two ends in one process on one region hold locks through descriptors of their own, so each
/// sees the other's, and a third attach is refused while they live.
#[test]
fn ends_on_one_region_see_each_other() {
    let config = RingConfig::spsc(4096);
    let place = Place::file();
    let region = place.create(&config);
    let p = spsc::Producer::open(region.clone()).unwrap();
    let c = spsc::Consumer::open(region.clone()).unwrap();
    let s = shm_ring::status(&region).unwrap();
    for e in [&s.consumer, &s.producers[0]] {
        assert_eq!(
            (e.state, e.evidence, e.same_pid_namespace),
            (EndState::Attached, Some(Evidence::Lock), Some(true))
        );
    }
    assert!(matches!(spsc::Consumer::open(region.clone()), Err(AttachError::AlreadyAttached { .. })));
    assert!(matches!(spsc::Producer::open(place.open()), Err(AttachError::AlreadyAttached { .. })));
    drop(c);
    assert_eq!(shm_ring::status(&region).unwrap().consumer.state, EndState::Closed);
    let _c = spsc::Consumer::open(place.open()).unwrap();
    drop(p);
    assert_eq!(shm_ring::status(&region).unwrap().producers[0].state, EndState::Closed);
}

/// A process whose main thread exited while another thread goes on using the ring shows as a
/// zombie in `/proc/PID/stat`: it is not dead, and its end is not taken over.
#[test]
fn a_process_whose_main_thread_exited_is_not_dead() {
    let config = RingConfig::mpsc(256, 1);
    let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
    let mut c = mpsc::Consumer::create(region.clone(), &config).unwrap();
    let leader_done = shm_testkit::Gate::new();
    let checked = shm_testkit::Gate::new();
    let child = {
        let region = region.clone();
        let (done_fd, checked_read) = (leader_done.write_fd(), &checked);
        let checked_read: *const shm_testkit::Gate = checked_read;
        let checked_read = checked_read as usize;
        fork(move || {
            let mut p = mpsc::Producer::open(region).unwrap();
            std::thread::spawn(move || {
                // SAFETY: the Gate lives in the parent's stack frame, copied into this child by
                // fork; the frame is never unwound here (the main thread exits with SYS_exit).
                let checked = unsafe { &*(checked_read as *const shm_testkit::Gate) };
                assert!(checked.wait(1, Duration::from_secs(60)));
                let ok = p.try_send(b"alive").is_ok();
                // SAFETY: ends the whole process, without running the parent's destructors.
                unsafe { libc::_exit(if ok { 0 } else { 3 }) }
            });
            shm_testkit::Gate::open_fd(done_fd);
            // SAFETY: ends only the calling (main) thread; the spawned one goes on.
            unsafe { libc::syscall(libc::SYS_exit, 0) };
            0
        })
    };
    assert!(leader_done.wait(1, Duration::from_secs(20)));
    let stat = format!("/proc/{}/stat", child.pid());
    let zombie_leader = wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&stat)
            .is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')))
    });
    assert!(zombie_leader, "the leader shows as a zombie");
    match mpsc::Producer::open(region.clone()) {
        Err(AttachError::NoFreeSlot { .. } | AttachError::AlreadyAttached { .. }) => {}
        other => panic!("the live producer's slot was taken over: {other:?}"),
    }
    assert_eq!(c.try_recv(&mut Vec::new()), Err(TryRecvError::Empty), "not reported dead");
    checked.open();
    child.join(); // its thread sent successfully
    let mut buf = Vec::new();
    c.try_recv(&mut buf).unwrap();
    assert_eq!(buf, b"alive");
}
