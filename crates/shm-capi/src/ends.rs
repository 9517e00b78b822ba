//! The handles and the calls on them.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use shm_core::Region;
use shm_ring::any::{AnyConsumer, AnyProducer};
use shm_ring::{AttachOptions, Kind, Policy, RingConfig};

use crate::error::{boundary, Failure, SHM_ERR_INVALID_ARGUMENT, SHM_ERR_IO, SHM_ERR_NOTHING_HELD};

/// Wait as long as it takes (a `timeout_ns`).
pub const SHM_WAIT_FOREVER: i64 = -1;

/// What a new ring is: made by `shm_config_spsc`, `shm_config_mpsc` or `shm_config_broadcast`,
/// then adjusted field by field.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ShmConfig {
    /// `SHM_KIND_SPSC`, `SHM_KIND_MPSC` or `SHM_KIND_BROADCAST`.
    pub kind: u32,
    /// Data bytes: a power of two, at least `SHM_MIN_CAPACITY`.
    pub capacity: u64,
    /// MPSC: producer slots (1 to `SHM_MAX_PRODUCERS`); other kinds: ignored.
    pub max_producers: u32,
    /// Broadcast: subscriber slots (1 to `SHM_MAX_SUBSCRIBERS`); other kinds: ignored.
    pub max_subscribers: u32,
    /// The largest message; 0: the most the capacity allows.
    pub max_message: u64,
    /// Broadcast: `SHM_POLICY_BLOCK` or `SHM_POLICY_OVERWRITE`; other kinds: ignored.
    pub policy: u32,
}

/// A producer of a ring of any kind (opaque).
#[derive(Debug)]
pub struct ShmProducer {
    end: AnyProducer,
}

/// A consumer, or a broadcast subscriber, of a ring of any kind (opaque).
#[derive(Debug)]
pub struct ShmConsumer {
    end: AnyConsumer,
}

/// The configuration of an SPSC ring of `capacity` data bytes.
#[no_mangle]
pub extern "C" fn shm_config_spsc(capacity: u64) -> ShmConfig {
    ShmConfig {
        kind: Kind::Spsc as u32,
        capacity,
        max_producers: 1,
        max_subscribers: 0,
        max_message: 0,
        policy: 0,
    }
}

/// The configuration of an MPSC ring of `capacity` data bytes and `max_producers` slots.
#[no_mangle]
pub extern "C" fn shm_config_mpsc(capacity: u64, max_producers: u32) -> ShmConfig {
    ShmConfig { kind: Kind::Mpsc as u32, max_producers, ..shm_config_spsc(capacity) }
}

/// The configuration of a broadcast ring of `capacity` data bytes, `max_subscribers` slots and
/// a policy (`SHM_POLICY_BLOCK` or `SHM_POLICY_OVERWRITE`).
#[no_mangle]
pub extern "C" fn shm_config_broadcast(capacity: u64, max_subscribers: u32, policy: u32) -> ShmConfig {
    ShmConfig { kind: Kind::Broadcast as u32, max_subscribers, policy, ..shm_config_spsc(capacity) }
}

/// The size of the region a ring of `config` needs (0 for an invalid kind).
///
/// # Safety
/// `config` is NULL or points to a valid `ShmConfig`.
#[no_mangle]
pub unsafe extern "C" fn shm_config_region_len(config: *const ShmConfig) -> usize {
    // SAFETY: the caller's promise.
    match unsafe { config.as_ref() }.map(ring_config) {
        Some(Ok(config)) => config.region_len(),
        _ => 0,
    }
}

