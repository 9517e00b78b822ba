//! `shm-bridge in`: subscribe to a Zenoh key expression, write each sample into a local ring.
//!
//! The bridge is the ring's producer (one of them, on an MPSC ring). For every source (an
//! outbound bridge, named by its [`Stamp`]) it keeps the sequence number it expects next, in
//! its state page, so it sees, across reconnections and its own restarts:
//! - a sample numbered below what it expects: a duplicate (a message sent again), dropped and
//!   counted;
//! - one numbered above: a gap, counted with the number of messages missing, and logged.
//!
//! After writing, it acknowledges each source: it publishes the number it expects next on the
//! source's acknowledgement key (`@shm-bridge/ack/SOURCE`: every [`ACK_EVERY`] messages, or
//! [`ACK_SOON`] after the last acknowledgement, and again every [`ACK_AGAIN`] while idle). The outbound bridge keeps what is not acknowledged
//! and sends it again after a lost session.
//!
//! When the ring is full the bridge waits for room ([`OnFull::Block`], the default) and
//! acknowledges nothing meanwhile, so the outbound bridge stops after a window of messages and
//! the rest waits in the producer's ring. With [`OnFull::Drop`] a message that finds the ring
//! full is dropped and counted instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError as ChannelTimeout};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shm_ring::any::AnyProducer;
use shm_ring::{AttachOptions, SendTimeoutError};
use zenoh::Wait;

use crate::config::{check_key, BridgeOptions, RingLocation};
use crate::error::BridgeError;
use crate::link::{Every, Link};
use crate::out::{ack_key, Report};
use crate::state::{Counter, Role, StatePage, SOURCE_SLOTS};
use crate::wire::Stamp;

/// How long one wait lasts, so that a stop is seen soon.
const LOOK: Duration = Duration::from_millis(50);
/// A source followed in memory only.
const NO_SLOT: usize = usize::MAX;
/// Sources followed in memory, at most.
const MAX_SOURCES: usize = 4096;
/// Samples written between two acknowledgements, at most.
const ACK_EVERY: usize = 64;
/// How often every source is acknowledged again while nothing arrives.
const ACK_AGAIN: Duration = Duration::from_millis(200);
/// How old the last acknowledgement may be before a batch acknowledges every source that sent.
const ACK_SOON: Duration = Duration::from_millis(20);

/// What the inbound bridge does with a message when the ring is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnFull {
    /// Wait for room, holding the stream back (nothing is lost).
    #[default]
    Block,
    /// Drop the message and count it (`drops`): the stream never waits for the ring.
    Drop,
}

/// What an inbound bridge is told beyond [`BridgeOptions`].
#[derive(Clone, Debug)]
pub struct InOptions {
    /// When the ring is full: wait, or drop.
    pub on_full: OnFull,
    /// Samples held between Zenoh and the ring.
    pub queue: usize,
    /// At a stop, how long to keep writing the samples already received into a ring that is
    /// full; what is still left then is dropped and counted.
    pub drain_timeout: Duration,
}

impl Default for InOptions {
    fn default() -> InOptions {
        InOptions { on_full: OnFull::Block, queue: 1024, drain_timeout: Duration::from_secs(5) }
    }
}

