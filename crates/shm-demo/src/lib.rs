//! The shm-ipc demo programs' logic: the binaries only parse arguments and print.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod admin;
pub mod async_bench;
pub mod bench;
pub mod chart;
pub mod forkdemo;
pub mod instr;
pub mod pair;
pub mod soak;
pub mod stream;
pub mod transport;
