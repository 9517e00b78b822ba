//! Operating rings from outside: status of each end, rings whose creator crashed during
//! initialisation, finding and cleaning up abandoned rings (keeping undelivered messages, going
//! on past rings it cannot remove), and refusing rings another user could write.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use shm_core::{CreateOptions, Region};
use shm_ring::spsc::{Consumer, Producer};
use shm_ring::{
    AttachError, AttachOptions, CleanupOptions, CleanupOutcome, EndState, InitState, KeepReason, Kind,
    RingConfig, Undelivered,
};
use shm_testkit::fork;

/// An attached owner word without a lock, its PID namespace recorded (`N`), for `pid` and
/// `start` (see `shm_ring::layout`).
fn owner_word(pid: u32, start: u64) -> u64 {
    1u64 << 62 | 1 << 60 | (pid as u64) << 37 | (start & ((1 << 37) - 1))
}

/// Write a creator word that names `pid`/`start` in this process's PID namespace, as a
/// creator left it: state "initialising", the word at 40, the namespace at 48.
fn write_creator(region: &Region, word: u64) {
    let ns = std::fs::metadata("/proc/self/ns/pid").unwrap().ino() as u32;
    region.write_at(20, &1u32.to_le_bytes()).unwrap();
    region.write_at(56, &ns.to_le_bytes()).unwrap(); // creator_ns
    region.write_at(40, &word.to_le_bytes()).unwrap();
}

fn start_time(stat: &str) -> Option<u64> {
    stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(19)).and_then(|v| v.parse().ok())
}

/// The owner word of a process that has exited (and been reaped): pid plus its start time.
fn dead_owner_word() -> u64 {
    let child = fork(|| 0);
    let pid = child.pid() as u32;
    let start =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| start_time(&s)).unwrap_or(1);
    child.join();
    owner_word(pid, start)
}

#[test]
fn status_shows_positions_records_and_each_end() {
    let config = RingConfig::spsc(4096);
    let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
    shm_ring::init(&region, &config).unwrap();
    let mut p = Producer::open(region.clone()).unwrap();
    for i in 0..5u8 {
        p.try_send([i; 10]).unwrap();
    }
    // A consumer in a child process that is then killed without closing.
    let child = fork({
        let region = region.clone();
        move || {
            let _c = Consumer::open(region).unwrap();
            loop {
                nix::unistd::pause();
            }
        }
    });
    assert!(shm_testkit::wait_until(Duration::from_secs(20), || shm_ring::status(&region)
        .unwrap()
        .consumer
        .state
        == EndState::Attached));
    child.kill(Signal::SIGKILL);
    let _ = child.wait();
    let s = shm_ring::status(&region).unwrap();
    assert_eq!(s.init, InitState::Ready);
    assert_eq!(s.kind, Some(Kind::Spsc));
    assert_eq!((s.capacity, s.head, s.tail), (4096, 0, 5 * 24));
    assert_eq!((s.bytes_in_flight, s.records_in_flight), (120, 5));
    assert_eq!(s.producers.len(), 1);
    assert_eq!(s.producers[0].state, EndState::Attached);
    assert_eq!(s.producers[0].pid, std::process::id());
    assert_eq!(s.consumer.state, EndState::Dead);
    assert!(s.in_use());
    drop(p);
    let s = shm_ring::status(&region).unwrap();
    assert_eq!(s.producers[0].state, EndState::Closed);
    assert!(!s.in_use());
}

#[test]
fn a_ring_whose_creator_crashed_during_init_is_recognised_and_recreated() {
    let config = RingConfig::spsc(4096);
    let region = Arc::new(Region::anonymous(config.region_len()).unwrap());
    // As left by a creator killed half-way: state "initialising", creator a dead process.
    write_creator(&region, dead_owner_word());
    assert_eq!(shm_ring::status(&region).unwrap().init, InitState::CrashedDuringInit);
    let opts = AttachOptions::new().init_timeout(Duration::from_millis(20));
    assert!(matches!(
        Consumer::open_with(region.clone(), &opts),
        Err(AttachError::NotInitialized { state: 1, .. })
    ));
    // Initialising again takes it over.
    shm_ring::init(&region, &config).unwrap();
    assert_eq!(shm_ring::status(&region).unwrap().init, InitState::Ready);
    let mut p = Producer::open(region.clone()).unwrap();
    let mut c = Consumer::open(region).unwrap();
    p.try_send(b"works").unwrap();
    assert_eq!(c.try_read().unwrap().to_vec(), b"works");
}

#[test]
fn a_live_creator_is_not_taken_over() {
    let config = RingConfig::spsc(4096);
    let region = Region::anonymous(config.region_len()).unwrap();
    let start = start_time(&std::fs::read_to_string("/proc/self/stat").unwrap()).unwrap();
    write_creator(&region, owner_word(std::process::id(), start));
    assert_eq!(shm_ring::status(&region).unwrap().init, InitState::Initializing);
    assert!(shm_ring::init(&region, &config).is_err());
}