/// Forward `options.key` into `options.ring` until `stop` is set; returns the state page (with
/// the final counters).
pub fn run_in(
    options: &BridgeOptions,
    inbound: &InOptions,
    stop: &AtomicBool,
    report: &mut dyn Report,
) -> Result<Arc<StatePage>, BridgeError> {
    let key = check_key(&options.key, false)?;
    if inbound.queue == 0 {
        return Err(BridgeError::Config {
            what: "queue 0".into(),
            reason: "expected at least 1 sample".into(),
        });
    }
    let (region, created) = options.map_ring()?;
    let producer = AnyProducer::open(region, None, &AttachOptions::new()).map_err(|e| options.ring.err(e))?;
    let page = Arc::new(StatePage::open_for(&options.state_path(Role::In), Role::In)?);
    page.set_labels(&options.ring.to_string(), &options.key);
    report.event(&format!(
        "{} the {} ring {} (state {}); subscribing to {}",
        if created { "created" } else { "opened" },
        producer.kind(),
        options.ring,
        page.path().display(),
        options.key
    ));

    let link = Link::open(&options.zenoh, page.clone(), true)?;
    let (tx, rx) = sync_channel::<Incoming>(inbound.queue);
    let max = producer.max_message();
    // The callback copies the payload out of Zenoh's buffer (none larger than the ring takes:
    // those are counted and dropped here, so a peer cannot make us hold them). It blocks while
    // the queue is full, which the outbound bridge's window (at most the queue) avoids.
    let subscriber = link
        .session
        .declare_subscriber(key)
        .callback(move |s| {
            let stamp = s.attachment().and_then(|a| Stamp::decode(&a.to_bytes()));
            let len = s.payload().len();
            let payload = (len <= max).then(|| s.payload().to_bytes().into_owned());
            let _ = tx.send(Incoming { stamp, len, payload });
        })
        .wait()
        .map_err(BridgeError::zenoh("declare the subscriber"))?;

    let sources = Sources::restore(&page);
    let mut bridge = Inbound {
        producer,
        page,
        on_full: inbound.on_full,
        sources,
        status: Every::new(options.status_every),
        stop_seen: None,
        drain_timeout: inbound.drain_timeout,
        ring: options.ring.clone(),
        warned_large: false,
        waiting: false,
        gave_up: false,
        session: link.session.clone(),
        unacked: HashMap::new(),
        acked_at: Instant::now(),
        acked_all_at: Instant::now(),
        warned_ack: false,
    };
    let result = loop {
        if stop.load(Ordering::SeqCst) {
            break Ok(());
        }
        bridge.tick(report);
        match rx.recv_timeout(LOOK) {
            Ok(first) => {
                // A batch: this sample and those queued behind it, then one acknowledgement.
                let mut next = Some(first);
                let mut n = 0;
                let mut failed = None;
                while let Some(item) = next.take() {
                    if let Err(e) = bridge.handle(item, stop, report) {
                        failed = Some(e);
                        break;
                    }
                    n += 1;
                    if n < ACK_EVERY {
                        next = rx.try_recv().ok();
                    }
                }
                if let Some(e) = failed {
                    break Err(e);
                }
                bridge.acknowledge(report);
            }
            Err(ChannelTimeout::Timeout) => bridge.acknowledge(report),
            Err(ChannelTimeout::Disconnected) => break Ok(()),
        }
    };
    // No new samples; then write those received already.
    let undeclared = subscriber.undeclare().wait().map_err(BridgeError::zenoh("undeclare the subscriber"));
    let drained = match result {
        Ok(()) => bridge.drain(&rx, stop, report),
        Err(e) => Err(e),
    };
    bridge.acked_at = Instant::now().checked_sub(ACK_SOON).unwrap_or_else(Instant::now);
    bridge.acknowledge(report);
    drop(rx);
    let closed = link.close();
    bridge.page.touch();
    drained.and(undeclared).and(closed).map(|()| bridge.page)
}

struct Inbound {
    producer: AnyProducer,
    page: Arc<StatePage>,
    on_full: OnFull,
    sources: Sources,
    status: Every,
    stop_seen: Option<Instant>,
    drain_timeout: Duration,
    ring: RingLocation,
    warned_large: bool,
    waiting: bool,
    gave_up: bool,
    session: zenoh::Session,
    /// Sources written to since their last acknowledgement: what each expects next, and how
    /// many messages were written since.
    unacked: HashMap<u64, (u64, usize)>,
    acked_at: Instant,
    acked_all_at: Instant,
    warned_ack: bool,
}

/// A sample as the callback hands it over: its stamp, and its payload unless it is larger than
/// the ring's max message (`len`).
struct Incoming {
    stamp: Option<Stamp>,
    len: usize,
    payload: Option<Vec<u8>>,
}

impl Inbound {
    fn tick(&mut self, report: &mut dyn Report) {
        if self.status.due() {
            self.page.touch();
            report.status(&self.page);
        }
    }

    /// Write the samples still queued (at a stop).
    fn drain(
        &mut self,
        rx: &Receiver<Incoming>,
        stop: &AtomicBool,
        report: &mut dyn Report,
    ) -> Result<(), BridgeError> {
        self.stop_seen.get_or_insert_with(Instant::now);
        // A callback blocked on the full queue when the subscriber went delivers its sample
        // once there is room: wait a moment for it.
        while let Ok(item) = rx.recv_timeout(Duration::from_millis(20)) {
            self.handle(item, stop, report)?;
        }
        Ok(())
    }