fn ring_config(c: &ShmConfig) -> Result<RingConfig, Failure> {
    let mut config = match Kind::from_u32(c.kind) {
        Some(Kind::Spsc) => RingConfig::spsc(c.capacity),
        Some(Kind::Mpsc) => RingConfig::mpsc(c.capacity, c.max_producers),
        Some(Kind::Broadcast) => {
            let policy = match c.policy {
                0 => Policy::default(),
                p => Policy::from_u32(p).ok_or_else(|| {
                    Failure::new(
                        SHM_ERR_INVALID_ARGUMENT,
                        format_args!(
                            "config.policy is {p}: expected SHM_POLICY_BLOCK (1) or SHM_POLICY_OVERWRITE (2)"
                        ),
                    )
                })?,
            };
            RingConfig::broadcast(c.capacity, c.max_subscribers).policy(policy)
        }
        None => {
            return Err(Failure::new(
                SHM_ERR_INVALID_ARGUMENT,
                format_args!(
                "config.kind is {}: expected SHM_KIND_SPSC (1), SHM_KIND_MPSC (2) or SHM_KIND_BROADCAST (3)",
                c.kind
            ),
            ))
        }
    };
    if c.max_message != 0 {
        config = config.max_message(c.max_message);
    }
    Ok(config)
}

/// The kind to attach as: `0` any (the header's).
fn attach_kind(kind: u32) -> Result<Option<Kind>, Failure> {
    match kind {
        0 => Ok(None),
        k => Kind::from_u32(k).map(Some).ok_or_else(|| {
            Failure::new(
                SHM_ERR_INVALID_ARGUMENT,
                format_args!("kind is {k}: expected 0 (any), SHM_KIND_SPSC (1), SHM_KIND_MPSC (2) or SHM_KIND_BROADCAST (3)"),
            )
        }),
    }
}

/// A `timeout_ns` as a wait: 0 none, positive at most that long, `SHM_WAIT_FOREVER` forever.
fn wait_of(timeout_ns: i64) -> Result<Option<Duration>, Failure> {
    match timeout_ns {
        SHM_WAIT_FOREVER => Ok(None),
        t if t >= 0 => Ok(Some(Duration::from_nanos(t as u64))),
        t => Err(Failure::new(
            SHM_ERR_INVALID_ARGUMENT,
            format_args!("timeout_ns is {t}: expected 0 (no wait), a positive number of nanoseconds or SHM_WAIT_FOREVER (-1)"),
        )),
    }
}

/// `s` as a `&str`.
///
/// # Safety
/// `s` is NULL or a NUL-terminated string that outlives the call.
unsafe fn text<'a>(s: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if s.is_null() {
        return Err(Failure::new(SHM_ERR_INVALID_ARGUMENT, format_args!("{what} is NULL")));
    }
    // SAFETY: the caller's promise.
    unsafe { CStr::from_ptr(s) }
        .to_str()
        .map_err(|_| Failure::new(SHM_ERR_INVALID_ARGUMENT, format_args!("{what} is not UTF-8")))
}

/// `*p`, checked for NULL.
///
/// # Safety
/// `p` is NULL or valid for the call.
unsafe fn arg<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: the caller's promise.
    unsafe { p.as_mut() }
        .ok_or_else(|| Failure::new(SHM_ERR_INVALID_ARGUMENT, format_args!("{what} is NULL")))
}

fn io(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::new(SHM_ERR_IO, format_args!("{what}: {e}"))
}

