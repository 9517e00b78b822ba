//! `shm-bridge out`: read a local ring, publish each message on a Zenoh key.
//!
//! The bridge is the ring's consumer (a subscriber, on a broadcast ring). It takes a message
//! only while a Zenoh subscriber matches its key, so while the network or the other bridge is
//! down the messages wait in the ring (and its producer feels the backpressure). Each message
//! goes out as one sample: the payload is the message, the attachment its [`Stamp`].
//!
//! A message is handed back to the ring only after it was published and the state page says
//! so (the next sequence number, and the ring position below which everything was sent). A
//! bridge killed at any point and started again therefore neither skips a message the ring
//! still holds nor sends one twice under two numbers: a message the ring delivers again that
//! the page counts as sent is dropped, and one sent without the page knowing goes out again
//! with the same number (the inbound bridge drops the duplicate).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shm_ring::any::AnyConsumer;
use shm_ring::{AttachOptions, Kind, RecvTimeoutError};
use zenoh::qos::CongestionControl;
use zenoh::Wait;

use crate::config::{check_key, BridgeOptions};
use crate::error::BridgeError;
use crate::link::{Every, Link};
use crate::state::{Counter, Cursor, Role, StatePage};
use crate::wire::Stamp;

/// How long one look at the ring waits, so that a stop is seen soon.
const LOOK: Duration = Duration::from_millis(50);

/// What an outbound bridge is told beyond [`BridgeOptions`].
#[derive(Clone, Debug, Default)]
pub struct OutOptions {
    /// A broadcast subscriber's history: start this many messages back.
    pub history: u64,
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
    let (region, created) = options.ring.map(options.create.as_ref().map(|c| c.config()).as_ref())?;
    let ring_err = |e: &dyn std::fmt::Display| BridgeError::Ring {
        ring: options.ring.to_string(),
        reason: e.to_string(),
    };
    let mut consumer = AnyConsumer::open(region, None, &AttachOptions::new().history(out.history))
        .map_err(|e| ring_err(&e))?;
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
    // `matched`: a subscriber matches now; `seen`: one matched at some time.
    let (matched, seen) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (m, e, p) = (matched.clone(), seen.clone(), page.clone());
    publisher
        .matching_listener()
        .callback(move |s| {
            if s.matching() {
                // Matching again after none did: the other side came back.
                let (was, before) = (m.swap(true, Ordering::SeqCst), e.swap(true, Ordering::SeqCst));
                if !was && before {
                    p.add(Counter::Reconnects, 1);
                }
            } else {
                m.store(false, Ordering::SeqCst);
            }
        })
        .background()
        .wait()
        .map_err(BridgeError::zenoh("declare the matching listener"))?;
    if publisher.matching_status().wait().map_err(BridgeError::zenoh("read the matching status"))?.matching()
    {
        seen.store(true, Ordering::SeqCst);
        matched.store(true, Ordering::SeqCst);
    }

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
    let mut buf = Vec::new();
    let result = loop {
        if stop.load(Ordering::SeqCst) {
            break Ok(());
        }
        if status.due() {
            page.touch();
            report.status(&page);
        }
        if !matched.load(Ordering::SeqCst) {
            // Nobody would receive it: the message stays in the ring.
            say(report, Some("no subscriber matches the key; messages stay in the ring"), &mut waiting_for);
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        match consumer.read(Some(LOOK)) {
            Ok((_, len)) => {
                say(report, None, &mut waiting_for);
                let at = consumer.position();
                if at < cursor.sent_below {
                    // Published before a restart; the ring delivers it again.
                    consumer.release();
                    page.add(Counter::Duplicates, 1);
                    continue;
                }
                buf.resize(len, 0);
                consumer.copy_held(&mut buf);
                let stamp = Stamp { source, seq: cursor.seq };
                if let Err(e) = publisher.put(buf.clone()).attachment(stamp.encode().to_vec()).wait() {
                    // Not sent: it stays in the ring for the next run.
                    consumer.unread();
                    break Err(BridgeError::Zenoh { what: "publish", reason: e.to_string() });
                }
                cursor = Cursor { seq: cursor.seq + 1, sent_below: at + 1 };
                page.write_cursor(cursor);
                consumer.release();
                page.add(Counter::Messages, 1);
                page.add(Counter::Bytes, len as u64);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Lagged { skipped }) => {
                report.event(&format!(
                    "the ring's producer wrote over {skipped} messages before they were read"
                ));
                page.add(Counter::Drops, skipped);
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
            Err(e) => break Err(ring_err(&e)),
        }
    };
    drop(publisher);
    // Zenoh writes out what its queues hold before it closes the links.
    let closed = link.close();
    page.touch();
    result.and(closed).map(|()| page)
}