#[test]
fn find_and_clean_up_abandoned_rings() {
    let dir = tempfile::tempdir().unwrap();
    let config = RingConfig::spsc(4096);
    let make = |name: &str| Region::create_file(dir.path().join(name), config.region_len()).unwrap();
    // In use: a producer attached by this (live) process.
    let in_use_ring = Producer::create(make("in-use"), &config).unwrap();
    // Abandoned: both ends came and closed.
    drop(Producer::create(make("abandoned"), &config).unwrap());
    // Creator crashed during initialisation.
    let crashed = make("crashed");
    write_creator(&crashed, dead_owner_word());
    drop(crashed);
    // Not a ring at all.
    std::fs::write(dir.path().join("notes.txt"), b"not a ring, keep me").unwrap();

    let found = shm_ring::find_rings(dir.path()).unwrap();
    let names: Vec<String> =
        found.iter().map(|r| r.path.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["abandoned", "crashed", "in-use"]);

    let would = shm_ring::cleanup(dir.path(), &CleanupOptions::new().dry_run(true)).unwrap();
    let would_remove: Vec<PathBuf> = would.removed().map(PathBuf::from).collect();
    assert_eq!(would_remove, [dir.path().join("abandoned"), dir.path().join("crashed")], "{would}");
    assert!(matches!(would.entries[0].outcome, CleanupOutcome::WouldRemove { discarded: None }));
    let kept: Vec<_> = would.kept().collect();
    let pids = vec![std::process::id()];
    assert_eq!(kept, [(dir.path().join("in-use").as_path(), &KeepReason::InUse { pids })]);
    assert!(dir.path().join("abandoned").exists(), "dry run removes nothing");
    let report = shm_ring::cleanup(dir.path(), &CleanupOptions::new()).unwrap();
    assert_eq!(report.removed().collect::<Vec<_>>(), would_remove, "{report}");
    assert_eq!(report.failed().count(), 0, "{report}");
    let in_use = dir.path().join("in-use");
    assert_eq!(
        report.to_string(),
        format!(
            "removed {}\nremoved {}\nkept {}: in use by pid {}\n",
            would_remove[0].display(),
            would_remove[1].display(),
            in_use.display(),
            std::process::id()
        )
    );
    assert!(!dir.path().join("abandoned").exists() && !dir.path().join("crashed").exists());
    assert!(dir.path().join("in-use").exists() && dir.path().join("notes.txt").exists());
    drop(in_use_ring);
}

#[test]
fn a_ring_with_undelivered_messages_and_dead_ends_is_kept_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pending");
    let config = RingConfig::spsc(4096);
    let region = Arc::new(Region::create_file(&path, config.region_len()).unwrap());
    shm_ring::init(&region, &config).unwrap();
    // A producer process sends four messages and dies without closing; then a consumer process
    // takes one, hands its space back, and dies without closing too.
    fork({
        let region = region.clone();
        move || {
            let mut p = Producer::open(region).unwrap();
            for i in 0..4u8 {
                p.try_send([i; 100]).unwrap();
            }
            std::mem::forget(p);
            0
        }
    })
    .join();
    fork({
        let region = region.clone();
        move || {
            let mut c = Consumer::open(region).unwrap();
            assert_eq!(c.try_read().unwrap().to_vec(), [0; 100]);
            c.flush();
            std::mem::forget(c);
            0
        }
    })
    .join();
    drop(region);
    let s = shm_ring::status(&Region::open_file(&path).unwrap()).unwrap();
    assert_eq!((s.consumer.state, s.producers[0].state), (EndState::Dead, EndState::Dead));
    let undelivered = Undelivered { messages: 3, bytes: 3 * 112 };

    let report = shm_ring::cleanup(dir.path(), &CleanupOptions::new()).unwrap();
    let kept: Vec<_> = report.kept().collect();
    assert_eq!(kept, [(path.as_path(), &KeepReason::Undelivered(undelivered))], "{report}");
    assert_eq!(report.to_string(), format!("kept {}: 3 messages (336 bytes) undelivered\n", path.display()));
    assert!(path.exists());

    let forced = CleanupOptions::new().force(true);
    let report = shm_ring::cleanup(dir.path(), &forced.dry_run(true)).unwrap();
    assert!(
        matches!(report.entries[0].outcome, CleanupOutcome::WouldRemove { discarded: Some(u) } if u == undelivered),
        "{report:?}"
    );
    assert!(path.exists(), "dry run removes nothing");
    let report = shm_ring::cleanup(dir.path(), &forced).unwrap();
    assert_eq!(
        report.to_string(),
        format!("removed {}, discarding 3 messages (336 bytes) undelivered\n", path.display())
    );
    assert!(!path.exists());
}

/// An abandoned SPSC ring (both ends came and closed) at `path`, created with `mode`.
fn closed_ring(path: &Path, mode: u32) {
    let config = RingConfig::spsc(4096);
    let region = CreateOptions::new().mode(mode).create_file(path, config.region_len()).unwrap();
    drop(Producer::create(region, &config).unwrap());
}

