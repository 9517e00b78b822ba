//! How a ring is laid out: the configuration a creator chooses ([`RingConfig`]) and the
//! geometry every end copies at attach ([`Geometry`]), with the one validator both go through.

use crate::error::{AttachError, CorruptError, InitError, SendStop};
use crate::layout::{self, Kind, Policy, MAX_POSITION, MIN_CAPACITY};

/// The largest data area accepted (1 TiB).
pub const MAX_CAPACITY: u64 = 1 << 40;

/// How to lay out a new ring.
///
/// ```
/// use shm_ring::RingConfig;
/// let config = RingConfig::spsc(1 << 16).max_message(1024);
/// assert_eq!(config.capacity(), 65536);
/// assert!(config.region_len() >= 65536);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingConfig {
    kind: Kind,
    capacity: u64,
    max_message: Option<u64>,
    max_producers: u32,
    max_subscribers: u32,
    policy: Policy,
}

impl RingConfig {
    /// A single-producer single-consumer ring with `capacity` data bytes (a power of two).
    pub fn spsc(capacity: u64) -> RingConfig {
        RingConfig::new(Kind::Spsc, capacity, 1, 0)
    }

    /// A many-producer single-consumer ring with `capacity` data bytes and `max_producers` attach
    /// slots (at most 255).
    pub fn mpsc(capacity: u64, max_producers: u32) -> RingConfig {
        RingConfig::new(Kind::Mpsc, capacity, max_producers, 0)
    }

    /// A broadcast ring: one producer, up to `max_subscribers` subscribers at a time (at most
    /// 255), each receiving every message published after it joined. The producer waits for
    /// the slowest live subscriber unless the [`policy`](RingConfig::policy) says otherwise.
    ///
    /// ```
    /// use shm_ring::{Policy, RingConfig};
    /// let config = RingConfig::broadcast(1 << 16, 4).policy(Policy::Overwrite);
    /// assert_eq!(config.get_policy(), Policy::Overwrite);
    /// ```
    pub fn broadcast(capacity: u64, max_subscribers: u32) -> RingConfig {
        RingConfig::new(Kind::Broadcast, capacity, 1, max_subscribers)
    }

    fn new(kind: Kind, capacity: u64, max_producers: u32, max_subscribers: u32) -> RingConfig {
        RingConfig {
            kind,
            capacity,
            max_message: None,
            max_producers,
            max_subscribers,
            policy: Policy::Block,
        }
    }

    /// The largest message payload (default and limit: half the capacity less 8 bytes; for a
    /// broadcast ring, less 24).
    pub fn max_message(mut self, max: u64) -> RingConfig {
        self.max_message = Some(max);
        self
    }

    /// What a broadcast producer does when a subscriber has not read the space it needs:
    /// wait for it ([`Policy::Block`], the default) or write over it
    /// ([`Policy::Overwrite`]). Other kinds have no policy: setting one is refused at
    /// creation.
    pub fn policy(mut self, policy: Policy) -> RingConfig {
        self.policy = policy;
        self
    }

    /// The policy set.
    pub fn get_policy(&self) -> Policy {
        self.policy
    }

    /// Subscriber slots (broadcast rings; 0 for the other kinds).
    pub fn max_subscribers(&self) -> u32 {
        self.max_subscribers
    }

    /// Data bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The ring's kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Bytes of header before the data area.
    pub fn header_len(&self) -> usize {
        Geometry::header_size_for(self.kind, self.max_producers, self.max_subscribers)
    }

    /// The region length this ring needs: header plus capacity.
    pub fn region_len(&self) -> usize {
        self.header_len().saturating_add(usize::try_from(self.capacity).unwrap_or(usize::MAX))
    }

