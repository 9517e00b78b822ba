//! The Python package `shm_ipc`: a thin shell over `shm_ring::any` (see `shm_ipc.pyi` for the
//! Python-side documentation).
//!
//! Every wait runs with the GIL released. Bytes-like arguments are read, and `recv_into`'s
//! buffer written, with the GIL released too, as `socket.send` / `socket.recv_into` do.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyConnectionError, PyRuntimeError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use shm_core::Region;
use shm_ring::any::{AnyConsumer, AnyProducer};
use shm_ring::{AttachOptions, Kind, Policy, RecvTimeoutError, RingConfig, SendTimeoutError};

pyo3::create_exception!(
    shm_ipc,
    Disconnected,
    PyConnectionError,
    "The peer closed its end (a consumer gets it once everything sent was received)."
);
pyo3::create_exception!(
    shm_ipc,
    PeerDead,
    Disconnected,
    "The peer's process died without closing (a consumer gets it once everything sent was received)."
);
pyo3::create_exception!(shm_ipc, CorruptError, PyRuntimeError, "The shared memory breaks the ring layout.");
pyo3::create_exception!(
    shm_ipc,
    Lagged,
    PyRuntimeError,
    "A broadcast subscriber was overtaken (policy 'overwrite'): messages were lost; the next receive returns the oldest one left."
);

fn send_error(e: SendTimeoutError<()>) -> PyErr {
    let text = e.to_string();
    match e {
        SendTimeoutError::Timeout(()) => PyTimeoutError::new_err(text),
        SendTimeoutError::Disconnected(()) => Disconnected::new_err(text),
        SendTimeoutError::PeerDead { .. } => PeerDead::new_err(text),
        SendTimeoutError::TooLarge { .. } => PyValueError::new_err(text),
        _ => CorruptError::new_err(text),
    }
}

fn recv_error(e: RecvTimeoutError) -> PyErr {
    let text = e.to_string();
    match e {
        RecvTimeoutError::Timeout => PyTimeoutError::new_err(text),
        RecvTimeoutError::Disconnected => Disconnected::new_err(text),
        RecvTimeoutError::PeerDead { .. } => PeerDead::new_err(text),
        RecvTimeoutError::BufferTooSmall { .. } => PyValueError::new_err(text),
        RecvTimeoutError::Lagged { .. } => Lagged::new_err(text),
        _ => CorruptError::new_err(text),
    }
}

fn is_timeout(e: &RecvTimeoutError) -> bool {
    matches!(e, RecvTimeoutError::Timeout)
}

fn os_error(what: String, e: impl std::fmt::Display) -> PyErr {
    pyo3::exceptions::PyOSError::new_err(format!("{what}: {e}"))
}

/// `timeout` in seconds: `None` waits as long as it takes, 0 not at all.
fn wait_of(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        // Beyond what a Duration holds (about 5.8e11 years): forever.
        Some(t) if t >= 0.0 => Ok(Duration::try_from_secs_f64(t).ok()),
        Some(t) => {
            Err(PyValueError::new_err(format!("timeout is {t}: expected None or a number of seconds >= 0")))
        }
    }
}

/// How long a wait runs with the GIL released before it takes it back to run Python's signal
/// handlers (so that Ctrl-C interrupts a `recv()` with no timeout).
const SIGNAL_SLICE: Duration = Duration::from_millis(100);

/// `attempt(wait)` with the GIL released, in slices of at most [`SIGNAL_SLICE`]: between two,
/// Python's signal handlers run (a `KeyboardInterrupt` ends the wait, having taken nothing).
/// `not_yet` tells an attempt's "nothing in time", after which the next slice starts.
fn interruptible<T: Send, E: Send>(
    py: Python<'_>,
    wait: Option<Duration>,
    mut attempt: impl FnMut(Option<Duration>) -> Result<T, E> + Send,
    not_yet: impl Fn(&E) -> bool,
) -> PyResult<Result<T, E>> {
    let deadline = wait.and_then(|w| Instant::now().checked_add(w));
    loop {
        let slice = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).min(SIGNAL_SLICE),
            None => SIGNAL_SLICE,
        };
        match py.detach(|| attempt(Some(slice))) {
            Err(e) if not_yet(&e) && deadline.is_none_or(|d| Instant::now() < d) => py.check_signals()?,
            r => return Ok(r),
        }
    }
}