/// Where a ring is: how a `create` or `open` call names its region.
enum Place<'a> {
    File(&'a str),
    Shm(&'a str),
    Memfd(&'a str),
}

impl Place<'_> {
    fn create(&self, len: usize) -> Result<Region, Failure> {
        match self {
            Place::File(p) => Region::create_file(p, len).map_err(|e| io(&format!("creating file {p}"), e)),
            Place::Shm(n) => {
                Region::create_shm(n, len).map_err(|e| io(&format!("creating shm object {n}"), e))
            }
            Place::Memfd(n) => {
                Region::create_memfd(n, len).map_err(|e| io(&format!("creating memfd {n}"), e))
            }
        }
    }

    /// Remove what `create` made, after a failure to initialise a ring in it.
    fn remove(&self) {
        let _ = match self {
            Place::File(p) => std::fs::remove_file(p).map_err(drop),
            Place::Shm(n) => Region::unlink_shm(n).map_err(drop),
            Place::Memfd(_) => Ok(()), // gone with its last descriptor
        };
    }

    fn open(&self) -> Result<Region, Failure> {
        match self {
            Place::File(p) => Region::open_file(p).map_err(|e| io(&format!("opening file {p}"), e)),
            Place::Shm(n) => Region::open_shm(n).map_err(|e| io(&format!("opening shm object {n}"), e)),
            Place::Memfd(_) => unreachable!("a memfd is opened by descriptor"),
        }
    }
}

/// A duplicate of the region's descriptor, for the caller to pass to another process.
fn memfd_of(region: &Region, fd_out: *mut c_int) -> Result<(), Failure> {
    if fd_out.is_null() {
        return Ok(());
    }
    let fd = region.fd().ok_or_else(|| io("the memfd's descriptor", "none"))?;
    let fd = fd.try_clone_to_owned().map_err(|e| io("duplicating the memfd's descriptor", e))?;
    // SAFETY: fd_out is non-NULL and the caller promises it is valid for a write.
    unsafe { *fd_out = fd.into_raw_fd() };
    Ok(())
}

/// # Safety
/// `config` is valid, `out` valid for a write.
unsafe fn create_producer(
    place: Place<'_>,
    config: *const ShmConfig,
    out: *mut *mut ShmProducer,
    fd_out: *mut c_int,
) -> Result<(), Failure> {
    // SAFETY: the caller's promise.
    let config = ring_config(unsafe { arg(config.cast_mut(), "config") }?)?;
    // SAFETY: the caller's promise.
    let out = unsafe { arg(out, "out") }?;
    let region = Arc::new(place.create(config.region_len())?);
    let end = AnyProducer::create(region.clone(), &config).inspect_err(|_| place.remove())?;
    memfd_of(&region, fd_out)?;
    *out = Box::into_raw(Box::new(ShmProducer { end }));
    Ok(())
}

/// # Safety
/// `config` is valid, `out` valid for a write.
unsafe fn create_consumer(
    place: Place<'_>,
    config: *const ShmConfig,
    out: *mut *mut ShmConsumer,
    fd_out: *mut c_int,
) -> Result<(), Failure> {
    // SAFETY: the caller's promise.
    let config = ring_config(unsafe { arg(config.cast_mut(), "config") }?)?;
    // SAFETY: the caller's promise.
    let out = unsafe { arg(out, "out") }?;
    let region = Arc::new(place.create(config.region_len())?);
    let end = AnyConsumer::create(region.clone(), &config).inspect_err(|_| place.remove())?;
    memfd_of(&region, fd_out)?;
    *out = Box::into_raw(Box::new(ShmConsumer { end }));
    Ok(())
}

fn open_producer(region: Region, kind: Option<Kind>, out: &mut *mut ShmProducer) -> Result<(), Failure> {
    let end = AnyProducer::open(region, kind, &AttachOptions::new())?;
    *out = Box::into_raw(Box::new(ShmProducer { end }));
    Ok(())
}

fn open_consumer(region: Region, kind: Option<Kind>, out: &mut *mut ShmConsumer) -> Result<(), Failure> {
    let end = AnyConsumer::open(region, kind, &AttachOptions::new())?;
    *out = Box::into_raw(Box::new(ShmConsumer { end }));
    Ok(())
}

fn memfd_region(fd: RawFd) -> Result<Region, Failure> {
    if fd < 0 {
        return Err(Failure::new(
            SHM_ERR_INVALID_ARGUMENT,
            format_args!("fd is {fd}: expected a descriptor"),
        ));
    }
    // SAFETY: the caller hands the descriptor over (documented on the calls taking it).
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    Region::open_memfd(fd).map_err(|e| io("opening the memfd", e))
}

// ---------------------------------------------------------------------------------------------
// Producer
// ---------------------------------------------------------------------------------------------

/// Create the file `path` (mode 0600; it must not exist), initialise a ring of `config` in it
/// and attach as its producer.
///
/// # Safety
/// `path` is a NUL-terminated string, `config` a valid `ShmConfig`, `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn shm_producer_create_file(
    path: *const c_char,
    config: *const ShmConfig,
    out: *mut *mut ShmProducer,
) -> c_int {
    // SAFETY: the caller's promise.
    boundary(|| unsafe {
        create_producer(Place::File(text(path, "path")?), config, out, std::ptr::null_mut())
    })
}