    pub(crate) fn validate(&self) -> Result<Geometry, InitError> {
        if self.kind != Kind::Broadcast && self.policy != Policy::Block {
            return Err(InitError::PolicyNotSupported { kind: self.kind, policy: self.policy });
        }
        let max_message = self.max_message.unwrap_or(Geometry::max_message_limit(self.kind, self.capacity));
        let shape = Shape {
            max_producers: self.max_producers,
            subscribers: self.max_subscribers,
            policy: self.policy,
        };
        Geometry::new(self.kind, self.capacity, max_message, shape, 0).map_err(|e| match e.field {
            "capacity" => InitError::BadCapacity { found: e.found },
            "max_message" => InitError::BadMaxMessage {
                found: e.found,
                limit: Geometry::max_message_limit(self.kind, self.capacity),
            },
            "max_subscribers" => {
                InitError::BadSubscribers { found: e.found as u32, limit: layout::MAX_SUBSCRIBERS }
            }
            _ => InitError::BadProducers { found: e.found as u32, limit: self.kind.max_producers() },
        })
    }
}

/// The geometry of a ring, copied into each handle at attach and never re-read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[doc(hidden)]
pub struct Geometry {
    pub kind: Kind,
    pub capacity: u64,
    pub mask: u64,
    pub max_message: usize,
    pub header_size: usize,
    pub max_producers: u32,
    /// Key of the free words ([`layout::free_word`]), chosen at creation.
    pub free_key: u64,
    /// `log2(capacity)`: a position's lap is `position >> lap_shift`.
    pub lap_shift: u32,
    /// Broadcast: subscriber slots (0 for the other kinds).
    pub subscribers: u32,
    /// Broadcast: what the producer does when a subscriber is behind (`Block` for the others).
    pub policy: Policy,
}

/// The slot counts and policy of a ring, as [`Geometry::new`] takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    pub max_producers: u32,
    pub subscribers: u32,
    pub policy: Policy,
}

/// A geometry rule broken: the field, the value found and what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GeometryError {
    pub field: &'static str,
    pub found: u64,
    pub expected: String,
}

impl From<GeometryError> for AttachError {
    fn from(e: GeometryError) -> AttachError {
        AttachError::BadHeader { field: e.field, found: e.found, expected: e.expected }
    }
}

/// What the record word at a position of one lap may hold, kept until the lap changes
/// (computing the free word takes a dozen instructions; comparing, one).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lap {
    pub(crate) lap: u64,
    /// The lap's free word (in an SPSC ring: the terminator).
    pub(crate) free: u64,
}

impl Lap {
    pub(crate) fn new(geo: &Geometry, position: u64) -> Lap {
        Lap { lap: geo.lap(position), free: geo.free_word_at(position) }
    }

    /// The lap of `position`.
    #[inline]
    pub(crate) fn at(&mut self, geo: &Geometry, position: u64) -> &Lap {
        if geo.lap(position) != self.lap {
            *self = Lap::new(geo, position);
        }
        self
    }
}

impl Geometry {
    /// The size of a padding record with payload length `len` found at data-area index `idx`
    /// (at `position`, for the error). Padding fills the end of the data area when the next
    /// record does not fit: never at index 0, never as long as a largest record.
    pub(crate) fn padding_size(&self, idx: usize, len: usize, position: u64) -> Result<usize, CorruptError> {
        let size = self.capacity as usize - idx;
        if idx == 0 || len + layout::RECORD_HEADER != size || size >= layout::record_size(self.max_message) {
            return Err(CorruptError {
                what: "padding length",
                found: len as u64,
                position,
                expected: "the rest of the data area, shorter than a largest record",
            });
        }
        Ok(size)
    }

    /// The lap of a position (`position / capacity`, as a shift).
    #[inline]
    pub(crate) fn lap(&self, position: u64) -> u64 {
        position >> self.lap_shift
    }

    /// The free word of the lap of `position` ([`layout::free_word`]).
    #[inline]
    pub(crate) fn free_word_at(&self, position: u64) -> u64 {
        layout::free_word(self.free_key, self.lap(position))
    }

    /// Whether a payload of `len` bytes fits a record of this ring (`TooLarge` otherwise): the
    /// one check every claim makes first.
    pub(crate) fn check_len(&self, len: usize) -> Result<(), SendStop> {
        if len > self.max_message {
            return Err(SendStop::TooLarge { len, max: self.max_message });
        }
        Ok(())
    }

