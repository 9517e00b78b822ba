//! `shm-bridge out`: read a local ring, publish each message on a Zenoh key.
//!
//! The bridge is the ring's consumer (a subscriber, on a broadcast ring). It takes a message
//! only while a Zenoh subscriber matches its key, and while fewer than a window of published
//! messages wait for the inbound bridge's acknowledgement; otherwise the messages wait in the
//! ring (and its producer feels the backpressure). Each message goes out as one sample: the
//! payload is the message, the attachment its [`Stamp`]. What is published and not yet
//! acknowledged stays in memory, and is published again (same numbers) when a subscriber
//! matches again after none did, or when the receiver acknowledges, idle, short of it.
//!
//! A message is handed back to the ring only after it was published and the state page says
//! so (the next sequence number, and the ring position below which everything was sent). A
//! bridge killed at any point and started again therefore neither skips a message the ring
//! still holds nor sends one twice under two numbers: a message the ring delivers again that
//! the page counts as sent is dropped, and one sent without the page knowing goes out again
//! with the same number (the inbound bridge drops the duplicate). What the killed bridge held
//! unacknowledged in memory is lost, and the inbound bridge reports it as a gap.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shm_ring::any::AnyConsumer;
use shm_ring::{AttachOptions, Kind, RecvTimeoutError};
use zenoh::bytes::ZBytes;
use zenoh::qos::CongestionControl;
use zenoh::Wait;

use crate::config::{check_key, BridgeOptions};
use crate::error::BridgeError;
use crate::link::{Every, Link};
use crate::state::{Counter, Cursor, Role, StatePage};
use crate::wire::Stamp;

/// How long one look at the ring waits, so that a stop is seen soon.
const LOOK: Duration = Duration::from_millis(50);
/// How long acknowledgements may stay short of the window before the window is sent again
/// (while they keep coming) or its oldest message (while none comes; the wait then doubles, to
/// [`PROBE_MAX`]).
const RESEND_IDLE: Duration = Duration::from_secs(1);
const PROBE_MAX: Duration = Duration::from_secs(16);

/// What an outbound bridge is told beyond [`BridgeOptions`].
#[derive(Clone, Debug)]
pub struct OutOptions {
    /// A broadcast subscriber's history: start this many messages back.
    pub history: u64,
    /// Messages published and not yet acknowledged by the inbound bridge, at most: beyond, the
    /// bridge waits (the messages stay in the ring). 0: no limit, and nothing is sent again
    /// (for plain Zenoh subscribers, which acknowledge nothing).
    pub window: usize,
    /// At a stop, how long to wait for the acknowledgement of what was published.
    pub drain_timeout: Duration,
}

impl Default for OutOptions {
    fn default() -> OutOptions {
        OutOptions { history: 0, window: 1024, drain_timeout: Duration::from_secs(5) }
    }
}

/// The key an inbound bridge acknowledges a source's messages on (a verbatim chunk, `@...`,
/// which no wildcard matches).
pub(crate) fn ack_key(source: u64) -> String {
    format!("@shm-bridge/ack/{source:016x}")
}

/// An acknowledgement: the sequence number expected next, 8 bytes little-endian.
pub(crate) fn decode_ack(b: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// Publish (part of) the window again, oldest first.
fn resend<'a>(
    publisher: &zenoh::pubsub::Publisher<'_>,
    source: u64,
    messages: impl Iterator<Item = &'a (u64, ZBytes)>,
    page: &StatePage,
    report: &mut dyn Report,
) -> Result<(), BridgeError> {
    let mut n = 0u64;
    for (seq, msg) in messages {
        publisher
            .put(msg.clone())
            .attachment(Stamp { source, seq: *seq }.encode().to_vec())
            .wait()
            .map_err(|e| BridgeError::Zenoh { what: "publish", reason: e.to_string() })?;
        page.add(Counter::Resent, 1);
        n += 1;
    }
    if n > 0 {
        report.event(&format!("sent {n} unacknowledged messages again"));
    }
    Ok(())
}

/// What a bridge reports while it runs.
pub trait Report {
    /// A line for the log (`shm-bridge` prints it on stderr).
    fn event(&mut self, line: &str);
    /// The counters, every `status_every`.
    fn status(&mut self, page: &StatePage);
}