/// Create the POSIX shm object `name` ("/name"), initialise a ring of `config` in it and
/// attach as its producer.
///
/// # Safety
/// As `shm_producer_create_file`.
#[no_mangle]
pub unsafe extern "C" fn shm_producer_create_shm(
    name: *const c_char,
    config: *const ShmConfig,
    out: *mut *mut ShmProducer,
) -> c_int {
    // SAFETY: the caller's promise.
    boundary(|| unsafe {
        create_producer(Place::Shm(text(name, "name")?), config, out, std::ptr::null_mut())
    })
}

/// Create a sealed memfd named `name`, initialise a ring of `config` in it and attach as its
/// producer; `*fd_out` (if not NULL) gets a descriptor of it to pass to the other process
/// (over a Unix socket; it is close-on-exec), which the caller closes.
///
/// # Safety
/// As `shm_producer_create_file`; `fd_out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn shm_producer_create_memfd(
    name: *const c_char,
    config: *const ShmConfig,
    out: *mut *mut ShmProducer,
    fd_out: *mut c_int,
) -> c_int {
    // SAFETY: the caller's promise.
    boundary(|| unsafe { create_producer(Place::Memfd(text(name, "name")?), config, out, fd_out) })
}

/// Attach as a producer of the ring in the file `path`, of kind `kind` (`SHM_KIND_*`, or 0 for
/// the kind the ring has), waiting up to 1 s for a creator still initialising it.
///
/// # Safety
/// `path` is a NUL-terminated string, `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn shm_producer_open_file(
    path: *const c_char,
    kind: u32,
    out: *mut *mut ShmProducer,
) -> c_int {
    boundary(|| {
        // SAFETY: the caller's promise.
        let (path, out) = unsafe { (text(path, "path")?, arg(out, "out")?) };
        let kind = attach_kind(kind)?;
        open_producer(Place::File(path).open()?, kind, out)
    })
}

/// `shm_producer_open_file` on the POSIX shm object `name`.
///
/// # Safety
/// As `shm_producer_open_file`.
#[no_mangle]
pub unsafe extern "C" fn shm_producer_open_shm(
    name: *const c_char,
    kind: u32,
    out: *mut *mut ShmProducer,
) -> c_int {
    boundary(|| {
        // SAFETY: the caller's promise.
        let (name, out) = unsafe { (text(name, "name")?, arg(out, "out")?) };
        let kind = attach_kind(kind)?;
        open_producer(Place::Shm(name).open()?, kind, out)
    })
}

/// `shm_producer_open_file` on the memfd `fd`, which the call takes over (it is closed when
/// the handle is, or on failure).
///
/// # Safety
/// `fd` is an open descriptor the caller owns and gives up; `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn shm_producer_open_memfd(fd: c_int, kind: u32, out: *mut *mut ShmProducer) -> c_int {
    boundary(|| {
        let region = memfd_region(fd)?;
        // SAFETY: the caller's promise.
        open_producer(region, attach_kind(kind)?, unsafe { arg(out, "out") }?)
    })
}

/// Send a copy of the `len` bytes at `data`, waiting up to `timeout_ns` for room (0: not at
/// all, `SHM_WAIT_FOREVER`: as long as it takes).
///
/// # Safety
/// `producer` is a live handle; `data` is valid for `len` bytes (or `len` is 0) that nobody
/// writes during the call: to forward a message read in place from a ring whose peer you do
/// not trust, copy it out first (`shm_consumer_recv`).
#[no_mangle]
pub unsafe extern "C" fn shm_producer_send(
    producer: *mut ShmProducer,
    data: *const c_void,
    len: usize,
    timeout_ns: i64,
) -> c_int {
    boundary(|| {
        // SAFETY: the caller's promise.
        let p = unsafe { arg(producer, "producer") }?;
        // SAFETY: the caller's promise.
        let msg = unsafe { bytes(data, len, "data") }?;
        p.end.send(msg, wait_of(timeout_ns)?).map_err(|e| Failure::from(e).waited(timeout_ns, "ring is full"))
    })
}

/// `shm_producer_send` with no wait.
///
/// # Safety
/// As `shm_producer_send`.
#[no_mangle]
pub unsafe extern "C" fn shm_producer_try_send(
    producer: *mut ShmProducer,
    data: *const c_void,
    len: usize,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { shm_producer_send(producer, data, len, 0) }
}

