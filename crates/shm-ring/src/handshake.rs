//! Creating and attaching: the creator's initialisation of a header, the opener's wait for it
//! and validation of what it finds, and the permission policy for rings other users can write.

use std::io;
use std::time::{Duration, Instant};

use shm_core::{EndLock, Liveness};

#[cfg(not(loom))]
use crate::config::RingConfig;
use crate::config::{Geometry, Shape};
use crate::error::{AttachError, InitError};
use crate::identity::{self, NsField, Owner};
use crate::layout::{
    self, Descriptor, Header, Kind, Policy, FIXED_HEADER, LAYOUT_VERSION, MAGIC, STATE_EMPTY,
    STATE_INITIALIZING, STATE_READY,
};
#[cfg(not(loom))]
use crate::memory::RegionMemory;
use crate::sync::Ordering;

/// Options for attaching to an existing ring, built like std's `OpenOptions`:
///
/// ```
/// use std::time::Duration;
/// use shm_ring::AttachOptions;
/// let options = AttachOptions::new().init_timeout(Duration::from_millis(50));
/// assert_eq!(options.get_init_timeout(), Duration::from_millis(50));
/// assert!(!options.get_allow_foreign());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachOptions {
    init_timeout: Duration,
    allow_foreign: bool,
    history: u64,
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions { init_timeout: Duration::from_secs(1), allow_foreign: false, history: 0 }
    }
}

impl AttachOptions {
    /// The defaults: wait up to 1 s for a creator still initialising, refuse foreign rings.
    pub fn new() -> AttachOptions {
        AttachOptions::default()
    }

    /// How long to wait for a creator that is still initialising (default 1 s; zero: do not
    /// wait).
    pub fn init_timeout(mut self, timeout: Duration) -> AttachOptions {
        self.init_timeout = timeout;
        self
    }

    /// Attach even when the file or shm object belongs to another user or is writable by group
    /// or others (default false: such a ring is refused, since whoever can write it can feed
    /// this process any message). Rings in anonymous memory and received descriptors (memfd)
    /// are not checked: who can reach them was decided when the memory was shared.
    pub fn allow_foreign(mut self, allow: bool) -> AttachOptions {
        self.allow_foreign = allow;
        self
    }

    /// A broadcast subscriber starts this many messages back from the producer's end (as many
    /// of them as are still in the ring), instead of at the end (the default, 0). Other ring
    /// kinds ignore it.
    pub fn history(mut self, messages: u64) -> AttachOptions {
        self.history = messages;
        self
    }

    /// The history asked for.
    pub fn get_history(&self) -> u64 {
        self.history
    }

    /// The init timeout set.
    pub fn get_init_timeout(&self) -> Duration {
        self.init_timeout
    }

    /// Whether foreign rings are accepted.
    pub fn get_allow_foreign(&self) -> bool {
        self.allow_foreign
    }
}