fn kind_of(kind: Option<&str>) -> PyResult<Option<Kind>> {
    match kind {
        None => Ok(None),
        Some("spsc") => Ok(Some(Kind::Spsc)),
        Some("mpsc") => Ok(Some(Kind::Mpsc)),
        Some("broadcast") => Ok(Some(Kind::Broadcast)),
        Some(k) => {
            Err(PyValueError::new_err(format!("kind is {k:?}: expected 'spsc', 'mpsc' or 'broadcast'")))
        }
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Spsc => "spsc",
        Kind::Mpsc => "mpsc",
        Kind::Broadcast => "broadcast",
    }
}

/// The configuration the `create_*` calls describe.
fn config(
    kind: &str,
    capacity: u64,
    slots: u32,
    max_message: Option<u64>,
    policy: &str,
) -> PyResult<RingConfig> {
    let mut config = match kind_of(Some(kind))? {
        Some(Kind::Spsc) => RingConfig::spsc(capacity),
        Some(Kind::Mpsc) => RingConfig::mpsc(capacity, slots),
        _ => {
            let policy = match policy {
                "block" => Policy::Block,
                "overwrite" => Policy::Overwrite,
                p => {
                    return Err(PyValueError::new_err(format!(
                        "policy is {p:?}: expected 'block' or 'overwrite'"
                    )))
                }
            };
            RingConfig::broadcast(capacity, slots).policy(policy)
        }
    };
    if let Some(max) = max_message {
        config = config.max_message(max);
    }
    Ok(config)
}

enum Place {
    File(String),
    Shm(String),
}

impl Place {
    fn create(&self, len: usize) -> PyResult<Region> {
        match self {
            Place::File(p) => {
                Region::create_file(p, len).map_err(|e| os_error(format!("creating file {p}"), e))
            }
            Place::Shm(n) => {
                Region::create_shm(n, len).map_err(|e| os_error(format!("creating shm object {n}"), e))
            }
        }
    }

    /// Remove what `create` made, after a failure to initialise a ring in it.
    fn remove(&self) {
        let _ = match self {
            Place::File(p) => std::fs::remove_file(p).map_err(drop),
            Place::Shm(n) => Region::unlink_shm(n).map_err(drop),
        };
    }

    fn open(&self) -> PyResult<Region> {
        match self {
            Place::File(p) => Region::open_file(p).map_err(|e| os_error(format!("opening file {p}"), e)),
            Place::Shm(n) => Region::open_shm(n).map_err(|e| os_error(format!("opening shm object {n}"), e)),
        }
    }
}

fn attach_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("attaching to the ring: {e}"))
}

/// A contiguous bytes-like object's bytes, as an address and a length (valid while `buf` lives;
/// another thread may write them, as for any buffer handed to C code).
fn buffer_of(buf: &PyBuffer<u8>, writable: bool) -> PyResult<(usize, usize)> {
    if !buf.is_c_contiguous() {
        return Err(PyValueError::new_err(
            "the buffer is not contiguous: expected a contiguous bytes-like object",
        ));
    }
    if writable && buf.readonly() {
        return Err(PyValueError::new_err("the buffer is read-only: expected a writable bytes-like object"));
    }
    Ok((buf.buf_ptr() as usize, buf.len_bytes()))
}

/// The producer end of a ring of any kind (see `shm_ipc.pyi`).
#[pyclass(module = "shm_ipc")]
struct Producer {
    end: Option<AnyProducer>,
}

impl Producer {
    fn end(&mut self) -> PyResult<&mut AnyProducer> {
        self.end.as_mut().ok_or_else(|| PyValueError::new_err("the producer is closed"))
    }
}

#[pymethods]
impl Producer {
    /// Create the file `path` and a ring in it, and attach as its producer.
    #[staticmethod]
    #[pyo3(signature = (path, kind="spsc", capacity=1 << 20, slots=8, max_message=None, policy="block"))]
    fn create_file(
        path: String,
        kind: &str,
        capacity: u64,
        slots: u32,
        max_message: Option<u64>,
        policy: &str,
    ) -> PyResult<Producer> {
        Producer::create(Place::File(path), config(kind, capacity, slots, max_message, policy)?)
    }