    /// The one geometry validator, for a creator's [`RingConfig`] and for a descriptor read
    /// from shared memory alike: `capacity` a power of two in range, `max_message` from 1 to
    /// [`layout::max_message_for`] the capacity, the producer count the kind allows.
    pub(crate) fn new(
        kind: Kind,
        capacity: u64,
        max_message: u64,
        shape: Shape,
        free_key: u64,
    ) -> Result<Geometry, GeometryError> {
        let Shape { max_producers, subscribers, policy } = shape;
        let bad = |field, found, expected: String| GeometryError { field, found, expected };
        if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            let expected = format!("a power of two from {MIN_CAPACITY} to {MAX_CAPACITY}");
            return Err(bad("capacity", capacity, expected));
        }
        if kind == Kind::Broadcast && !(1..=layout::MAX_SUBSCRIBERS).contains(&subscribers) {
            let expected = format!("1 to {}", layout::MAX_SUBSCRIBERS);
            return Err(bad("max_subscribers", subscribers.into(), expected));
        }
        // The other kinds keep no subscribers and no policy (their header bytes are not read).
        let (subscribers, policy) =
            if kind == Kind::Broadcast { (subscribers, policy) } else { (0, Policy::Block) };
        let limit = Geometry::max_message_limit(kind, capacity);
        if max_message == 0 || max_message > limit {
            return Err(bad("max_message", max_message, format!("1 to {limit}")));
        }
        let most = kind.max_producers();
        if !(1..=most).contains(&max_producers) {
            let expected = if most == 1 { "1".to_owned() } else { format!("1 to {most}") };
            return Err(bad("max_producers", max_producers.into(), expected));
        }
        Ok(Geometry {
            kind,
            capacity,
            mask: capacity - 1,
            max_message: max_message as usize,
            header_size: Geometry::header_size_for(kind, max_producers, subscribers),
            max_producers,
            free_key,
            lap_shift: capacity.trailing_zeros(),
            subscribers,
            policy,
        })
    }

    /// The largest payload a ring of this kind and capacity carries.
    pub(crate) fn max_message_limit(kind: Kind, capacity: u64) -> u64 {
        match kind {
            Kind::Broadcast => layout::broadcast_max_message_for(capacity),
            Kind::Spsc | Kind::Mpsc => layout::max_message_for(capacity),
        }
    }

    /// Bytes of header before the data area.
    pub(crate) fn header_size_for(kind: Kind, max_producers: u32, subscribers: u32) -> usize {
        match kind {
            Kind::Broadcast => layout::broadcast_header_size(subscribers.min(layout::MAX_SUBSCRIBERS)),
            Kind::Spsc | Kind::Mpsc => layout::header_size(max_producers),
        }
    }
}

/// Check the shared positions: `head <= tail <= head + capacity`, both 8-aligned and below
/// [`MAX_POSITION`].
pub(crate) fn check_positions(head: u64, tail: u64, capacity: u64) -> Result<(), CorruptError> {
    if head % 8 != 0 || head >= MAX_POSITION {
        return Err(CorruptError {
            what: "consumer position",
            found: head,
            position: head,
            expected: "a multiple of 8 below 2^62",
        });
    }
    if tail % 8 != 0 || tail < head || tail - head > capacity {
        return Err(CorruptError {
            what: "producer position",
            found: tail,
            position: head,
            expected: "a multiple of 8 within capacity ahead of the consumer position",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::RingConfig;
    use crate::InitError;

    /// A ring of 16 GiB takes messages up to what a record header's 32-bit length holds, by
    /// default and when asked; one more byte is refused with the limit named, never cut short.
    #[test]
    fn the_max_message_of_huge_rings_fits_a_record_header() {
        let g = RingConfig::spsc(1 << 34).validate().unwrap();
        assert_eq!(g.max_message as u64, crate::layout::MAX_RECORD_LEN);
        let e = RingConfig::spsc(1 << 34).max_message(1 << 32).validate().unwrap_err();
        assert!(
            matches!(e, InitError::BadMaxMessage { found, limit } if found == 1 << 32 && limit == 0xFFFF_FFF8),
            "{e:?}"
        );
    }
}