/// Forward `options.ring` to `options.key` until `stop` is set; returns the state page (with the
/// final counters).
pub fn run_out(
    options: &BridgeOptions,
    out: &OutOptions,
    stop: &AtomicBool,
    report: &mut dyn Report,
) -> Result<Arc<StatePage>, BridgeError> {
    let key = check_key(&options.key, true)?;
    let (region, created) = options.map_ring()?;
    let mut consumer = AnyConsumer::open(region, None, &AttachOptions::new().history(out.history))
        .map_err(|e| options.ring.err(e))?;
    let page = Arc::new(StatePage::open_for(&options.state_path(Role::Out), Role::Out)?);
    page.set_labels(&options.ring.to_string(), &options.key);
    let (ring_id, source) = page.ring_and_source();
    let source = if ring_id != consumer.ring_id() || source == 0 {
        let source = loop {
            let s = fastrand::u64(..);
            if s != 0 {
                break s;
            }
        };
        page.reset_out(consumer.ring_id(), source);
        source
    } else {
        source
    };
    let mut cursor = page.cursor();
    if cursor.sent_below > consumer.position().saturating_add(consumer.capacity() as u64 + 1) {
        return Err(BridgeError::State {
            path: page.path().to_owned(),
            reason: format!(
                "records ring position {} as published, beyond the ring's position {} plus its capacity: \
                 not this ring's state (remove the file to start over)",
                cursor.sent_below,
                consumer.position()
            ),
        });
    }
    report.event(&format!(
        "{} the {} ring {} (state {}); publishing on {} as source {source:016x} from seq {}",
        if created { "created" } else { "opened" },
        consumer.kind(),
        options.ring,
        page.path().display(),
        options.key,
        cursor.seq
    ));

    // Reconnections are counted from the matching status: a publication blocked while the
    // link is down holds up Zenoh's peer table too.
    let link = Link::open(&options.zenoh, page.clone(), false)?;
    let publisher = link
        .session
        .declare_publisher(key)
        .congestion_control(CongestionControl::Block)
        .wait()
        .map_err(BridgeError::zenoh("declare the publisher"))?;
    // `matched`: a subscriber matches now; `seen`: one matched at some time; `rematch`: how
    // many times one matched again after none did (the window is sent again each time).
    let (matched, seen) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let rematch = Arc::new(AtomicU64::new(0));
    let (m, e, r, p) = (matched.clone(), seen.clone(), rematch.clone(), page.clone());
    // The listener reports the status at its declaration, then every change.
    publisher
        .matching_listener()
        .callback(move |s| {
            if s.matching() {
                if !m.load(Ordering::SeqCst) && e.swap(true, Ordering::SeqCst) {
                    // Matching again after none did: the other side came back. Counted before
                    // `matched` is set, so no message goes out ahead of the window's resend.
                    p.add(Counter::Reconnects, 1);
                    r.fetch_add(1, Ordering::SeqCst);
                }
                m.store(true, Ordering::SeqCst);
            } else {
                m.store(false, Ordering::SeqCst);
            }
        })
        .background()
        .wait()
        .map_err(BridgeError::zenoh("declare the matching listener"))?;
    // The inbound bridge acknowledges what it wrote: the sequence number it expects next.
    // `acks`: how many arrived (an idle inbound bridge repeats its acknowledgements).
    // `sent`: one past the last number published; an acknowledgement beyond it is refused.
    let (acked, acks) = (Arc::new(AtomicU64::new(cursor.seq)), Arc::new(AtomicU64::new(0)));
    let sent = Arc::new(AtomicU64::new(cursor.seq));
    let (a, n, st) = (acked.clone(), acks.clone(), sent.clone());
    link.session
        .declare_subscriber(ack_key(source))
        .callback(move |sample| {
            if sample.payload().len() != 8 {
                return;
            }
            match decode_ack(&sample.payload().to_bytes()) {
                Some(next) if next <= st.load(Ordering::SeqCst) => {
                    a.fetch_max(next, Ordering::SeqCst);
                    n.fetch_add(1, Ordering::SeqCst);
                }
                _ => {}
            }
        })
        .background()
        .wait()
        .map_err(BridgeError::zenoh("declare the acknowledgement subscriber"))?;

    let mut status = Every::new(options.status_every);
    let mut waiting_for: Option<&str> = None;
    let say = |report: &mut dyn Report, why: Option<&'static str>, waiting: &mut Option<&str>| {
        if why != *waiting {
            match why {
                Some(w) => report.event(&format!("waiting: {w}")),
                None => report.event("forwarding"),
            }
            *waiting = why;
        }
    };
    // Published and not acknowledged yet, oldest first: sent again when a subscriber matches
    // again (a session that closed lost them), dropped once acknowledged.
    let mut window: VecDeque<(u64, ZBytes)> = VecDeque::new();
    let mut rematched = rematch.load(Ordering::SeqCst);
    // When the acknowledgements last moved, and how many had arrived then.
    let (mut progress_at, mut acks_then, mut acked_then) = (Instant::now(), 0, cursor.seq);
    let mut probe_after = RESEND_IDLE;
    let result = loop {
        if stop.load(Ordering::SeqCst) {
            break Ok(());
        }
        if status.due() {
            page.touch();
            report.status(&page);
        }
        let upto = acked.load(Ordering::SeqCst);
        while window.front().is_some_and(|&(seq, _)| seq < upto) {
            window.pop_front();
        }
        if !matched.load(Ordering::SeqCst) {
            // Nobody would receive it: the message stays in the ring.
            say(report, Some("no subscriber matches the key; messages stay in the ring"), &mut waiting_for);
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        if upto != acked_then {
            (progress_at, acks_then, acked_then) = (Instant::now(), acks.load(Ordering::SeqCst), upto);
            probe_after = RESEND_IDLE;
        }
        // Send the window again when a subscriber matches again (the session that closed lost
        // what it held), or when the receiver keeps acknowledging, idle, short of the window:
        // it never got those (a receiver whose ring is full acknowledges nothing meanwhile).
        let now = rematch.load(Ordering::SeqCst);
        let stuck = !window.is_empty() && progress_at.elapsed() >= probe_after;
        let idle_short = stuck && acks.load(Ordering::SeqCst) >= acks_then + 3;
        if now != rematched || idle_short {
            rematched = now;
            (progress_at, acks_then, probe_after) =
                (Instant::now(), acks.load(Ordering::SeqCst), RESEND_IDLE);
            if let Err(e) = resend(&publisher, source, window.iter(), &page, report) {
                break Err(e);
            }
        } else if stuck {
            // No acknowledgement at all: a receiver stalled on a full ring, or one that lost
            // the window and does not know us yet. The oldest message again tells the second
            // (it acknowledges even a duplicate), and costs the first one sample; backing off.
            (progress_at, acks_then) = (Instant::now(), acks.load(Ordering::SeqCst));
            probe_after = (probe_after * 2).min(PROBE_MAX);
            if let Err(e) = resend(&publisher, source, window.iter().take(1), &page, report) {
                break Err(e);
            }
        }
        if out.window > 0 && window.len() >= out.window {
            // The receiver has not acknowledged a window's worth: wait for it, holding the
            // rest in the ring (a receiver whose ring is full holds the stream back here).
            say(report, Some("the receiver has not acknowledged a window of messages"), &mut waiting_for);
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        match consumer.read(Some(LOOK)) {
            Ok((_, len)) => {
                let at = consumer.position();
                if at < cursor.sent_below {
                    // Published before a restart; the ring delivers it again.
                    consumer.release();
                    page.add(Counter::Duplicates, 1);
                    continue;
                }
                if rematch.load(Ordering::SeqCst) != rematched {
                    // The session came back while we read: the window goes first.
                    consumer.unread();
                    continue;
                }
                let Some(next) = cursor.seq.checked_add(1).filter(|&n| n < u64::MAX) else {
                    consumer.unread();
                    break Err(BridgeError::State {
                        path: page.path().to_owned(),
                        reason: "the sequence number reached 2^64 - 2".into(),
                    });
                };
                let mut buf = vec![0u8; len];
                consumer.copy_held(&mut buf);
                // Shared, not copied, between the publication and the window.
                let payload = ZBytes::from(buf);
                let stamp = Stamp { source, seq: cursor.seq };
                if let Err(e) = publisher.put(payload.clone()).attachment(stamp.encode().to_vec()).wait() {
                    // Not sent: it stays in the ring for the next run.
                    consumer.unread();
                    break Err(BridgeError::Zenoh { what: "publish", reason: e.to_string() });
                }
                sent.store(next, Ordering::SeqCst);
                cursor = Cursor { seq: next, sent_below: at + 1 };
                page.write_cursor(cursor);
                consumer.release();
                if out.window > 0 {
                    window.push_back((stamp.seq, payload));
                }
                page.add(Counter::Messages, 1);
                page.add(Counter::Bytes, len as u64);
                say(report, None, &mut waiting_for);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Lagged { skipped }) => {
                report.event(&format!(
                    "the ring's producer wrote over {skipped} messages before they were read"
                ));
                page.add(Counter::Drops, skipped);
                // Numbered as if sent, so the receiver counts them missing too.
                cursor.seq = cursor.seq.saturating_add(skipped).min(u64::MAX - 1);
                sent.store(cursor.seq, Ordering::SeqCst);
                page.write_cursor(cursor);
            }
            Err(RecvTimeoutError::Disconnected) => {
                // A producer may attach again (always so for MPSC): keep reading.
                say(report, Some("the ring has no producer"), &mut waiting_for);
                std::thread::sleep(LOOK);
            }
            Err(RecvTimeoutError::PeerDead { .. }) => {
                let why = if consumer.kind() == Kind::Mpsc { "a producer died" } else { "the producer died" };
                say(report, Some(why), &mut waiting_for);
                std::thread::sleep(LOOK);
            }
            Err(e) => break Err(options.ring.err(e)),
        }
    };
    // At a stop, give the receiver a moment to acknowledge what is on its way (a session
    // that closes sends what Zenoh holds, but not what a lost session lost).
    let deadline = Instant::now() + out.drain_timeout;
    while result.is_ok()
        && out.window > 0
        && window.back().is_some_and(|&(seq, _)| seq >= acked.load(Ordering::SeqCst))
        && matched.load(Ordering::SeqCst)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(publisher);
    // Zenoh writes out what its queues hold before it closes the links.
    let closed = link.close();
    page.touch();
    result.and(closed).map(|()| page)
}