    /// Create the POSIX shm object `name` and a ring in it, and attach as its producer.
    #[staticmethod]
    #[pyo3(signature = (name, kind="spsc", capacity=1 << 20, slots=8, max_message=None, policy="block"))]
    fn create_shm(
        name: String,
        kind: &str,
        capacity: u64,
        slots: u32,
        max_message: Option<u64>,
        policy: &str,
    ) -> PyResult<Producer> {
        Producer::create(Place::Shm(name), config(kind, capacity, slots, max_message, policy)?)
    }

    /// Attach as a producer of the ring in the file `path`.
    #[staticmethod]
    #[pyo3(signature = (path, kind=None))]
    fn open_file(py: Python<'_>, path: String, kind: Option<&str>) -> PyResult<Producer> {
        Producer::open(py, Place::File(path), kind_of(kind)?)
    }

    /// Attach as a producer of the ring in the POSIX shm object `name`.
    #[staticmethod]
    #[pyo3(signature = (name, kind=None))]
    fn open_shm(py: Python<'_>, name: String, kind: Option<&str>) -> PyResult<Producer> {
        Producer::open(py, Place::Shm(name), kind_of(kind)?)
    }

    /// Send a copy of `data` (bytes-like), waiting up to `timeout` seconds for room.
    #[pyo3(signature = (data, timeout=None))]
    fn send(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<()> {
        let wait = wait_of(timeout)?;
        let end = self.end()?;
        // A bytes object is sent from its own memory. Another bytes-like object is copied
        // first, holding the GIL: it may be memory another process writes (a `read()` view of
        // a ring), over which no Rust slice may be made.
        let copy;
        let msg = match data.cast::<PyBytes>() {
            Ok(bytes) => bytes.as_bytes(),
            Err(_) => {
                let buf = PyBuffer::<u8>::get(data)?;
                let (addr, len) = buffer_of(&buf, false)?;
                let mut owned = vec![0u8; len];
                // SAFETY: the buffer's `len` bytes at `addr` stay valid while `buf` (an export
                // of them) lives; they are copied as raw bytes, with no reference made over them.
                unsafe { std::ptr::copy_nonoverlapping(addr as *const u8, owned.as_mut_ptr(), len) };
                copy = owned;
                &copy
            }
        };
        // The first try holds the GIL (releasing it costs more than a send); a wait does not.
        match end.send(msg, Some(Duration::ZERO)) {
            Err(SendTimeoutError::Timeout(())) if wait != Some(Duration::ZERO) => {
                interruptible(py, wait, |w| end.send(msg, w), SendTimeoutError::is_timeout)?
                    .map_err(send_error)
            }
            r => r.map_err(send_error),
        }
    }

    /// Send a copy of `data` if there is room now; returns whether it was sent.
    fn try_send(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<bool> {
        match self.send(py, data, Some(0.0)) {
            Ok(()) => Ok(true),
            Err(e) if e.is_instance_of::<PyTimeoutError>(py) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The ring's kind: 'spsc', 'mpsc' or 'broadcast'.
    #[getter]
    fn kind(&mut self) -> PyResult<&'static str> {
        Ok(kind_name(self.end()?.kind()))
    }

    /// The largest message the ring takes, in bytes.
    #[getter]
    fn max_message(&mut self) -> PyResult<usize> {
        Ok(self.end()?.max_message())
    }

    /// Size of the ring's data area, in bytes.
    #[getter]
    fn capacity(&mut self) -> PyResult<usize> {
        Ok(self.end()?.capacity())
    }

    /// Close this end: the consumer drains what was sent, then gets `Disconnected`.
    fn close(&mut self) {
        self.end = None;
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, _args: &Bound<'_, pyo3::types::PyTuple>) {
        self.close();
    }

    fn __repr__(&self) -> String {
        match &self.end {
            Some(end) => {
                format!("<shm_ipc.Producer {} ring, {} bytes>", kind_name(end.kind()), end.capacity())
            }
            None => "<shm_ipc.Producer closed>".into(),
        }
    }
}

impl Producer {
    fn create(place: Place, config: RingConfig) -> PyResult<Producer> {
        let region = Arc::new(place.create(config.region_len())?);
        let end = AnyProducer::create(region, &config)
            .inspect_err(|_| place.remove())
            .map_err(|e| PyValueError::new_err(format!("creating the ring: {e}")))?;
        Ok(Producer { end: Some(end) })
    }

    fn open(py: Python<'_>, place: Place, kind: Option<Kind>) -> PyResult<Producer> {
        let region = place.open()?;
        let end =
            py.detach(|| AnyProducer::open(region, kind, &AttachOptions::new())).map_err(attach_error)?;
        Ok(Producer { end: Some(end) })
    }
}

/// The consumer end (a subscriber, on a broadcast ring) of a ring of any kind (see
/// `shm_ipc.pyi`).
#[pyclass(module = "shm_ipc")]
struct Consumer {
    end: Option<AnyConsumer>,
    /// The memoryview of the message `read` holds, while its block runs.
    view: Option<Py<PyAny>>,
    /// Which `read` holds the message (a `Message` of an earlier one no longer does).
    reads: u64,
    /// Buffer exports of the held message (memoryviews of it, and views made from those),
    /// shared with its `Message`, whose `__releasebuffer__` runs while this is borrowed.
    exports: Arc<AtomicUsize>,
}

impl Consumer {
    fn end(&mut self) -> PyResult<&mut AnyConsumer> {
        self.end.as_mut().ok_or_else(|| PyValueError::new_err("the consumer is closed"))
    }

    /// Release the view of a held message, so that nothing can read ring memory through it
    /// once the message is consumed or the ring unmapped. Fails, keeping everything as it is,
    /// while the view is exported (a `numpy.frombuffer` of it, say).
    fn settle(&mut self, py: Python<'_>) -> PyResult<()> {
        if let Some(view) = self.view.take() {
            if let Err(e) = view.call_method0(py, "release") {
                self.view = Some(view);
                return Err(still_exported(&e.to_string()));
            }
        }
        match self.exports.load(Ordering::Relaxed) {
            0 => Ok(()),
            n => Err(still_exported(&format!("{n} views of it are alive"))),
        }
    }

    /// The end, ready for a new receive.
    fn ready(&mut self, py: Python<'_>) -> PyResult<&mut AnyConsumer> {
        self.settle(py)?;
        self.end()
    }

    fn new(end: AnyConsumer) -> Consumer {
        Consumer { end: Some(end), view: None, reads: 0, exports: Arc::default() }
    }
}

fn still_exported(why: &str) -> PyErr {
    PyValueError::new_err(format!(
        "the memoryview of the message read before is still exported ({why}): release what was \
         made from it (copy what you keep with bytes(view)) before the next call"
    ))
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if (self.view.is_some() || self.exports.load(Ordering::Relaxed) > 0)
            && Python::attach(|py| self.settle(py)).is_err()
        {
            // A view of ring memory is still exported: keep the ring mapped for it.
            std::mem::forget(self.end.take());
        }
    }
}

#[pymethods]
impl Consumer {
    /// Create the file `path` and a ring in it, and attach as its consumer.
    #[staticmethod]
    #[pyo3(signature = (path, kind="spsc", capacity=1 << 20, slots=8, max_message=None, policy="block"))]
    fn create_file(
        path: String,
        kind: &str,
        capacity: u64,
        slots: u32,
        max_message: Option<u64>,
        policy: &str,
    ) -> PyResult<Consumer> {
        Consumer::create(Place::File(path), config(kind, capacity, slots, max_message, policy)?)
    }

    /// Create the POSIX shm object `name` and a ring in it, and attach as its consumer.
    #[staticmethod]
    #[pyo3(signature = (name, kind="spsc", capacity=1 << 20, slots=8, max_message=None, policy="block"))]
    fn create_shm(
        name: String,
        kind: &str,
        capacity: u64,
        slots: u32,
        max_message: Option<u64>,
        policy: &str,
    ) -> PyResult<Consumer> {
        Consumer::create(Place::Shm(name), config(kind, capacity, slots, max_message, policy)?)
    }

    /// Attach as the consumer (broadcast: a subscriber) of the ring in the file `path`.
    #[staticmethod]
    #[pyo3(signature = (path, kind=None, history=0))]
    fn open_file(py: Python<'_>, path: String, kind: Option<&str>, history: u64) -> PyResult<Consumer> {
        Consumer::open(py, Place::File(path), kind_of(kind)?, history)
    }

    /// Attach as the consumer (broadcast: a subscriber) of the ring in the POSIX shm object
    /// `name`.
    #[staticmethod]
    #[pyo3(signature = (name, kind=None, history=0))]
    fn open_shm(py: Python<'_>, name: String, kind: Option<&str>, history: u64) -> PyResult<Consumer> {
        Consumer::open(py, Place::Shm(name), kind_of(kind)?, history)
    }

    /// Receive the next message as `bytes`, waiting up to `timeout` seconds.
    #[pyo3(signature = (timeout=None))]
    fn recv<'py>(&mut self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyBytes>> {
        let wait = wait_of(timeout)?;
        let end = self.ready(py)?;
        // The first look holds the GIL (releasing it costs more than a receive); a wait does not.
        let len = match end.read(Some(Duration::ZERO)) {
            Err(RecvTimeoutError::Timeout) if wait != Some(Duration::ZERO) => {
                interruptible(py, wait, |w| end.read(w).map(|(_, len)| len), is_timeout)?
                    .map_err(recv_error)?
            }
            r => r.map(|(_, len)| len).map_err(recv_error)?,
        };
        let bytes = PyBytes::new_with(py, len, |dst| {
            end.copy_held(dst);
            Ok(())
        });
        // Consumed only once copied: after a failed allocation the next receive returns it.
        match bytes {
            Ok(_) => end.release(),
            Err(_) => end.unread(),
        };
        bytes
    }

    /// Receive the next message into `buffer` (a writable bytes-like object), waiting up to
    /// `timeout` seconds; returns its length. A message longer than the buffer stays in the
    /// ring (`ValueError`).
    #[pyo3(signature = (buffer, timeout=None))]
    fn recv_into(
        &mut self,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let wait = wait_of(timeout)?;
        let buf = PyBuffer::<u8>::get(buffer)?;
        let (addr, len) = buffer_of(&buf, true)?;
        let end = self.ready(py)?;
        let attempt = |w| {
            // SAFETY: the writable buffer's `len` bytes at `addr` stay valid while `buf` (an
            // export of them) lives. They are the caller's memory, written without the GIL as
            // `socket.recv_into` does; not a ring's (this package's views are read-only).
            let dst = unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, len) };
            end.recv_into(dst, w)
        };
        interruptible(py, wait, attempt, is_timeout)?.map_err(recv_error)
    }

    /// Wait up to `timeout` seconds for the next message and hold it in place:
    /// `with consumer.read() as view:` gives a read-only memoryview of it, valid inside the
    /// block; the message is consumed at the block's end.
    #[pyo3(signature = (timeout=None))]
    fn read(slf: Bound<'_, Self>, timeout: Option<f64>) -> PyResult<Message> {
        let py = slf.py();
        let wait = wait_of(timeout)?;
        let read = {
            let mut this = slf.borrow_mut();
            let end = this.ready(py)?;
            interruptible(py, wait, |w| end.read(w).map(drop), is_timeout)?.map_err(recv_error)?;
            this.reads += 1;
            (this.reads, this.exports.clone())
        };
        Ok(Message { consumer: slf.unbind(), read: read.0, exports: read.1 })
    }

    /// The ring's kind: 'spsc', 'mpsc' or 'broadcast'.
    #[getter]
    fn kind(&mut self) -> PyResult<&'static str> {
        Ok(kind_name(self.end()?.kind()))
    }

    /// The largest message the ring takes, in bytes (a buffer this large receives any message).
    #[getter]
    fn max_message(&mut self) -> PyResult<usize> {
        Ok(self.end()?.max_message())
    }

    /// Size of the ring's data area, in bytes.
    #[getter]
    fn capacity(&mut self) -> PyResult<usize> {
        Ok(self.end()?.capacity())
    }

    /// Close this end (a message held by `read` is consumed).
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        self.settle(py)?;
        self.end = None;
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
        self.close(py)
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        if let Some(view) = &self.view {
            visit.call(view)?;
        }
        Ok(())
    }

    /// The collector breaks a cycle (view -> message -> consumer -> view) of a consumer nobody
    /// holds: the view goes, the end closes with the consumer.
    fn __clear__(&mut self) {
        self.view = None;
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// The next message; the iteration ends when the producers are gone (closed or dead).
    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        match self.recv(py, None) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.is_instance_of::<Disconnected>(py) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn __repr__(&self) -> String {
        match &self.end {
            Some(end) => {
                format!("<shm_ipc.Consumer {} ring, {} bytes>", kind_name(end.kind()), end.capacity())
            }
            None => "<shm_ipc.Consumer closed>".into(),
        }
    }
}

