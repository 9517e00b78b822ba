//! Passing a descriptor to another process over a Unix socket (`SCM_RIGHTS`).
//!
//! This is how a sealed memfd region reaches a process that cannot open it by name, including
//! a process of another user: the receiver gets the descriptor itself, so no file permission
//! or name in a shared namespace is involved.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use crate::error::errno_io;
use crate::sys;

/// Send `fd` over the connected stream `sock`.
pub fn send_fd(sock: &UnixStream, fd: BorrowedFd<'_>) -> io::Result<()> {
    sys::send_fd(sock, fd).map_err(errno_io)
}

/// Receive one descriptor sent with [`send_fd`]. Blocks until one arrives.
///
/// Errors: [`io::ErrorKind::UnexpectedEof`] when the peer closed the stream first, and
/// [`io::ErrorKind::InvalidData`] when a message arrived without a descriptor.
pub fn recv_fd(sock: &UnixStream) -> io::Result<OwnedFd> {
    match sys::recv_fd(sock).map_err(errno_io)? {
        sys::Received::Fd(fd) => Ok(fd),
        sys::Received::Eof => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "peer closed the Unix socket before sending a descriptor",
        )),
        sys::Received::NoFd => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message on the Unix socket carried no descriptor (expected exactly one, SCM_RIGHTS)",
        )),
    }
}
