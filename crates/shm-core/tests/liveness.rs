//! Liveness evidence between real processes: OFD locks on every backing kind (seen from another
//! region and another process, released by the kernel at SIGKILL, kept by a forked child), and
//! pid evidence that stays "unknown" without `/proc`, under `hidepid` and at the descriptor
//! limit. Tests that need root (mount namespaces) say so and skip without it.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::Signal;
use nix::unistd::{getppid, Uid};
use shm_core::{pid_namespace, Liveness, ProcessIdentity, Region};
use shm_testkit::{fork, unique_name, wait_until};

const LEN: usize = 4096;
/// The byte the tests lock.
const END: usize = 640;

/// A word of an anonymous region shared with forked children, for handshakes.
struct Flags(Region);

impl Flags {
    fn new() -> Flags {
        Flags(Region::anonymous(4096).unwrap())
    }

    fn word(&self, i: usize) -> &AtomicU32 {
        // SAFETY: i * 4 + 4 <= 4096 for the few indices used, the mapping is page-aligned and
        // outlives the reference, and every process touches these words only atomically.
        unsafe { &*(self.0.as_ptr().add(i * 4) as *const AtomicU32) }
    }

    /// SYNC POINT: Release pairs with the Acquire in `wait`.
    fn set(&self, i: usize, v: u32) {
        self.word(i).store(v, Ordering::Release);
    }

    /// Wait (bounded) until word `i` is non-zero and return it: the handshake, not a sleep.
    fn wait(&self, i: usize) -> u32 {
        assert!(
            wait_until(Duration::from_secs(20), || self.word(i).load(Ordering::Acquire) != 0),
            "no handshake"
        );
        self.word(i).load(Ordering::Acquire)
    }
}

/// Every region kind that can hold locks, each with a second region of the same object.
fn lockable_pairs() -> Vec<(Region, Region, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("obj");
    let file = Region::create_file(&path, LEN).unwrap();
    let file2 = Region::open_file(&path).unwrap();
    let name = unique_name("/shm-core-liveness");
    let shm = Region::create_shm(&name, LEN).unwrap();
    let shm2 = Region::open_shm(&name).unwrap();
    Region::unlink_shm(&name).unwrap();
    let memfd = Region::create_memfd("liveness", LEN).unwrap();
    let dup = memfd.fd().unwrap().try_clone_to_owned().unwrap();
    let memfd2 = Region::open_memfd(dup).unwrap();
    vec![
        (file, file2, dir),
        (shm, shm2, tempfile::tempdir().unwrap()),
        (memfd, memfd2, tempfile::tempdir().unwrap()),
    ]
}

#[test]
fn a_lock_is_seen_through_every_region_of_the_object_and_released_on_drop() {
    for (a, b, _dir) in lockable_pairs() {
        let what = format!("{:?}", a.backing());
        assert_eq!(b.probe_end(END), Liveness::Gone, "{what}: nobody holds it yet");
        let lock = a.lock_end(END).unwrap().expect("a lock on a file, shm or memfd region");
        assert_eq!(lock.offset(), END as u64);
        // Seen through the other region and through the locking region's own descriptor
        // (which never holds a lock itself): the lock is on a dedicated open file description.
        assert_eq!(b.probe_end(END), Liveness::Alive, "{what}");
        assert_eq!(a.probe_end(END), Liveness::Alive, "{what}");
        assert_eq!(a.probe_end(END + 1), Liveness::Gone, "{what}: one byte only");
        for r in [&a, &b] {
            let e = r.lock_end(END).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{what}: {e}");
            assert!(e.to_string().contains("another open file description"), "{e}");
        }
        drop(lock);
        assert_eq!(b.probe_end(END), Liveness::Gone, "{what}: released on drop");
        assert!(b.lock_end(END).unwrap().is_some(), "{what}");
    }
}

#[test]
fn a_read_only_region_probes_and_takes_read_locks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("obj");
    let rw = Region::create_file(&path, LEN).unwrap();
    let ro = shm_core::OpenOptions::new().read_only().open_file(&path).unwrap();
    let lock = rw.lock_end(END).unwrap().unwrap();
    assert_eq!(ro.probe_end(END), Liveness::Alive);
    drop(lock);
    let read_lock = ro.lock_end(END).unwrap().expect("a read lock through a read-only descriptor");
    assert_eq!(rw.probe_end(END), Liveness::Alive, "a read lock is seen too");
    drop(read_lock);
    assert_eq!(rw.probe_end(END), Liveness::Gone);
}

