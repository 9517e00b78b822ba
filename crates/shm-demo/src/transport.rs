//! The transports shm-bench compares, behind one small trait: send a message of a given length
//! filled in by the caller, receive one and check it in place. Each does the copies it must and
//! no more: sockets and pipes copy through the kernel, the ring writes and reads in place (or,
//! as `shm-spsc-copy`, copies through `try_send` / `try_recv`, the calls safe with any peer).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use shm_core::{futex, Region};
use shm_ring::spsc::{Consumer, Producer};
use shm_ring::{RingConfig, TryRecvError, TrySendError};

/// One end of a transport.
pub trait Endpoint {
    /// Send one message of `len` bytes, written by `fill`.
    fn send_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> io::Result<()>;
    /// Receive one message of `len` bytes (stream transports need the length) and hand it to
    /// `check`.
    fn recv_with<R>(&mut self, len: usize, check: impl FnOnce(&[u8]) -> R) -> io::Result<R>;
}

/// A byte stream (pipe, Unix stream socket, TCP): one `write` per message, `read_exact` back.
#[derive(Debug)]
pub struct StreamEnd<W: Write, R: Read> {
    tx: W,
    rx: R,
    buf: Vec<u8>,
}

impl<W: Write, R: Read> StreamEnd<W, R> {
    /// Wrap a writer and a reader.
    pub fn new(tx: W, rx: R, max: usize) -> Self {
        StreamEnd { tx, rx, buf: vec![0; max] }
    }
}

impl<W: Write, R: Read> Endpoint for StreamEnd<W, R> {
    fn send_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> io::Result<()> {
        fill(&mut self.buf[..len]);
        self.tx.write_all(&self.buf[..len])
    }
    fn recv_with<T>(&mut self, len: usize, check: impl FnOnce(&[u8]) -> T) -> io::Result<T> {
        self.rx.read_exact(&mut self.buf[..len])?;
        Ok(check(&self.buf[..len]))
    }
}

/// A `SOCK_SEQPACKET` Unix socket: message boundaries kept by the kernel.
#[derive(Debug)]
pub struct SeqPacketEnd {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl Endpoint for SeqPacketEnd {
    fn send_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> io::Result<()> {
        fill(&mut self.buf[..len]);
        let n = nix::sys::socket::send(
            self.fd.as_raw_fd(),
            &self.buf[..len],
            nix::sys::socket::MsgFlags::empty(),
        )?;
        if n != len {
            return Err(io::Error::other(format!("seqpacket sent {n} of {len} bytes")));
        }
        Ok(())
    }
    fn recv_with<T>(&mut self, _len: usize, check: impl FnOnce(&[u8]) -> T) -> io::Result<T> {
        let n =
            nix::sys::socket::recv(self.fd.as_raw_fd(), &mut self.buf, nix::sys::socket::MsgFlags::empty())?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(check(&self.buf[..n]))
    }
}

/// Waiting style of a ring end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Non-blocking calls in a spin loop.
    Spin,
    /// Blocking calls: spin briefly, then sleep on the futex.
    Block,
}

/// A pair of SPSC rings (one each way), written and read in place (the trusted calls: both ends
/// are this program), or through a buffer of this process after [`copying`](RingEnd::copying).
#[derive(Debug)]
pub struct RingEnd {
    tx: Option<Producer>,
    rx: Option<Consumer>,
    wait: Wait,
    /// `Some`: messages are filled and checked in this buffer and copied in and out of the ring.
    copy: Option<Vec<u8>>,
}

pub(crate) fn ring_error<E: std::fmt::Display>(e: E) -> io::Error {
    io::Error::other(e.to_string())
}

