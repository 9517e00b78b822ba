//! A bridge's counters, as a status line and as JSON (`shm-bridge status`).

use serde_json::{Map, Value};

use crate::state::{Counter, StatePage};

/// One line of counters: what a running bridge prints and `shm-bridge status` shows.
pub fn line(page: &StatePage) -> String {
    let g = |c| page.get(c);
    let mut s = format!(
        "{} msgs ({}), gaps {} (missing {}), duplicates {}, drops {}, reconnects {}, peers {}",
        g(Counter::Messages),
        human_bytes(g(Counter::Bytes)),
        g(Counter::Gaps),
        g(Counter::Missing),
        g(Counter::Duplicates),
        g(Counter::Drops),
        g(Counter::Reconnects),
        page.peers()
    );
    for c in [Counter::Unsequenced, Counter::SourceChanges, Counter::Resent] {
        if g(c) > 0 {
            s.push_str(&format!(", {} {}", c.name().replace('_', " "), g(c)));
        }
    }
    s
}

/// The page as a JSON object: role, pid, whether the bridge runs, ring, key, peers, times and
/// every counter ([`Counter::name`]).
pub fn json(page: &StatePage) -> Value {
    let (ring, key) = page.labels();
    let (started, updated) = page.times_ms();
    let mut m = Map::new();
    m.insert("role".into(), page.role().name().into());
    m.insert("state_file".into(), page.path().display().to_string().into());
    m.insert("pid".into(), page.pid().into());
    m.insert("running".into(), page.is_running().into());
    m.insert("ring".into(), ring.into());
    m.insert("key".into(), key.into());
    m.insert("peers".into(), page.peers().into());
    m.insert("started_unix_ms".into(), started.into());
    m.insert("updated_unix_ms".into(), updated.into());
    for c in Counter::ALL {
        m.insert(c.name().into(), page.get(c).into());
    }
    Value::Object(m)
}

fn human_bytes(b: u64) -> String {
    match b {
        0..=9_999 => format!("{b} B"),
        10_000..=9_999_999 => format!("{:.1} kB", b as f64 / 1e3),
        10_000_000..=9_999_999_999 => format!("{:.1} MB", b as f64 / 1e6),
        _ => format!("{:.1} GB", b as f64 / 1e9),
    }
}
