//! The layout's constants for C: literals here (cbindgen exports literals), checked against
//! the Rust definitions (`shm_ring::layout::C_CONSTANTS`) by the unit test below, and the
//! generated header's values against the same table by `tests/c_programs.rs`. The layout
//! itself is specified in `docs/layout.md`.

/// `b"SHMRING1"` read as a little-endian u64: the first 8 bytes of every ring.
pub const SHM_MAGIC: u64 = 0x3147_4E49_524D_4853;
/// The layout version this library reads and writes (header offset `SHM_OFF_VERSION`).
pub const SHM_LAYOUT_VERSION: u64 = 3;
/// Separation of hot words: each sits on its own 128-byte line.
pub const SHM_LINE: u64 = 128;
/// Size of a record header, and the alignment of every record.
pub const SHM_RECORD_HEADER: u64 = 8;
/// Size of a broadcast message record's header: the record word, then the sequence number.
pub const SHM_BROADCAST_RECORD_HEADER: u64 = 16;
/// Size of the fixed part of the header; the producer slots follow.
pub const SHM_FIXED_HEADER: u64 = 768;
/// Size of one slot: owner word, then tenure word.
pub const SHM_SLOT_SIZE: u64 = 16;
/// Size of one broadcast subscriber entry: a slot, then its cursor, on its own line.
pub const SHM_SUBSCRIBER_ENTRY: u64 = 128;
/// The most producers an MPSC ring may have.
pub const SHM_MAX_PRODUCERS: u64 = 255;
/// The most subscribers a broadcast ring may have.
pub const SHM_MAX_SUBSCRIBERS: u64 = 255;
/// The smallest data area, in bytes.
pub const SHM_MIN_CAPACITY: u64 = 64;
/// The largest payload length a record header holds.
pub const SHM_MAX_RECORD_LEN: u64 = 0xFFFF_FFF8;
/// Positions at or above this are corrupt.
pub const SHM_MAX_POSITION: u64 = 0x4000_0000_0000_0000;
/// Header offset of `magic` (u64).
pub const SHM_OFF_MAGIC: u64 = 0;
/// Header offset of `version` (u32).
pub const SHM_OFF_VERSION: u64 = 8;
/// Header offset of `header_size` (u32): where the data area starts.
pub const SHM_OFF_HEADER_SIZE: u64 = 12;
/// Header offset of `kind` (u32): `SHM_KIND_*`.
pub const SHM_OFF_KIND: u64 = 16;
/// Header offset of `state` (u32): `SHM_STATE_*`, written last by the creator.
pub const SHM_OFF_STATE: u64 = 20;
/// Header offset of `capacity` (u64): data bytes, a power of two.
pub const SHM_OFF_CAPACITY: u64 = 24;
/// Header offset of `max_message` (u32).
pub const SHM_OFF_MAX_MESSAGE: u64 = 32;
/// Header offset of `max_producers` (u32).
pub const SHM_OFF_MAX_PRODUCERS: u64 = 36;
/// Header offset of the creator's owner word (u64).
pub const SHM_OFF_CREATOR: u64 = 40;
/// Header offset of `free_key` (u64), the key of MPSC free words.
pub const SHM_OFF_FREE_KEY: u64 = 48;
/// Header offset of `creator_ns` (u32).
pub const SHM_OFF_CREATOR_NS: u64 = 56;
/// Header offset of `max_subscribers` (u32, broadcast).
pub const SHM_OFF_MAX_SUBSCRIBERS: u64 = 60;
/// Header offset of `policy` (u32, broadcast): `SHM_POLICY_*`.
pub const SHM_OFF_POLICY: u64 = 64;
/// Header offset of `tail` (u64): the producer position.
pub const SHM_OFF_TAIL: u64 = 128;
/// Header offset of `next_seq` (u64, broadcast).
pub const SHM_OFF_NEXT_SEQ: u64 = 136;
/// Header offset of `head` (u64): the consumer position.
pub const SHM_OFF_HEAD: u64 = 256;
/// Header offset of `hand_back` (u64, MPSC).
pub const SHM_OFF_HAND_BACK: u64 = 264;
/// Header offset of `reserved` (u64, broadcast).
pub const SHM_OFF_RESERVED: u64 = 272;
/// Header offset of the `data_ready` wait point: futex `seq` u32, then `waiters` u32.
pub const SHM_OFF_DATA_READY: u64 = 384;
/// Header offset of the `space_ready` wait point.
pub const SHM_OFF_SPACE_READY: u64 = 512;
/// Header offset of the consumer slot.
pub const SHM_OFF_CONSUMER_SLOT: u64 = 640;
/// Header offset of producer slot 0 (slot `i` at `768 + 16 * i`).
pub const SHM_OFF_PRODUCER_SLOTS: u64 = 768;
/// Header offset of broadcast subscriber entry 0 (entry `i` at `896 + 128 * i`).
pub const SHM_OFF_SUBSCRIBERS: u64 = 896;
/// `kind`: one producer, one consumer.
pub const SHM_KIND_SPSC: u64 = 1;
/// `kind`: many producers, one consumer.
pub const SHM_KIND_MPSC: u64 = 2;
/// `kind`: one producer, many subscribers.
pub const SHM_KIND_BROADCAST: u64 = 3;
/// `state`: nothing initialised.
pub const SHM_STATE_EMPTY: u64 = 0;
/// `state`: a creator is initialising.
pub const SHM_STATE_INITIALIZING: u64 = 1;
/// `state`: initialised; every other header field is valid.
pub const SHM_STATE_READY: u64 = 2;
/// Record type: free space.
pub const SHM_RECORD_FREE: u64 = 0;
/// Record type: a message.
pub const SHM_RECORD_MSG: u64 = 1;
/// Record type: padding to the end of the data area.
pub const SHM_RECORD_PAD: u64 = 2;
/// Record type (MPSC): claimed, payload being written.
pub const SHM_RECORD_CLAIMED: u64 = 3;
/// Record type (MPSC): an aborted claim, to skip.
pub const SHM_RECORD_SKIP: u64 = 4;
/// Broadcast policy: wait for the slowest live subscriber (lossless).
pub const SHM_POLICY_BLOCK: u64 = 1;
/// Broadcast policy: never wait; lapped subscribers are told how much they lost.
pub const SHM_POLICY_OVERWRITE: u64 = 2;
/// Owner word state (bits 62-63): free.
pub const SHM_OWNER_FREE: u64 = 0;
/// Owner word state: attached.
pub const SHM_OWNER_ATTACHED: u64 = 1;
/// Owner word state: closed.
pub const SHM_OWNER_CLOSED: u64 = 2;
/// Owner word: shift of the state field.
pub const SHM_OWNER_STATE_SHIFT: u64 = 62;
/// Owner word `L`: the holder holds an OFD lock on the word's first byte.
pub const SHM_OWNER_LOCK_BIT: u64 = 0x2000_0000_0000_0000;
/// Owner word `N`: the holder's PID namespace is recorded in the slot's tenure word.
pub const SHM_OWNER_NS_BIT: u64 = 0x1000_0000_0000_0000;
/// Owner word: shift of the 23-bit pid; the low 37 bits are the start time.
pub const SHM_OWNER_PID_SHIFT: u64 = 37;