#[test]
fn anonymous_regions_have_no_lock_and_no_verdict() {
    let r = Region::anonymous(LEN).unwrap();
    assert!(r.lock_end(END).unwrap().is_none());
    assert_eq!(r.probe_end(END), Liveness::Unknown);
    let e = Region::create_memfd("small", 100).unwrap().lock_end(100).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
}

#[test]
fn the_kernel_releases_the_lock_of_a_killed_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("obj");
    let region = Region::create_file(&path, LEN).unwrap();
    let flags = Flags::new();
    let child = fork(|| {
        let region = Region::open_file(&path).unwrap();
        let _lock = region.lock_end(END).unwrap().unwrap();
        flags.set(0, 1);
        loop {
            nix::unistd::pause();
        }
    });
    flags.wait(0);
    assert_eq!(region.probe_end(END), Liveness::Alive);
    child.kill(Signal::SIGKILL);
    let _ = child.wait();
    assert_eq!(region.probe_end(END), Liveness::Gone);
}

/// A child forked after a lock was taken shares its open file description: the holder's death
/// is seen only once the child is gone too (conservative). An explicit drop releases it at once.
#[test]
fn a_forked_child_keeps_an_inherited_lock_until_it_exits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("obj");
    let region = Region::create_file(&path, LEN).unwrap();
    let flags = Flags::new();
    let holder = fork(|| {
        let _lock = region.lock_end(END).unwrap().unwrap();
        // Not `shm_testkit::fork`: its children die with their parent, and this one must
        // outlive the holder.
        // SAFETY: this (forked, single-threaded) process only pauses in the grandchild.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => loop {
                nix::unistd::pause();
            },
            nix::unistd::ForkResult::Parent { child } => flags.set(0, child.as_raw() as u32),
        }
        loop {
            nix::unistd::pause();
        }
    });
    let grandchild = nix::unistd::Pid::from_raw(flags.wait(0) as i32);
    holder.kill(Signal::SIGKILL);
    let _ = holder.wait();
    assert_eq!(region.probe_end(END), Liveness::Alive, "the grandchild still holds the description");
    nix::sys::signal::kill(grandchild, Signal::SIGKILL).unwrap();
    // The grandchild was reparented away from us: wait for the kernel to release the lock.
    assert!(wait_until(Duration::from_secs(20), || region.probe_end(END) == Liveness::Gone));

    // Dropping the lock unlocks explicitly, even while a forked child shares the description.
    let lock = region.lock_end(END).unwrap().unwrap();
    let child = fork(|| loop {
        nix::unistd::pause();
    });
    drop(lock);
    assert_eq!(region.probe_end(END), Liveness::Gone);
    drop(child);
}

#[test]
fn pid_evidence_of_live_and_dead_processes() {
    let me = ProcessIdentity::current();
    assert_eq!(me.liveness(), Liveness::Alive);
    let child = fork(|| 0);
    let pid = child.pid() as u32;
    child.join();
    assert_eq!(ProcessIdentity { pid, start_time: me.start_time }.liveness(), Liveness::Gone);
    // A live pid with another start time: a later process reusing the pid.
    let reused = ProcessIdentity { pid: me.pid, start_time: me.start_time + 1 };
    assert_eq!(reused.liveness(), Liveness::Gone);
    assert_eq!(ProcessIdentity { pid: 0, start_time: 1 }.liveness(), Liveness::Unknown);
}

/// Run `f` in a forked child inside a new mount namespace (so the test can remount `/proc`
/// there); `None` (with the reason printed) when this needs root and we are not.
fn in_mount_namespace(test: &str, f: impl FnOnce() -> i32) -> Option<shm_testkit::Forked> {
    if !Uid::effective().is_root() {
        eprintln!("SKIPPED {test}: needs root to unshare a mount namespace and remount /proc");
        return None;
    }
    Some(fork(|| {
        unshare(CloneFlags::CLONE_NEWNS).expect("unshare(CLONE_NEWNS)");
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
            .expect("make / private");
        f()
    }))
}