#[test]
fn cleanup_goes_on_past_a_ring_it_cannot_remove() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name);
    if !nix::unistd::geteuid().is_root() {
        // A directory we cannot write: every removal fails, and each failure is reported.
        for name in ["a", "b", "c"] {
            closed_ring(&at(name), 0o600);
        }
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
        let report = shm_ring::cleanup(dir.path(), &CleanupOptions::new()).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let failed: Vec<_> = report.failed().map(|(p, e)| (p.to_path_buf(), e.kind())).collect();
        let denied = std::io::ErrorKind::PermissionDenied;
        assert_eq!(failed, [(at("a"), denied), (at("b"), denied), (at("c"), denied)], "{report}");
        return;
    }
    // As in a shared /dev/shm: a sticky, world-writable directory holding a ring of root's
    // (readable by all) between rings of "nobody". Run as nobody, cleanup cannot remove root's
    // ring (EPERM) and must still remove the others.
    closed_ring(&at("a-nobody"), 0o600);
    closed_ring(&at("b-root"), 0o644);
    closed_ring(&at("c-nobody"), 0o600);
    let nobody = nix::unistd::Uid::from_raw(65534);
    let nogroup = nix::unistd::Gid::from_raw(65534);
    for name in ["a-nobody", "c-nobody"] {
        nix::unistd::chown(&at(name), Some(nobody), Some(nogroup)).unwrap();
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let (from_child, to_parent) = nix::unistd::pipe().unwrap();
    let child = fork(|| {
        if nix::unistd::setgroups(&[]).is_err()
            || nix::unistd::setgid(nogroup).is_err()
            || nix::unistd::setuid(nobody).is_err()
        {
            return 2;
        }
        let text = match shm_ring::cleanup(dir.path(), &CleanupOptions::new()) {
            Ok(report) => {
                let mut text = String::new();
                for e in &report.entries {
                    let name = e.path.file_name().unwrap().to_string_lossy();
                    let line = match &e.outcome {
                        CleanupOutcome::Removed { .. } => format!("removed {name}"),
                        CleanupOutcome::Failed(err) => {
                            let errno = nix::errno::Errno::from_raw(err.raw_os_error().unwrap_or(0));
                            format!("failed {name} {:?} {errno:?}", err.kind())
                        }
                        other => format!("{other:?} {name}"),
                    };
                    text.push_str(&line);
                    text.push('\n');
                }
                format!("{text}--\n{report}\0")
            }
            Err(e) => format!("cleanup failed: {e}\0"),
        };
        let mut out = std::fs::File::from(to_parent);
        std::io::Write::write_all(&mut out, text.as_bytes()).map_or(3, |()| 0)
    });
    // Read up to the terminator, not to EOF: a child another test forks meanwhile may hold a
    // copy of the pipe's write end.
    child.join();
    let mut text = Vec::new();
    let mut from_child = std::io::BufReader::new(std::fs::File::from(from_child));
    std::io::BufRead::read_until(&mut from_child, 0, &mut text).unwrap();
    let text = String::from_utf8_lossy(&text).trim_end_matches('\0').to_owned();
    let (summary, display) = text.split_once("--\n").unwrap_or((&text, ""));
    assert_eq!(
        summary, "removed a-nobody\nfailed b-root PermissionDenied EPERM\nremoved c-nobody\n",
        "{text}"
    );
    let b_root = at("b-root");
    assert!(
        display.contains(&format!("failed to remove {}: Operation not permitted", b_root.display())),
        "{text}"
    );
    assert!(!at("a-nobody").exists() && b_root.exists() && !at("c-nobody").exists());
}
#[test]
fn rings_others_can_write_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let config = RingConfig::spsc(4096);
    let path = dir.path().join("world-writable");
    let region = CreateOptions::new().mode(0o666).create_file(&path, config.region_len()).unwrap();
    shm_ring::init(&region, &config).unwrap();
    let e = Consumer::open(Region::open_file(&path).unwrap()).unwrap_err();
    assert!(matches!(e, AttachError::UnsafePermissions { mode: 0o666, .. }), "{e:?}");
    assert!(e.to_string().contains("allow_foreign"), "{e}");
    let opts = AttachOptions::new().allow_foreign(true);
    Consumer::open_with(Region::open_file(&path).unwrap(), &opts).unwrap();

    if nix::unistd::geteuid().is_root() {
        // Owned by another user (mode 0600 otherwise fine): refused too.
        let path = dir.path().join("foreign");
        let region = Region::create_file(&path, config.region_len()).unwrap();
        shm_ring::init(&region, &config).unwrap();
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = Producer::open(Region::open_file(&path).unwrap()).unwrap_err();
        assert!(matches!(e, AttachError::UnsafePermissions { owner: 65534, mode: 0o600, .. }), "{e:?}");
    }
}