/// Reserve room for a message of `len` bytes in the ring, waiting up to `timeout_ns`;
/// `*data_out` gets its address (`len` writable bytes, holding old ring contents). Publish it
/// with `shm_producer_commit`, or give it up with `shm_producer_abort`.
///
/// # Safety
/// `producer` is a live handle; `data_out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn shm_producer_reserve(
    producer: *mut ShmProducer,
    len: usize,
    timeout_ns: i64,
    data_out: *mut *mut c_void,
) -> c_int {
    boundary(|| {
        // SAFETY: the caller's promise.
        let (p, data_out) = unsafe { (arg(producer, "producer")?, arg(data_out, "data_out")?) };
        *data_out = p
            .end
            .reserve(len, wait_of(timeout_ns)?)
            .map_err(|e| Failure::from(e).waited(timeout_ns, "ring is full"))?
            .cast();
        Ok(())
    })
}

/// Publish the open reservation (its whole reserved length) as a message.
///
/// # Safety
/// `producer` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn shm_producer_commit(producer: *mut ShmProducer) -> c_int {
    boundary(|| {
        // SAFETY: the caller's promise.
        match unsafe { arg(producer, "producer") }?.end.commit() {
            true => Ok(()),
            false => Err(Failure::new(SHM_ERR_NOTHING_HELD, "commit: no reservation is open")),
        }
    })
}

/// Give the open reservation up: nothing is delivered.
///
/// # Safety
/// `producer` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn shm_producer_abort(producer: *mut ShmProducer) -> c_int {
    boundary(|| {
        // SAFETY: the caller's promise.
        match unsafe { arg(producer, "producer") }?.end.abort() {
            true => Ok(()),
            false => Err(Failure::new(SHM_ERR_NOTHING_HELD, "abort: no reservation is open")),
        }
    })
}

/// The ring's kind (`SHM_KIND_*`); 0 for NULL.
///
/// # Safety
/// `producer` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shm_producer_kind(producer: *const ShmProducer) -> u32 {
    // SAFETY: the caller's promise.
    unsafe { producer.as_ref() }.map_or(0, |p| p.end.kind() as u32)
}

/// The largest message the ring takes; 0 for NULL.
///
/// # Safety
/// `producer` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shm_producer_max_message(producer: *const ShmProducer) -> usize {
    // SAFETY: the caller's promise.
    unsafe { producer.as_ref() }.map_or(0, |p| p.end.max_message())
}

/// Close the producer (an open reservation is aborted; the consumer drains what was sent, then
/// gets `SHM_ERR_DISCONNECTED`) and free the handle. NULL is accepted.
///
/// # Safety
/// `producer` is NULL or a live handle, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn shm_producer_close(producer: *mut ShmProducer) {
    if !producer.is_null() {
        boundary(|| {
            // SAFETY: the caller's promise: the handle came from Box::into_raw and is not used
            // again.
            drop(unsafe { Box::from_raw(producer) });
            Ok(())
        });
    }
}

/// # Safety
/// `data` is valid for `len` bytes, or `len` is 0.
unsafe fn bytes<'a>(data: *const c_void, len: usize, what: &str) -> Result<&'a [u8], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(Failure::new(
            SHM_ERR_INVALID_ARGUMENT,
            format_args!("{what} is NULL with a length of {len}"),
        ));
    }
    // SAFETY: the caller's promise: `len` readable bytes that nobody writes during the call
    // (documented on the calls: not the memory of a ring whose peer is untrusted).
    Ok(unsafe { std::slice::from_raw_parts(data.cast(), len) })
}

// ---------------------------------------------------------------------------------------------
// Consumer
// ---------------------------------------------------------------------------------------------

/// Create the file `path` (mode 0600; it must not exist), initialise a ring of `config` in it
/// and attach as its consumer (broadcast: its first subscriber).
///
/// # Safety
/// `path` is a NUL-terminated string, `config` a valid `ShmConfig`, `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn shm_consumer_create_file(
    path: *const c_char,
    config: *const ShmConfig,
    out: *mut *mut ShmConsumer,
) -> c_int {
    // SAFETY: the caller's promise.
    boundary(|| unsafe {
        create_consumer(Place::File(text(path, "path")?), config, out, std::ptr::null_mut())
    })
}

