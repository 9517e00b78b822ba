//! What a bridge adds to a message on the network: nothing in the payload (a Zenoh sample's
//! payload is the ring message, byte for byte, so any Zenoh subscriber can read it), and a
//! 17-byte attachment: a format byte, the source id of the outbound bridge, and its sequence
//! number for the message (both little-endian).

/// The attachment's format byte.
const FORMAT: u8 = 1;
/// The attachment's length.
pub const LEN: usize = 17;

/// A message's place in its source's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Names the outbound bridge's stream: drawn at random when it first bridged its ring,
    /// kept across restarts in its state file. Never 0.
    pub source: u64,
    /// 0 for the first message of the stream, one more for each message after it.
    pub seq: u64,
}

impl Stamp {
    /// The attachment bytes.
    pub fn encode(self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = FORMAT;
        b[1..9].copy_from_slice(&self.source.to_le_bytes());
        b[9..17].copy_from_slice(&self.seq.to_le_bytes());
        b
    }

    /// Read an attachment: `None` unless it is one this format made (another publisher's
    /// sample, or none).
    pub fn decode(b: &[u8]) -> Option<Stamp> {
        if b.len() != LEN || b[0] != FORMAT {
            return None;
        }
        let word = |r: std::ops::Range<usize>| u64::from_le_bytes(b[r].try_into().expect("8 bytes"));
        let source = word(1..9);
        (source != 0).then(|| Stamp { source, seq: word(9..17) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_survives_encoding_and_foreign_bytes_are_refused() {
        let s = Stamp { source: 0x0123_4567_89ab_cdef, seq: u64::MAX - 1 };
        assert_eq!(Stamp::decode(&s.encode()), Some(s));
        assert_eq!(Stamp::decode(&s.encode()[..16]), None);
        let mut other = s.encode();
        other[0] = 2;
        assert_eq!(Stamp::decode(&other), None);
        assert_eq!(Stamp::decode(&Stamp { source: 0, seq: 1 }.encode()), None);
        assert_eq!(Stamp::decode(b""), None);
    }
}
