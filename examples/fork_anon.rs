//! A parent and a child created by `fork` share one `MAP_SHARED | MAP_ANONYMOUS` region and see
//! each other's writes, in both directions.
//!
//! Run: `cargo run --example fork_anon`

use std::sync::atomic::{AtomicU32, Ordering};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use shm_ipc::core::Region;

/// Offsets in the region: a turn word, then a message area.
const TURN: usize = 0;
const MSG: usize = 64;

fn turn(region: &Region) -> &AtomicU32 {
    // SAFETY: offset 0 of a page-aligned mapping of 4096 bytes is in bounds and 4-aligned; the
    // region outlives the reference and both processes access the word only atomically.
    unsafe { &*(region.as_ptr().add(TURN) as *const AtomicU32) }
}

fn wait_turn(region: &Region, want: u32) {
    let backoff = std::time::Duration::from_micros(50);
    // SYNC POINT: Acquire pairs with the other process's Release store of the turn, so its
    // message is visible once the turn is ours.
    while turn(region).load(Ordering::Acquire) != want {
        std::thread::sleep(backoff);
    }
}

fn read_msg(region: &Region) -> String {
    let mut buf = [0u8; 64];
    region.read_at(MSG, &mut buf).expect("in bounds");
    String::from_utf8_lossy(&buf).trim_end_matches('\0').to_owned()
}

fn write_msg(region: &Region, text: &str) {
    let mut buf = [0u8; 64];
    buf[..text.len()].copy_from_slice(text.as_bytes());
    region.write_at(MSG, &buf).expect("in bounds");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let region = Region::anonymous(4096)?;
    println!("mapped {} bytes: {:?}", region.len(), region.backing());
    // SAFETY: the child only touches the region, prints, and leaves with _exit.
    match unsafe { fork() }? {
        ForkResult::Child => {
            wait_turn(&region, 1);
            println!("child  (pid {}) sees: {:?}", std::process::id(), read_msg(&region));
            write_msg(&region, &format!("hello from the child, pid {}", std::process::id()));
            turn(&region).store(2, Ordering::Release);
            // SAFETY: leave without running the parent's destructors a second time.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            write_msg(&region, &format!("hello from the parent, pid {}", std::process::id()));
            turn(&region).store(1, Ordering::Release);
            wait_turn(&region, 2);
            println!("parent (pid {}) sees: {:?}", std::process::id(), read_msg(&region));
            let status = waitpid(child, None)?;
            assert_eq!(status, WaitStatus::Exited(child, 0), "child failed");
            Ok(())
        }
    }
}