    fn handle(
        &mut self,
        item: Incoming,
        stop: &AtomicBool,
        report: &mut dyn Report,
    ) -> Result<(), BridgeError> {
        if self.gave_up {
            // Stopping with the ring full: neither written nor acknowledged, so the outbound
            // bridge still holds it for this bridge's successor.
            return Ok(());
        }
        let slot = match item.stamp {
            None => {
                self.page.add(Counter::Unsequenced, 1);
                None
            }
            Some(st) => match self.sources.check(st, &self.page, report) {
                Some(slot) => Some((slot, st)),
                None => {
                    // A duplicate (or a number refused): say again where we stand, so an
                    // outbound bridge that sends again what we wrote learns it.
                    if let Some(&(_, next)) = self.sources.known.get(&st.source) {
                        self.unacked.entry(st.source).or_insert((next, 0));
                    }
                    return Ok(());
                }
            },
        };
        match &item.payload {
            Some(payload) => {
                if !self.write(payload, stop, report)? {
                    return Ok(());
                }
            }
            None => {
                if !self.warned_large {
                    report.event(&format!(
                        "a message of {} bytes is larger than the ring's max message of {} bytes: dropped (and counted)",
                        item.len,
                        self.producer.max_message()
                    ));
                    self.warned_large = true;
                }
                self.page.add(Counter::Drops, 1);
            }
        }
        // After the write: a bridge killed in between writes this message again after its
        // restart (the outbound bridge sends what was not acknowledged again).
        if let Some((slot, st)) = slot {
            self.sources.advance(slot, st, &self.page);
            let e = self.unacked.entry(st.source).or_insert((0, 0));
            *e = (st.seq + 1, e.1 + 1);
        }
        Ok(())
    }

    /// Tell the sources what this bridge expects from each next: those with [`ACK_EVERY`]
    /// messages unacknowledged, or all that sent when the last acknowledgement is [`ACK_SOON`]
    /// old; and every source with a slot again every [`ACK_AGAIN`], busy or idle, so that an outbound
    /// bridge that restarted, or lost an acknowledgement, learns it.
    fn acknowledge(&mut self, report: &mut dyn Report) {
        if self.acked_all_at.elapsed() >= ACK_AGAIN {
            self.acked_all_at = Instant::now();
            for (&source, &(slot, next)) in &self.sources.known {
                if slot != NO_SLOT {
                    self.unacked.entry(source).or_insert((next, 0));
                }
            }
        }
        let all = self.acked_at.elapsed() >= ACK_SOON;
        if all && !self.unacked.is_empty() {
            self.acked_at = Instant::now();
        }
        let session = &self.session;
        let mut failed = None;
        self.unacked.retain(|&source, &mut (next, n)| {
            if !all && n < ACK_EVERY {
                return true;
            }
            // A lost acknowledgement is repeated by the next one.
            if let Err(e) = session.put(ack_key(source), next.to_le_bytes().to_vec()).wait() {
                failed = Some(e.to_string());
            }
            false
        });
        if let Some(e) = failed.filter(|_| !self.warned_ack) {
            self.warned_ack = true;
            report.event(&format!("cannot acknowledge (the outbound bridge will wait): {e}"));
        }
    }

    /// Write `msg` into the ring; `false` when it was not written and must not be acknowledged
    /// (a stop gave up on a full ring).
    fn write(&mut self, msg: &[u8], stop: &AtomicBool, report: &mut dyn Report) -> Result<bool, BridgeError> {
        let past_deadline = self.stop_seen.is_some_and(|t| t.elapsed() >= self.drain_timeout);
        let wait = match self.on_full {
            OnFull::Block if !past_deadline => LOOK,
            _ => Duration::ZERO,
        };
        loop {
            let why = match self.producer.send(msg, Some(wait)) {
                Ok(()) => {
                    if self.waiting {
                        report.event("forwarding");
                        self.waiting = false;
                    }
                    self.page.add(Counter::Messages, 1);
                    self.page.add(Counter::Bytes, msg.len() as u64);
                    return Ok(true);
                }
                Err(SendTimeoutError::Timeout(())) => "the ring is full",
                // A consumer may attach again: wait for it as for room.
                Err(SendTimeoutError::Disconnected(())) => "the ring has no consumer",
                Err(SendTimeoutError::PeerDead { .. }) => "the ring's consumer died",
                Err(e) => {
                    return Err(self.ring.err(e));
                }
            };
            if self.on_full == OnFull::Drop {
                self.page.add(Counter::Drops, 1);
                return Ok(true);
            }
            if !self.waiting {
                report.event(&format!("waiting: {why}"));
                self.waiting = true;
            }
            if stop.load(Ordering::SeqCst) {
                let since = *self.stop_seen.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.drain_timeout {
                    report.event(&format!(
                        "stopping: {why} {:?} after the stop; what is left is not written (nor \
                         acknowledged: the outbound bridge keeps it for the next run)",
                        self.drain_timeout
                    ));
                    self.gave_up = true;
                    return Ok(false);
                }
            }
            if why != "the ring is full" {
                std::thread::sleep(wait);
            }
            self.tick(report);
        }
    }
}