impl Endpoint for RingEnd {
    fn send_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> io::Result<()> {
        let p = self.tx.as_mut().ok_or_else(|| io::Error::other("no sending ring"))?;
        if let Some(buf) = &mut self.copy {
            buf.resize(len, 0);
            fill(buf);
            return match self.wait {
                Wait::Block => p.send(&buf[..]).map_err(ring_error),
                Wait::Spin => loop {
                    match p.try_send(&buf[..]) {
                        Ok(()) => return Ok(()),
                        Err(TrySendError::Full(_)) => std::hint::spin_loop(),
                        Err(e) => return Err(ring_error(e)),
                    }
                },
            };
        }
        let mut grant = match self.wait {
            Wait::Block => p.reserve(len).map_err(ring_error)?,
            Wait::Spin => loop {
                match p.try_reserve(len) {
                    Ok(g) => break g,
                    Err(TrySendError::Full(())) => std::hint::spin_loop(),
                    Err(e) => return Err(ring_error(e)),
                }
            },
        };
        // SAFETY: both ends of the bench rings are this program, forked from the process that
        // made them (`RingPair`), following the ring protocol: nobody else touches the bytes.
        fill(unsafe { grant.as_mut_slice_unchecked() });
        grant.commit();
        Ok(())
    }
    fn recv_with<T>(&mut self, _len: usize, check: impl FnOnce(&[u8]) -> T) -> io::Result<T> {
        let c = self.rx.as_mut().ok_or_else(|| io::Error::other("no receiving ring"))?;
        if let Some(buf) = &mut self.copy {
            return match self.wait {
                Wait::Block => {
                    c.recv(buf).map_err(ring_error)?;
                    Ok(check(buf))
                }
                Wait::Spin => loop {
                    match c.try_recv(buf) {
                        Ok(_) => return Ok(check(buf)),
                        Err(TryRecvError::Empty) => std::hint::spin_loop(),
                        Err(e) => return Err(ring_error(e)),
                    }
                },
            };
        }
        match self.wait {
            Wait::Block => {
                let g = c.read().map_err(ring_error)?;
                // SAFETY: as in `send_with`: the producer is this program.
                Ok(check(unsafe { g.as_slice_unchecked() }))
            }
            Wait::Spin => loop {
                match c.try_read() {
                    // SAFETY: as in `send_with`: the producer is this program.
                    Ok(g) => return Ok(check(unsafe { g.as_slice_unchecked() })),
                    Err(TryRecvError::Empty) => std::hint::spin_loop(),
                    Err(e) => return Err(ring_error(e)),
                }
            },
        }
    }
}

impl RingEnd {
    /// Copy messages in and out of the ring (`try_send` / `try_recv`, or `send` /
    /// `recv_blocking` when blocking) instead of writing and reading them in place.
    pub fn copying(mut self) -> RingEnd {
        self.copy = Some(Vec::new());
        self
    }

    /// Wait this way from the next call on.
    pub fn set_wait(&mut self, wait: Wait) {
        self.wait = wait;
    }

    /// The producer of this end, for the batch API.
    pub fn producer(&mut self) -> Option<&mut Producer> {
        self.tx.as_mut()
    }
    /// The consumer of this end, for the batch API.
    pub fn consumer(&mut self) -> Option<&mut Consumer> {
        self.rx.as_mut()
    }
}

/// Two regions holding an initialised SPSC ring each (a→b and b→a), made before `fork`;
/// each side attaches its ends after it.
#[derive(Debug)]
pub struct RingPair {
    ab: Arc<Region>,
    ba: Arc<Region>,
}

impl RingPair {
    /// Two rings of `capacity` data bytes.
    pub fn new(capacity: u64) -> io::Result<RingPair> {
        let config = RingConfig::spsc(capacity);
        let make = || -> io::Result<Arc<Region>> {
            let r = Region::anonymous(config.region_len())?;
            r.prefault()?;
            shm_ring::init(&r, &config).map_err(ring_error)?;
            Ok(Arc::new(r))
        };
        Ok(RingPair { ab: make()?, ba: make()? })
    }

    /// The two regions: a→b and b→a.
    pub fn regions(&self) -> (Arc<Region>, Arc<Region>) {
        (self.ab.clone(), self.ba.clone())
    }

    /// Side a: produces on a→b, consumes b→a. `duplex` false attaches only the first ring.
    pub fn side_a(&self, wait: Wait, duplex: bool) -> io::Result<RingEnd> {
        let tx = Some(Producer::open(self.ab.clone()).map_err(ring_error)?);
        let rx = if duplex { Some(Consumer::open(self.ba.clone()).map_err(ring_error)?) } else { None };
        Ok(RingEnd { tx, rx, wait, copy: None })
    }

    /// Side b: consumes a→b, produces on b→a.
    pub fn side_b(&self, wait: Wait, duplex: bool) -> io::Result<RingEnd> {
        let rx = Some(Consumer::open(self.ab.clone()).map_err(ring_error)?);
        let tx = if duplex { Some(Producer::open(self.ba.clone()).map_err(ring_error)?) } else { None };
        Ok(RingEnd { tx, rx, wait, copy: None })
    }
}

/// Kernel transports, created before `fork` as a pair of connected ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Two pipes.
    Pipe,
    /// `socketpair(AF_UNIX, SOCK_STREAM)`.
    UnixStream,
    /// `socketpair(AF_UNIX, SOCK_SEQPACKET)`.
    UnixSeqPacket,
    /// TCP over loopback with `TCP_NODELAY`.
    Tcp,
}

/// Either kind of kernel end.
#[derive(Debug)]
pub enum KernelEnd {
    /// Pipes, Unix streams and TCP.
    Stream(StreamEnd<std::fs::File, std::fs::File>),
    /// Seqpacket.
    Packet(SeqPacketEnd),
}

