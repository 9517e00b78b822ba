//! The one place the ring's atomics come from: std in production, loom's under `--cfg loom`
//! (as tokio's `loom` module and crossbeam's `primitive` module do). All other code imports
//! atomics from here.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The ordering of one synchronisation site: `ord!(Release)` is `Ordering::Release`. Every
/// Release, Acquire, AcqRel and SeqCst of the protocol is written this way, so that under
/// `--cfg loom` a model run can weaken exactly one site to `Relaxed` (the site named by
/// `SHM_LOOM_WEAKEN=path:line:column`, or several separated by commas, as `loom-tests/weaken-orderings` does) and show which
/// model depends on it. In production it is the constant, nothing else.
macro_rules! ord {
    ($o:ident) => {
        $crate::sync::site($crate::sync::Ordering::$o, concat!(file!(), ":", line!(), ":", column!()))
    };
}

/// See [`ord!`].
#[cfg(not(loom))]
#[inline(always)]
pub(crate) const fn site(o: Ordering, _at: &'static str) -> Ordering {
    o
}

/// See [`ord!`]: `Relaxed` at the one site named by `SHM_LOOM_WEAKEN`, if any.
/// With `SHM_LOOM_SITES=FILE`, every site reached is also appended to FILE once (with its
/// ordering), so the weakening script knows which sites the models exercise.
#[cfg(loom)]
pub(crate) fn site(o: Ordering, at: &'static str) -> Ordering {
    use std::sync::{Mutex, OnceLock};
    static WEAKEN: OnceLock<Option<String>> = OnceLock::new();
    /// The listing file and the sites already written to it.
    type Listing = Mutex<(String, std::collections::HashSet<&'static str>)>;
    static LIST: OnceLock<Option<Listing>> = OnceLock::new();
    let list = LIST.get_or_init(|| {
        std::env::var("SHM_LOOM_SITES").ok().map(|f| Mutex::new((f, std::collections::HashSet::new())))
    });
    if let Some(list) = list {
        let mut g = list.lock().unwrap_or_else(|e| e.into_inner());
        if g.1.insert(at) {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&g.0) {
                let _ = writeln!(f, "{at} {o:?}");
            }
        }
    }
    match WEAKEN.get_or_init(|| std::env::var("SHM_LOOM_WEAKEN").ok().filter(|s| !s.is_empty())) {
        Some(sites) if sites.split(',').any(|site| at.ends_with(site)) => Ordering::Relaxed,
        _ => o,
    }
}

/// A memory fence; a fence weakened to `Relaxed` (see [`ord!`]) is left out.
#[inline(always)]
pub(crate) fn fence(o: Ordering) {
    if o != Ordering::Relaxed {
        #[cfg(not(loom))]
        std::sync::atomic::fence(o);
        #[cfg(loom)]
        loom::sync::atomic::fence(o);
    }
}

/// A hint inside a busy-wait loop. Under loom a spinning thread must yield to the model.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}