/// What the bridge expects of each source, mirrored in the state page's source slots.
struct Sources {
    /// source -> (slot or [`NO_SLOT`], next sequence number): every source seen (up to
    /// [`MAX_SOURCES`]); the 32 most recently used have a slot, and survive a restart.
    known: HashMap<u64, (usize, u64)>,
    current: Option<u64>,
    /// When each slot was last used (a count of samples), to reuse the least recent one.
    used: [u64; SOURCE_SLOTS],
    tick: u64,
}

impl Sources {
    /// What an earlier run of this bridge recorded in `page`.
    fn restore(page: &StatePage) -> Sources {
        let known = (0..SOURCE_SLOTS)
            .filter_map(|i| page.slot(i).map(|(source, next)| (source, (i, next))))
            .collect();
        Sources { known, current: None, used: [0; SOURCE_SLOTS], tick: 0 }
    }

    /// Where `st` stands: `Some(slot)` to write it (counting a gap before it), `None` for a
    /// duplicate or a number no bridge sends (counted).
    fn check(&mut self, st: Stamp, page: &StatePage, report: &mut dyn Report) -> Option<usize> {
        if st.seq == u64::MAX {
            // No bridge numbers a message so (none could follow it): dropped and counted.
            page.add(Counter::Drops, 1);
            return None;
        }
        if self.current.is_some_and(|c| c != st.source) {
            page.add(Counter::SourceChanges, 1);
        }
        self.current = Some(st.source);
        self.tick += 1;
        match self.known.get(&st.source).copied() {
            Some((slot, next)) => {
                let slot = if slot == NO_SLOT { self.take_slot(st.source, next, page) } else { slot };
                self.used[slot] = self.tick;
                if st.seq < next {
                    page.add(Counter::Duplicates, 1);
                    return None;
                }
                if st.seq > next {
                    let missing = st.seq - next;
                    page.add(Counter::Gaps, 1);
                    page.add(Counter::Missing, missing);
                    // Counted once: a bridge killed before it writes this message does not
                    // count the gap again after its restart.
                    page.set_slot_next(slot, st.seq);
                    if let Some(v) = self.known.get_mut(&st.source) {
                        v.1 = st.seq;
                    }
                    report.event(&format!(
                        "gap: source {:016x} messages {next}..{} missing ({missing})",
                        st.source,
                        st.seq - 1
                    ));
                }
                Some(slot)
            }
            None => {
                if self.known.len() >= MAX_SOURCES {
                    // Forget one that holds no slot (a peer inventing sources bounds nothing).
                    if let Some(&old) = self.known.iter().find(|(_, &(s, _))| s == NO_SLOT).map(|(k, _)| k) {
                        self.known.remove(&old);
                    }
                }
                let slot = self.take_slot(st.source, st.seq, page);
                self.used[slot] = self.tick;
                report.event(&format!("new source {:016x}, from seq {}", st.source, st.seq));
                Some(slot)
            }
        }
    }

    /// Give `source` a slot of the state page (the least recently used one), with `next`: its
    /// holder keeps its place in memory, without a slot.
    fn take_slot(&mut self, source: u64, next: u64, page: &StatePage) -> usize {
        let slot = self.free_slot();
        for v in self.known.values_mut() {
            if v.0 == slot {
                v.0 = NO_SLOT;
            }
        }
        page.assign_slot(slot, source, next);
        self.known.insert(source, (slot, next));
        slot
    }

    /// A slot nobody uses, or the least recently used one.
    fn free_slot(&mut self) -> usize {
        let taken: Vec<usize> = self.known.values().map(|&(s, _)| s).collect();
        (0..SOURCE_SLOTS)
            .find(|s| !taken.contains(s))
            .unwrap_or_else(|| (0..SOURCE_SLOTS).min_by_key(|&s| self.used[s]).unwrap_or(0))
    }

    fn advance(&mut self, slot: usize, st: Stamp, page: &StatePage) {
        if let Some(v) = self.known.get_mut(&st.source) {
            v.1 = st.seq + 1;
        }
        page.set_slot_next(slot, st.seq + 1);
    }
}