/// A fresh key for a ring's free words: random, so that no payload written without knowing it
/// looks like free space (deterministic under loom).
fn new_free_key() -> u64 {
    if cfg!(loom) {
        return 0x5eed_f00d_cafe_b0ba;
    }
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the operating system's randomness; the time and pid make two
    // keys drawn in one thread differ as well.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Initialise a zero-or-garbage header (the caller checked the memory is large enough).
/// `lock_creator` takes the creator's lock on the creator word ([`layout::CREATOR_WORD`]) and
/// `probe_creator` probes it (see [`Memory::lock_end`] / [`Memory::probe_end`]);
/// `fill_data(word)` stores `word` into every 8-byte word of the data area before the ring is
/// published (lap 0's free word). Returns the free-word key chosen.
pub(crate) fn init_header(
    h: &Header,
    geo: &Geometry,
    lock_creator: impl FnOnce() -> io::Result<Option<EndLock>>,
    probe_creator: impl FnOnce() -> Liveness,
    fill_data: impl FnOnce(u64),
) -> Result<u64, InitError> {
    let refused = || InitError::AlreadyInitialized {
        // Acquire: not needed (only reported in the error).
        state: h.state.load(ord!(Acquire)),
        magic: h.magic.load(Ordering::Relaxed),
    };
    // Our lock on the creator word first (file, shm, memfd): it proves us alive while we
    // initialise, and whoever else holds it is a live creator at work. Released once the ring
    // is ready.
    let lock = match lock_creator() {
        Ok(lock) => lock,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(refused()),
        Err(_) => None,
    };
    // Claim the creator word first: it names who is initialising, so an opener (or `status`)
    // can tell a creator at work from one that crashed half-way, whose ring is taken over here.
    let mine = Owner::word(identity::ATTACHED, identity::me(), lock.is_some());
    // Creator claim, here down to `creator.store(0)`: not needed (these words are only compared; openers read the descriptor after READY, whose Release covers it); kept, init runs once.
    if let Err(creator) = h.creator.compare_exchange(0, mine, ord!(AcqRel), ord!(Acquire)) {
        let crashed = h.state.load(ord!(Acquire)) != STATE_READY
            && creator_gone(h, creator, lock.is_some(), probe_creator);
        if !crashed || h.creator.compare_exchange(creator, mine, ord!(AcqRel), ord!(Acquire)).is_err() {
            return Err(refused());
        }
    } else if h.state.load(ord!(Acquire)) != STATE_EMPTY {
        // A ring made before (its creator word was cleared) or garbage: never overwrite it.
        // Release: not needed (only compared; see the creator claim above).
        h.creator.store(0, ord!(Release));
        return Err(refused());
    }
    identity::publish_namespace(&h.creator, NsField::Creator(&h.creator_ns), 0, mine);
    // Release: not needed (INITIALIZING is only compared with READY; the READY store below publishes the header).
    h.state.store(STATE_INITIALIZING, ord!(Release));
    h.magic.store(MAGIC, Ordering::Relaxed);
    h.version.store(LAYOUT_VERSION, Ordering::Relaxed);
    h.header_size.store(geo.header_size as u32, Ordering::Relaxed);
    h.kind.store(geo.kind as u32, Ordering::Relaxed);
    h.capacity.store(geo.capacity, Ordering::Relaxed);
    h.max_message.store(geo.max_message as u32, Ordering::Relaxed);
    h.max_producers.store(geo.max_producers, Ordering::Relaxed);
    h.max_subscribers.store(geo.subscribers, Ordering::Relaxed);
    h.policy.store(if geo.kind == Kind::Broadcast { geo.policy as u32 } else { 0 }, Ordering::Relaxed);
    h.next_seq.store(0, Ordering::Relaxed);
    h.reserved.store(0, Ordering::Relaxed);
    let key = new_free_key();
    h.free_key.store(key, Ordering::Relaxed);
    h.tail.store(0, Ordering::Relaxed);
    h.head.store(0, Ordering::Relaxed);
    h.hand_back.store(0, Ordering::Relaxed);
    for wp in [&h.data_ready, &h.space_ready] {
        wp.seq.store(0, Ordering::Relaxed);
        wp.waiters.store(0, Ordering::Relaxed);
    }
    fill_data(layout::free_word(key, 0));
    // SYNC POINT: Release pairs with the Acquire in `wait_ready`: every field above (and the
    // zeroed slots and free data words) is visible to an opener that sees READY.
    h.state.store(STATE_READY, ord!(Release));
    // Unlock only now: a checker that finds the creator's lock gone then sees READY.
    drop(lock);
    Ok(key)
}

/// Whether the creator named by `creator` is positively gone and left the ring unfinished.
/// `we_hold_lock`: we hold the creator-word lock ourselves, which proves a creator that locked
/// holds it no more (the kernel released it: it died, or it finished and unlocked after READY).
fn creator_gone(h: &Header, creator: u64, we_hold_lock: bool, probe: impl FnOnce() -> Liveness) -> bool {
    let o = Owner::decode(creator);
    let gone = if o.lock && we_hold_lock && o.state == identity::ATTACHED {
        true
    } else {
        identity::liveness(&h.creator, NsField::Creator(&h.creator_ns), creator, probe) == Liveness::Gone
    };
    // A creator that finished stored READY before it unlocked: look at the state again.
    // Acquire: not needed (only compared; nothing is read on the strength of it).
    gone && h.state.load(ord!(Acquire)) != STATE_READY
}

/// Wait (bounded) for the creator to publish the header, then copy the descriptor.
pub(crate) fn wait_ready(h: &Header, timeout: Duration) -> Result<Descriptor, AttachError> {
    let start = Instant::now();
    let mut state;
    let mut polls = 0u32;
    loop {
        // SYNC POINT: Acquire pairs with the creator's Release store of READY.
        state = h.state.load(ord!(Acquire));
        polls += 1;
        // (Under loom, time does not pass: a few polls stand for the timeout.)
        let out_of_time =
            if cfg!(loom) { polls > 3 || timeout.is_zero() } else { start.elapsed() >= timeout };
        if state == STATE_READY || out_of_time {
            break;
        }
        // The creator initialises in microseconds; poll gently while it does.
        if cfg!(loom) {
            crate::sync::spin_hint();
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    if state != STATE_READY {
        return Err(AttachError::NotInitialized { state, waited_ms: start.elapsed().as_millis() as u64 });
    }
    Ok(Descriptor {
        magic: h.magic.load(Ordering::Relaxed),
        version: h.version.load(Ordering::Relaxed),
        header_size: h.header_size.load(Ordering::Relaxed),
        kind: h.kind.load(Ordering::Relaxed),
        state,
        capacity: h.capacity.load(Ordering::Relaxed),
        max_message: h.max_message.load(Ordering::Relaxed),
        max_producers: h.max_producers.load(Ordering::Relaxed),
        creator: h.creator.load(Ordering::Relaxed),
        free_key: h.free_key.load(Ordering::Relaxed),
        max_subscribers: h.max_subscribers.load(Ordering::Relaxed),
        policy: h.policy.load(Ordering::Relaxed),
    })
}

/// Check a descriptor read from shared memory against what this build understands and what
/// the memory can hold. Nothing in it is trusted before this passes.
pub(crate) fn validate(d: &Descriptor, expect: Kind, total_len: usize) -> Result<Geometry, AttachError> {
    if d.magic != MAGIC {
        return Err(AttachError::BadMagic { found: d.magic, expected: MAGIC });
    }
    if d.version != LAYOUT_VERSION {
        return Err(AttachError::VersionMismatch { found: d.version, expected: LAYOUT_VERSION });
    }
    if d.kind != expect as u32 {
        return Err(AttachError::WrongKind { found: d.kind, expected: expect });
    }
    let policy = if expect == Kind::Broadcast {
        Policy::from_u32(d.policy).ok_or_else(|| AttachError::BadHeader {
            field: "policy",
            found: d.policy.into(),
            expected: "1 (block) or 2 (overwrite)".to_owned(),
        })?
    } else {
        Policy::Block // not read: rings of the other kinds made before it existed hold anything there
    };
    let shape = Shape { max_producers: d.max_producers, subscribers: d.max_subscribers, policy };
    let geo = Geometry::new(expect, d.capacity, d.max_message.into(), shape, d.free_key)?;
    if d.header_size as usize != geo.header_size {
        let expected = geo.header_size.to_string();
        return Err(AttachError::BadHeader { field: "header_size", found: d.header_size.into(), expected });
    }
    let need = geo.header_size as u64 + geo.capacity;
    if (total_len as u64) < need {
        return Err(AttachError::RegionTooSmall { need, have: total_len as u64 });
    }
    Ok(geo)
}

/// The minimal region size any ring needs before its descriptor can even be read.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) const MIN_REGION: usize = FIXED_HEADER;

#[cfg(not(loom))]
use std::sync::Arc;

#[cfg(not(loom))]
use shm_core::Region;

/// Initialise a ring in `region` without attaching an end: for a parent that will `fork`, or a
/// process that only sets the ring up. The region must be shared, writable, at least
/// [`RingConfig::region_len`] long, and hold no ring yet (fresh regions are zero-filled). The data area is filled with free words.
#[cfg(not(loom))]
pub fn init(region: &Region, config: &RingConfig) -> Result<(), InitError> {
    let geo = check_init(region, config)?;
    // SAFETY: check_init verified the region holds header_size + capacity bytes; Header is all
    // atomics and padding, valid for any bytes, and regions are page-aligned.
    let header = unsafe { &*(region.as_ptr() as *const layout::Header) };
    init_header(
        header,
        &geo,
        || region.lock_end(layout::CREATOR_WORD),
        || region.probe_end(layout::CREATOR_WORD),
        |word| {
            let data = region.as_mut_ptr().wrapping_add(geo.header_size) as *const crate::sync::AtomicU64;
            for i in 0..geo.capacity as usize / 8 {
                // SAFETY: the data area (capacity bytes at header_size, a multiple of 128 in a
                // page-aligned mapping) lies inside the region, checked above; an AtomicU64 is
                // valid for any bytes, and atomic stores stay sound whatever another process does.
                unsafe { (*data.add(i)).store(word, crate::sync::Ordering::Relaxed) };
            }
        },
    )
    .map(|_key| ())
}

#[cfg(not(loom))]
fn check_init(region: &Region, config: &RingConfig) -> Result<Geometry, InitError> {
    let geo = config.validate()?;
    if !region.is_writable() || !region.is_shared() {
        return Err(InitError::NotWritable);
    }
    let need = geo.header_size as u64 + geo.capacity;
    if (region.len() as u64) < need {
        return Err(InitError::RegionTooSmall { need, have: region.len() as u64 });
    }
    Ok(geo)
}

#[cfg(not(loom))]
pub(crate) fn init_region(
    region: Arc<Region>,
    config: &RingConfig,
    kind: Kind,
) -> Result<(RegionMemory, Geometry), InitError> {
    if config.kind() != kind {
        return Err(AttachError::WrongKind { found: config.kind() as u32, expected: kind }.into());
    }
    init(&region, config)?;
    Ok(attach_region(region, kind, &AttachOptions::default())?)
}

#[cfg(not(loom))]
pub(crate) fn attach_region(
    region: Arc<Region>,
    kind: Kind,
    options: &AttachOptions,
) -> Result<(RegionMemory, Geometry), AttachError> {
    if region.len() < MIN_REGION {
        return Err(AttachError::RegionTooSmall { need: MIN_REGION as u64, have: region.len() as u64 });
    }
    if !region.is_writable() || !region.is_shared() {
        return Err(AttachError::NotWritable);
    }
    if !options.allow_foreign
        && matches!(region.backing(), shm_core::Backing::File(_) | shm_core::Backing::Shm(_))
    {
        if let (Some(owner), Some(mode)) = (region.owner_uid(), region.mode()) {
            let me = shm_core::effective_uid();
            if owner != me || mode & 0o022 != 0 {
                return Err(AttachError::UnsafePermissions { owner, mode, expected_owner: me });
            }
        }
    }
    // SAFETY: the region holds at least the fixed header (checked above) and is page-aligned;
    // Header is all atomics (its padding too).
    let header = unsafe { &*(region.as_ptr() as *const layout::Header) };
    let desc = wait_ready(header, options.init_timeout)?;
    let geo = validate(&desc, kind, region.len())?;
    Ok((RegionMemory::new(region, geo.header_size), geo))
}