impl Endpoint for KernelEnd {
    fn send_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> io::Result<()> {
        match self {
            KernelEnd::Stream(s) => s.send_with(len, fill),
            KernelEnd::Packet(s) => s.send_with(len, fill),
        }
    }
    fn recv_with<T>(&mut self, len: usize, check: impl FnOnce(&[u8]) -> T) -> io::Result<T> {
        match self {
            KernelEnd::Stream(s) => s.recv_with(len, check),
            KernelEnd::Packet(s) => s.recv_with(len, check),
        }
    }
}

fn file(fd: OwnedFd) -> std::fs::File {
    std::fs::File::from(fd)
}

/// Make a connected pair of kernel ends able to carry messages up to `max` bytes.
pub fn kernel_pair(kind: Kernel, max: usize) -> io::Result<(KernelEnd, KernelEnd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let stream = |a: OwnedFd, b: OwnedFd, c: OwnedFd, d: OwnedFd| {
        (
            KernelEnd::Stream(StreamEnd::new(file(a), file(b), max)),
            KernelEnd::Stream(StreamEnd::new(file(c), file(d), max)),
        )
    };
    Ok(match kind {
        Kernel::Pipe => {
            let (r1, w1) = nix::unistd::pipe()?;
            let (r2, w2) = nix::unistd::pipe()?;
            // Large pipe buffers, as a tuned pipe user would set them.
            for fd in [&w1, &w2] {
                let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
            }
            stream(w1, r2, w2, r1)
        }
        Kernel::UnixStream => {
            let (a, b) = UnixStream::pair()?;
            let (a2, b2) = (a.try_clone()?, b.try_clone()?);
            stream(a.into(), a2.into(), b.into(), b2.into())
        }
        Kernel::UnixSeqPacket => {
            let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?;
            for fd in [&a, &b] {
                let _ = nix::sys::socket::setsockopt(fd, nix::sys::socket::sockopt::SndBuf, &(4 << 20));
                let _ = nix::sys::socket::setsockopt(fd, nix::sys::socket::sockopt::RcvBuf, &(4 << 20));
            }
            (
                KernelEnd::Packet(SeqPacketEnd { fd: a, buf: vec![0; max] }),
                KernelEnd::Packet(SeqPacketEnd { fd: b, buf: vec![0; max] }),
            )
        }
        Kernel::Tcp => {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let a = TcpStream::connect(listener.local_addr()?)?;
            let (b, _) = listener.accept()?;
            a.set_nodelay(true)?;
            b.set_nodelay(true)?;
            let (a2, b2) = (a.try_clone()?, b.try_clone()?);
            stream(OwnedFd::from(a), OwnedFd::from(a2), OwnedFd::from(b), OwnedFd::from(b2))
        }
    })
}

/// The floors: the cost of the bare mechanism, with no ring around it.
#[derive(Debug)]
pub struct Floor {
    region: Region,
}

impl Floor {
    /// Two words on separate 128-byte lines in an anonymous shared region.
    pub fn new() -> io::Result<Floor> {
        Ok(Floor { region: Region::anonymous(4096)? })
    }

    fn word64(&self, line: usize) -> &AtomicU64 {
        // SAFETY: line * 128 + 8 <= 4096; aligned; the region outlives the reference; only
        // accessed atomically by both processes.
        unsafe { &*(self.region.as_ptr().add(line * 128) as *const AtomicU64) }
    }

    fn word32(&self, line: usize) -> &AtomicU32 {
        // SAFETY: as for word64.
        unsafe { &*(self.region.as_ptr().add(line * 128) as *const AtomicU32) }
    }

    /// Atomic ping-pong, pinger side: store `i` on line 0, spin until line 1 says `i`.
    pub fn atomic_ping(&self, i: u64) {
        self.word64(0).store(i, Ordering::Release);
        while self.word64(1).load(Ordering::Acquire) != i {
            std::hint::spin_loop();
        }
    }

    /// Atomic ping-pong, ponger side.
    pub fn atomic_pong(&self, i: u64) {
        while self.word64(0).load(Ordering::Acquire) != i {
            std::hint::spin_loop();
        }
        self.word64(1).store(i, Ordering::Release);
    }

    /// Futex ping-pong, pinger side: bump word 0 and wake, sleep on word 1 until it changes.
    pub fn futex_ping(&self, i: u32) {
        self.word32(0).store(i, Ordering::SeqCst);
        futex::wake(self.word32(0), 1);
        loop {
            let v = self.word32(1).load(Ordering::SeqCst);
            if v == i {
                return;
            }
            // Any return (woken, value already changed, a signal) means: look again.
            let _ = futex::wait(self.word32(1), v, None);
        }
    }

    /// Futex ping-pong, ponger side.
    pub fn futex_pong(&self, i: u32) {
        loop {
            let v = self.word32(0).load(Ordering::SeqCst);
            if v == i {
                break;
            }
            let _ = futex::wait(self.word32(0), v, None);
        }
        self.word32(1).store(i, Ordering::SeqCst);
        futex::wake(self.word32(1), 1);
    }
}
