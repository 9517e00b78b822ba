//! `shm_core::futex` between processes: a parent wakes a forked child sleeping on a word of an
//! anonymous shared region. A process-private futex would never find the other process's sleeper.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use shm_core::futex::{self, Wakeup};
use shm_core::Region;
use shm_testkit::{fork, wait_until};

fn word(region: &Region) -> &AtomicU32 {
    // SAFETY: offset 0 of a page-aligned mapping of at least 4 bytes; the region outlives the
    // reference, and both processes touch the word only atomically.
    unsafe { &*(region.as_ptr() as *const AtomicU32) }
}

#[test]
fn wake_reaches_a_sleeper_in_another_process() {
    let region = Region::anonymous(4096).unwrap();
    let child = fork(|| {
        let w = word(&region);
        while w.load(Ordering::Acquire) == 0 {
            match futex::wait(w, 0, Some(Duration::from_secs(20))) {
                Ok(Wakeup::TimedOut) | Err(_) => return 1,
                Ok(_) => {}
            }
        }
        0
    });
    let w = word(&region);
    // A wake that returns 1 found the child asleep in the kernel: the wait and the wake matched
    // across two address spaces. The child goes back to sleep (the word is still 0).
    assert!(wait_until(Duration::from_secs(10), || futex::wake(w, 1) == 1), "never woke the child");
    w.store(1, Ordering::Release);
    futex::wake_all(w);
    child.join();
}