impl Consumer {
    fn create(place: Place, config: RingConfig) -> PyResult<Consumer> {
        let region = Arc::new(place.create(config.region_len())?);
        let end = AnyConsumer::create(region, &config)
            .inspect_err(|_| place.remove())
            .map_err(|e| PyValueError::new_err(format!("creating the ring: {e}")))?;
        Ok(Consumer::new(end))
    }

    fn open(py: Python<'_>, place: Place, kind: Option<Kind>, history: u64) -> PyResult<Consumer> {
        let region = place.open()?;
        let options = AttachOptions::new().history(history);
        let end = py.detach(|| AnyConsumer::open(region, kind, &options)).map_err(attach_error)?;
        Ok(Consumer::new(end))
    }
}

/// A message held in place by `Consumer.read()`: a context manager whose value is a read-only
/// memoryview of it.
#[pyclass(module = "shm_ipc")]
struct Message {
    consumer: Py<Consumer>,
    /// The consumer's `reads` when this message was read.
    read: u64,
    /// The consumer's count of exports.
    exports: Arc<AtomicUsize>,
}

#[pymethods]
impl Message {
    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        {
            let mut consumer = slf.borrow().consumer.bind(py).borrow_mut();
            if consumer.reads != slf.borrow().read {
                return Err(PyValueError::new_err(
                    "the message was released: the consumer received after it",
                ));
            }
            if let Some(view) = &consumer.view {
                return Ok(view.clone_ref(py));
            }
            consumer.settle(py)?;
        }
        // A memoryview of this object (its buffer is the held message: `__getbuffer__`), so
        // that every view made from it counts as an export until it is released.
        // SAFETY: PyMemoryView_FromObject takes a live object and returns a new reference or
        // NULL with an exception set.
        let view =
            unsafe { Bound::from_owned_ptr_or_err(py, pyo3::ffi::PyMemoryView_FromObject(slf.as_ptr()))? };
        let view = view.unbind();
        slf.borrow().consumer.bind(py).borrow_mut().view = Some(view.clone_ref(py));
        Ok(view)
    }

    /// The buffer protocol: the held message, read-only.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: std::ffi::c_int,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.borrow();
        let mut consumer = this.consumer.bind(py).borrow_mut();
        if consumer.reads != this.read {
            return Err(PyValueError::new_err("the message was released: the consumer received after it"));
        }
        let end = consumer.end()?;
        let gone = || PyValueError::new_err("the message was released already");
        let (len, ptr) = (end.held().ok_or_else(gone)?, end.held_ptr().ok_or_else(gone)?);
        // SAFETY: `view` is the exporter's buffer to fill (the protocol's promise).
        // PyBuffer_FillInfo describes `len` read-only bytes at `ptr`: the held message, which
        // stays mapped and unconsumed while any export lives (`exports` counts them:
        // `Consumer::settle` refuses to go on, and a Consumer dropped with exports keeps the ring
        // mapped). The bytes are shared with the producer's process: Python reads them as any
        // buffer, never through a Rust reference.
        let r = unsafe {
            pyo3::ffi::PyBuffer_FillInfo(view, slf.as_ptr(), ptr.cast_mut().cast(), len as isize, 1, flags)
        };
        if r != 0 {
            return Err(PyErr::fetch(py));
        }
        this.exports.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut pyo3::ffi::Py_buffer) {
        self.exports.fetch_sub(1, Ordering::Relaxed);
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.consumer)
    }

    /// Release the view, then consume the message (unless a later receive did already).
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
        let mut consumer = self.consumer.bind(py).borrow_mut();
        if consumer.reads != self.read {
            return Ok(());
        }
        consumer.settle(py)?;
        if let Some(end) = consumer.end.as_mut() {
            end.release();
        }
        Ok(())
    }
}

/// Inter-process message rings in shared memory.
#[pymodule]
fn shm_ipc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Producer>()?;
    m.add_class::<Consumer>()?;
    m.add_class::<Message>()?;
    m.add("Disconnected", py.get_type::<Disconnected>())?;
    m.add("PeerDead", py.get_type::<PeerDead>())?;
    m.add("CorruptError", py.get_type::<CorruptError>())?;
    m.add("Lagged", py.get_type::<Lagged>())?;
    m.add("LAYOUT_VERSION", shm_ring::layout::LAYOUT_VERSION)?;
    Ok(())
}