/// Every constant above, by name (for the check against the Rust definitions).
#[cfg(test)]
const ALL: &[(&str, u64)] = &[
    ("SHM_MAGIC", SHM_MAGIC),
    ("SHM_LAYOUT_VERSION", SHM_LAYOUT_VERSION),
    ("SHM_LINE", SHM_LINE),
    ("SHM_RECORD_HEADER", SHM_RECORD_HEADER),
    ("SHM_BROADCAST_RECORD_HEADER", SHM_BROADCAST_RECORD_HEADER),
    ("SHM_FIXED_HEADER", SHM_FIXED_HEADER),
    ("SHM_SLOT_SIZE", SHM_SLOT_SIZE),
    ("SHM_SUBSCRIBER_ENTRY", SHM_SUBSCRIBER_ENTRY),
    ("SHM_MAX_PRODUCERS", SHM_MAX_PRODUCERS),
    ("SHM_MAX_SUBSCRIBERS", SHM_MAX_SUBSCRIBERS),
    ("SHM_MIN_CAPACITY", SHM_MIN_CAPACITY),
    ("SHM_MAX_RECORD_LEN", SHM_MAX_RECORD_LEN),
    ("SHM_MAX_POSITION", SHM_MAX_POSITION),
    ("SHM_OFF_MAGIC", SHM_OFF_MAGIC),
    ("SHM_OFF_VERSION", SHM_OFF_VERSION),
    ("SHM_OFF_HEADER_SIZE", SHM_OFF_HEADER_SIZE),
    ("SHM_OFF_KIND", SHM_OFF_KIND),
    ("SHM_OFF_STATE", SHM_OFF_STATE),
    ("SHM_OFF_CAPACITY", SHM_OFF_CAPACITY),
    ("SHM_OFF_MAX_MESSAGE", SHM_OFF_MAX_MESSAGE),
    ("SHM_OFF_MAX_PRODUCERS", SHM_OFF_MAX_PRODUCERS),
    ("SHM_OFF_CREATOR", SHM_OFF_CREATOR),
    ("SHM_OFF_FREE_KEY", SHM_OFF_FREE_KEY),
    ("SHM_OFF_CREATOR_NS", SHM_OFF_CREATOR_NS),
    ("SHM_OFF_MAX_SUBSCRIBERS", SHM_OFF_MAX_SUBSCRIBERS),
    ("SHM_OFF_POLICY", SHM_OFF_POLICY),
    ("SHM_OFF_TAIL", SHM_OFF_TAIL),
    ("SHM_OFF_NEXT_SEQ", SHM_OFF_NEXT_SEQ),
    ("SHM_OFF_HEAD", SHM_OFF_HEAD),
    ("SHM_OFF_HAND_BACK", SHM_OFF_HAND_BACK),
    ("SHM_OFF_RESERVED", SHM_OFF_RESERVED),
    ("SHM_OFF_DATA_READY", SHM_OFF_DATA_READY),
    ("SHM_OFF_SPACE_READY", SHM_OFF_SPACE_READY),
    ("SHM_OFF_CONSUMER_SLOT", SHM_OFF_CONSUMER_SLOT),
    ("SHM_OFF_PRODUCER_SLOTS", SHM_OFF_PRODUCER_SLOTS),
    ("SHM_OFF_SUBSCRIBERS", SHM_OFF_SUBSCRIBERS),
    ("SHM_KIND_SPSC", SHM_KIND_SPSC),
    ("SHM_KIND_MPSC", SHM_KIND_MPSC),
    ("SHM_KIND_BROADCAST", SHM_KIND_BROADCAST),
    ("SHM_STATE_EMPTY", SHM_STATE_EMPTY),
    ("SHM_STATE_INITIALIZING", SHM_STATE_INITIALIZING),
    ("SHM_STATE_READY", SHM_STATE_READY),
    ("SHM_RECORD_FREE", SHM_RECORD_FREE),
    ("SHM_RECORD_MSG", SHM_RECORD_MSG),
    ("SHM_RECORD_PAD", SHM_RECORD_PAD),
    ("SHM_RECORD_CLAIMED", SHM_RECORD_CLAIMED),
    ("SHM_RECORD_SKIP", SHM_RECORD_SKIP),
    ("SHM_POLICY_BLOCK", SHM_POLICY_BLOCK),
    ("SHM_POLICY_OVERWRITE", SHM_POLICY_OVERWRITE),
    ("SHM_OWNER_FREE", SHM_OWNER_FREE),
    ("SHM_OWNER_ATTACHED", SHM_OWNER_ATTACHED),
    ("SHM_OWNER_CLOSED", SHM_OWNER_CLOSED),
    ("SHM_OWNER_STATE_SHIFT", SHM_OWNER_STATE_SHIFT),
    ("SHM_OWNER_LOCK_BIT", SHM_OWNER_LOCK_BIT),
    ("SHM_OWNER_NS_BIT", SHM_OWNER_NS_BIT),
    ("SHM_OWNER_PID_SHIFT", SHM_OWNER_PID_SHIFT),
];

#[cfg(test)]
mod tests {
    #[test]
    fn the_constants_are_the_rust_layouts() {
        assert_eq!(super::ALL, shm_ring::layout::C_CONSTANTS);
    }
}
