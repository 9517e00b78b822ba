//! The conformance suite: every region kind is shared between two real processes, each of which
//! sees the other's writes while both are running.
//!
//! - anonymous: parent and a child created by `fork`;
//! - file, POSIX shm, memfd: the parent and an unrelated process (this test binary started again,
//!   running the ignored test `peer`) that opens the file / name, or receives the memfd over a
//!   Unix socket.

use std::io::BufReader;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shm_core::{recv_fd, send_fd, Region};
use shm_testkit::{expect_line, fork, role, spawn_peer, unique_name};

const LEN: usize = 64 * 1024;
/// Offsets of the handshake words and messages (the last page exercises the whole mapping).
const PEER_READY: usize = 0;
const PARENT_DONE: usize = 4;
const FROM_PARENT_1: usize = 4096;
const FROM_PEER: usize = 8192;
const FROM_PARENT_2: usize = LEN - 4096;

fn flag(region: &Region, offset: usize) -> &AtomicU32 {
    assert!(offset + 4 <= region.len() && offset % 4 == 0);
    // SAFETY: in bounds and 4-aligned (mappings are page-aligned); the region outlives the
    // returned reference, and every process touches this word only atomically.
    unsafe { &*(region.as_ptr().add(offset) as *const AtomicU32) }
}

/// Wait (bounded) until the word at `offset` becomes 1. This is the handshake, not a sleep.
fn wait_flag(region: &Region, offset: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    // SYNC POINT: Acquire pairs with the Release in `set_flag`, so the bytes written before it
    // are visible here.
    while flag(region, offset).load(Ordering::Acquire) != 1 {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

fn set_flag(region: &Region, offset: usize) {
    // SYNC POINT: Release publishes the message written just before.
    flag(region, offset).store(1, Ordering::Release);
}

fn read(region: &Region, offset: usize, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    region.read_at(offset, &mut v).unwrap();
    v
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// The peer's side of the exchange; returns an exit code (0 = every check passed).
fn peer_side(region: &Region) -> i32 {
    if read(region, FROM_PARENT_1, 1000) != pattern(1, 1000) {
        return 10;
    }
    region.write_at(FROM_PEER, &pattern(2, 1000)).unwrap();
    set_flag(region, PEER_READY);
    if !wait_flag(region, PARENT_DONE) {
        return 11;
    }
    if read(region, FROM_PARENT_2, 4096) != pattern(3, 4096) {
        return 12;
    }
    0
}

/// The parent's side, around a running peer.
fn parent_before(region: &Region) {
    region.write_at(FROM_PARENT_1, &pattern(1, 1000)).unwrap();
}

fn parent_after_start(region: &Region) {
    assert!(wait_flag(region, PEER_READY), "peer never signalled");
    assert_eq!(read(region, FROM_PEER, 1000), pattern(2, 1000), "parent does not see the peer's write");
    region.write_at(FROM_PARENT_2, &pattern(3, 4096)).unwrap();
    set_flag(region, PARENT_DONE);
}

fn wait_peer(mut child: std::process::Child) {
    let status = child.wait().unwrap();
    assert!(status.success(), "peer failed: {status:?}");
}

#[test]
fn anonymous_shared_with_forked_child() {
    let region = Region::anonymous(LEN).unwrap();
    parent_before(&region);
    let child = fork(|| peer_side(&region));
    parent_after_start(&region);
    child.join();
}

#[test]
fn anonymous_child_writes_parent_reads() {
    let region = Region::anonymous(LEN).unwrap();
    let child = fork(|| {
        region.write_at(100, b"written by the child").unwrap();
        0
    });
    child.join();
    assert_eq!(read(&region, 100, 20), b"written by the child");
}

#[test]
fn file_region_between_unrelated_processes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("region");
    let region = Region::create_file(&path, LEN).unwrap();
    parent_before(&region);
    let child = spawn_peer("peer", "file", &[("SHM_PATH", path.display().to_string())]);
    parent_after_start(&region);
    wait_peer(child);
}

#[test]
fn shm_region_between_unrelated_processes() {
    let name = format!("/{}", unique_name("shm-core-test"));
    let region = Region::create_shm(&name, LEN).unwrap();
    parent_before(&region);
    let child = spawn_peer("peer", "shm", &[("SHM_NAME", name.clone())]);
    parent_after_start(&region);
    wait_peer(child);
    Region::unlink_shm(&name).unwrap();
    assert!(matches!(Region::open_shm(&name), Err(shm_core::OpenError::NotFound { .. })));
}

#[test]
fn memfd_passed_over_unix_socket_to_unrelated_process() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let region = Region::create_memfd("conformance", LEN).unwrap();
    parent_before(&region);
    let mut child = spawn_peer("peer", "memfd", &[("SHM_SOCK", sock_path.display().to_string())]);
    let (stream, _) = listener.accept().unwrap();
    send_fd(&stream, region.fd().unwrap()).unwrap();
    parent_after_start(&region);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    // The peer tried to shrink the memfd it received and reports the errno it got.
    assert_eq!(expect_line(&mut out, "ftruncate: "), "EPERM");
    wait_peer(child);
    assert_eq!(region.len(), LEN);
}

/// The peer process of the tests above, started by `spawn_peer`.
#[test]
#[ignore = "started by the other tests as a separate process"]
fn peer() {
    let Some(role) = role() else { return };
    let env = |k: &str| std::env::var(k).unwrap();
    let code = match role.as_str() {
        "file" => peer_side(&Region::open_file(PathBuf::from(env("SHM_PATH"))).unwrap()),
        "shm" => peer_side(&Region::open_shm(&env("SHM_NAME")).unwrap()),
        "memfd" => {
            let stream = std::os::unix::net::UnixStream::connect(env("SHM_SOCK")).unwrap();
            let fd = recv_fd(&stream).unwrap();
            let shrink = nix::unistd::ftruncate(&fd, 0);
            println!("ftruncate: {}", shrink.err().map(|e| format!("{e:?}")).unwrap_or("ok".into()));
            let region = Region::open_memfd(fd).unwrap();
            peer_side(&region)
        }
        other => panic!("unknown role {other}"),
    };
    assert_eq!(code, 0, "peer checks failed");
}