/// `shm_consumer_create_file` on a new POSIX shm object `name`.
///
/// # Safety
/// As `shm_consumer_create_file`.
#[no_mangle]
pub unsafe extern "C" fn shm_consumer_create_shm(
    name: *const c_char,
    config: *const ShmConfig,
    out: *mut *mut ShmConsumer,
) -> c_int {
    // SAFETY: the caller's promise.
    boundary(|| unsafe {
        create_consumer(Place::Shm(text(name, "name")?), config, out, std::ptr::null_mut())
    })
}

/// `shm_consumer_create_file` on a new sealed memfd; `*fd_out` (if not NULL) gets a
/// descriptor of it for the other process, which the caller closes.
///
/// # Safety
/// As `shm_consumer_create_file`; `fd_out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn shm_consumer_create_memfd(
    name: *const c_char,
    config: *const ShmConfig,
    out: *mut *mut ShmConsumer,
    fd_out: *mut c_int,
) -> c_int {
    // SAFETY: the caller's promise.
    boundary(|| unsafe { create_consumer(Place::Memfd(text(name, "name")?), config, out, fd_out) })
}

/// Attach as the consumer (broadcast: a new subscriber) of the ring in the file `path`, of
/// kind `kind` (`SHM_KIND_*`, or 0 for the kind the ring has), waiting up to 1 s for a creator
/// still initialising it.
///
/// # Safety
/// `path` is a NUL-terminated string, `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn shm_consumer_open_file(
    path: *const c_char,
    kind: u32,
    out: *mut *mut ShmConsumer,
) -> c_int {
    boundary(|| {
        // SAFETY: the caller's promise.
        let (path, out) = unsafe { (text(path, "path")?, arg(out, "out")?) };
        let kind = attach_kind(kind)?;
        open_consumer(Place::File(path).open()?, kind, out)
    })
}

/// `shm_consumer_open_file` on the POSIX shm object `name`.
///
/// # Safety
/// As `shm_consumer_open_file`.
#[no_mangle]
pub unsafe extern "C" fn shm_consumer_open_shm(
    name: *const c_char,
    kind: u32,
    out: *mut *mut ShmConsumer,
) -> c_int {
    boundary(|| {
        // SAFETY: the caller's promise.
        let (name, out) = unsafe { (text(name, "name")?, arg(out, "out")?) };
        let kind = attach_kind(kind)?;
        open_consumer(Place::Shm(name).open()?, kind, out)
    })
}

/// `shm_consumer_open_file` on the memfd `fd`, which the call takes over.
///
/// # Safety
/// `fd` is an open descriptor the caller owns and gives up; `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn shm_consumer_open_memfd(fd: c_int, kind: u32, out: *mut *mut ShmConsumer) -> c_int {
    boundary(|| {
        let region = memfd_region(fd)?;
        // SAFETY: the caller's promise.
        open_consumer(region, attach_kind(kind)?, unsafe { arg(out, "out") }?)
    })
}