#[test]
fn without_proc_pid_evidence_is_unknown_and_locks_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("obj");
    let file = Region::create_file(&path, LEN).unwrap();
    let name = unique_name("/shm-core-noproc");
    let shm = Region::create_shm(&name, LEN).unwrap();
    let memfd = Region::create_memfd("noproc", LEN).unwrap();
    let parent = ProcessIdentity::current();
    let gone = fork(|| 0);
    let gone_pid = gone.pid() as u32;
    gone.join();
    let held = file.lock_end(END).unwrap().unwrap();
    let Some(child) = in_mount_namespace("without_proc_pid_evidence_is_unknown_and_locks_still_work", || {
        mount(Some("none"), "/proc", Some("tmpfs"), MsFlags::empty(), None::<&str>)
            .expect("tmpfs over /proc");
        assert!(!Path::new("/proc/self").exists());
        assert_eq!(pid_namespace(), None, "no /proc: namespace unknown");
        assert_eq!(ProcessIdentity::current().start_time, 0, "no /proc: start time unknown");
        // kill says the parent exists; nothing can say whether it is the recorded process.
        assert_eq!(parent.liveness(), Liveness::Unknown);
        // A pid that does not exist is still positively gone.
        assert_eq!(ProcessIdentity { pid: gone_pid, start_time: 1 }.liveness(), Liveness::Gone);
        // Locks: probes need no /proc; files and shm objects are reopened by path and name.
        assert_eq!(file.probe_end(END), Liveness::Alive);
        assert!(file.lock_end(END + 1).unwrap().is_some(), "file reopened by its path");
        assert!(shm.lock_end(END).unwrap().is_some(), "shm object reopened by its name");
        assert!(memfd.lock_end(END).unwrap().is_none(), "a memfd cannot be reopened without /proc");
        0
    }) else {
        return;
    };
    child.join();
    drop(held);
    Region::unlink_shm(&name).unwrap();
}

#[test]
fn under_hidepid_another_users_process_is_unknown() {
    let parent = ProcessIdentity::current();
    let gone = fork(|| 0);
    let gone_pid = gone.pid() as u32;
    gone.join();
    let Some(child) = in_mount_namespace("under_hidepid_another_users_process_is_unknown", || {
        mount(Some("proc"), "/proc", Some("proc"), MsFlags::empty(), Some("hidepid=2"))
            .expect("mount proc hidepid=2");
        // Another user and no root group (hidepid lets the `gid=` group, default 0, see all).
        nix::unistd::setgroups(&[]).expect("setgroups([])");
        let nogroup = nix::unistd::Gid::from_raw(65534);
        nix::unistd::setresgid(nogroup, nogroup, nogroup).expect("setresgid(65534)");
        let nobody = Uid::from_raw(65534);
        nix::unistd::setresuid(nobody, nobody, nobody).expect("setresuid(65534)");
        // The parent (root) is hidden, and kill says EPERM: it exists, but nothing more.
        let hidden = std::fs::metadata(format!("/proc/{}", getppid())).unwrap_err();
        assert_eq!(hidden.kind(), io::ErrorKind::NotFound, "hidepid hides the parent");
        assert_eq!(nix::sys::signal::kill(getppid(), None), Err(nix::errno::Errno::EPERM));
        assert_eq!(parent.liveness(), Liveness::Unknown);
        assert_eq!(ProcessIdentity { pid: gone_pid, start_time: 1 }.liveness(), Liveness::Gone);
        assert_eq!(ProcessIdentity::current().liveness(), Liveness::Alive, "its own entry is visible");
        0
    }) else {
        return;
    };
    child.join();
}

#[test]
fn at_the_descriptor_limit_nothing_is_declared_dead() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("obj");
    let region = Region::create_file(&path, LEN).unwrap();
    let held = region.lock_end(END).unwrap().unwrap();
    let parent = ProcessIdentity::current();
    let child = fork(|| {
        use nix::sys::resource::{setrlimit, Resource};
        setrlimit(Resource::RLIMIT_NOFILE, 64, 64).expect("lower RLIMIT_NOFILE");
        let mut hoard = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            hoard.push(f);
        }
        assert_eq!(std::fs::File::open("/dev/null").unwrap_err().raw_os_error(), Some(libc::EMFILE));
        assert_eq!(region.probe_end(END), Liveness::Alive, "a probe needs no descriptor");
        assert!(region.lock_end(END + 1).unwrap().is_none(), "no descriptor for a lock: none taken");
        assert_ne!(parent.liveness(), Liveness::Gone);
        0
    });
    child.join();
    drop(held);
}