/// Receive a copy of the next message into the `capacity` bytes at `buf`, waiting up to
/// `timeout_ns` (0: not at all, `SHM_WAIT_FOREVER`: as long as it takes); `*len_out` gets its
/// length. A message longer than `capacity` stays in the ring: `SHM_ERR_BUFFER_TOO_SMALL`, and
/// `*len_out` is its length.
///
/// # Safety
/// `consumer` is a live handle, `buf` valid for `capacity` bytes of writes that nobody else
/// touches during the call (not room reserved in a ring whose peer you do not trust), `len_out`
/// NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn shm_consumer_recv(
    consumer: *mut ShmConsumer,
    buf: *mut c_void,
    capacity: usize,
    len_out: *mut usize,
    timeout_ns: i64,
) -> c_int {
    boundary(|| {
        // SAFETY: the caller's promise.
        let c = unsafe { arg(consumer, "consumer") }?;
        let buf: &mut [u8] = match capacity {
            0 => &mut [],
            _ if buf.is_null() => {
                return Err(Failure::new(
                    SHM_ERR_INVALID_ARGUMENT,
                    format_args!("buf is NULL with a capacity of {capacity}"),
                ))
            }
            // SAFETY: the caller's promise: `capacity` writable bytes that nobody else reads or
            // writes during the call (documented: not the memory of a ring whose peer is untrusted).
            _ => unsafe { std::slice::from_raw_parts_mut(buf.cast(), capacity) },
        };
        let r = c.end.recv_into(buf, wait_of(timeout_ns)?);
        let len = match r {
            Ok(len) => Some(len),
            Err(shm_ring::RecvTimeoutError::BufferTooSmall { need, .. }) => Some(need),
            Err(_) => None,
        };
        if let (Some(len), false) = (len, len_out.is_null()) {
            // SAFETY: non-NULL, and the caller's promise.
            unsafe { *len_out = len };
        }
        r.map(drop).map_err(|e| Failure::from(e).waited(timeout_ns, "ring is empty"))
    })
}

/// `shm_consumer_recv` with no wait.
///
/// # Safety
/// As `shm_consumer_recv`.
#[no_mangle]
pub unsafe extern "C" fn shm_consumer_try_recv(
    consumer: *mut ShmConsumer,
    buf: *mut c_void,
    capacity: usize,
    len_out: *mut usize,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { shm_consumer_recv(consumer, buf, capacity, len_out, 0) }
}

/// Find the next message, waiting up to `timeout_ns`, and hold it in place: `*data_out` and
/// `*len_out` get its address and length, valid until `shm_consumer_release` (which consumes
/// it) or the next call on this consumer (which releases it first).
///
/// # Safety
/// `consumer` is a live handle; `data_out` and `len_out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn shm_consumer_read(
    consumer: *mut ShmConsumer,
    data_out: *mut *const c_void,
    len_out: *mut usize,
    timeout_ns: i64,
) -> c_int {
    boundary(|| {
        // SAFETY: the caller's promise.
        let (c, data_out, len_out) =
            unsafe { (arg(consumer, "consumer")?, arg(data_out, "data_out")?, arg(len_out, "len_out")?) };
        let (ptr, len) = c
            .end
            .read(wait_of(timeout_ns)?)
            .map_err(|e| Failure::from(e).waited(timeout_ns, "ring is empty"))?;
        (*data_out, *len_out) = (ptr.cast(), len);
        Ok(())
    })
}

/// Consume the message held by `shm_consumer_read`.
///
/// # Safety
/// `consumer` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn shm_consumer_release(consumer: *mut ShmConsumer) -> c_int {
    boundary(|| {
        // SAFETY: the caller's promise.
        match unsafe { arg(consumer, "consumer") }?.end.release() {
            true => Ok(()),
            false => {
                Err(Failure::new(SHM_ERR_NOTHING_HELD, "release: no message is held (no read before it)"))
            }
        }
    })
}

/// The ring's kind (`SHM_KIND_*`); 0 for NULL.
///
/// # Safety
/// `consumer` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shm_consumer_kind(consumer: *const ShmConsumer) -> u32 {
    // SAFETY: the caller's promise.
    unsafe { consumer.as_ref() }.map_or(0, |c| c.end.kind() as u32)
}

/// The largest message the ring takes (a buffer this large receives any message); 0 for NULL.
///
/// # Safety
/// `consumer` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shm_consumer_max_message(consumer: *const ShmConsumer) -> usize {
    // SAFETY: the caller's promise.
    unsafe { consumer.as_ref() }.map_or(0, |c| c.end.max_message())
}

/// Close the consumer (a held message is consumed) and free the handle. NULL is accepted.
///
/// # Safety
/// `consumer` is NULL or a live handle, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn shm_consumer_close(consumer: *mut ShmConsumer) {
    if !consumer.is_null() {
        boundary(|| {
            // SAFETY: the caller's promise: the handle came from Box::into_raw and is not used
            // again.
            drop(unsafe { Box::from_raw(consumer) });
            Ok(())
        });
    }
}
