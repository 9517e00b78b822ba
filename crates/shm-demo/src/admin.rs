//! `shm-demo inspect | list | cleanup`: look at rings from outside and remove abandoned ones.

use std::io;
use std::path::Path;

use shm_core::{OpenOptions, Region};
use shm_ring::{CleanupOptions, CleanupOutcome, EndInfo, Evidence, KeepReason, RingStatus};

fn open_read_only(ring: &str) -> io::Result<Region> {
    // A path (a '/' past the first byte) or an existing file is a file; anything else is taken
    // as a POSIX shm name.
    if ring[1.min(ring.len())..].contains('/') || Path::new(ring).is_file() {
        return Ok(OpenOptions::new().read_only().open_file(ring)?);
    }
    Ok(OpenOptions::new().read_only().open_shm(ring)?)
}

fn ends(e: &EndInfo) -> String {
    let Some(evidence) = e.evidence else { return format!("slot {} {:?} (never attached)", e.slot, e.state) };
    let evidence = match evidence {
        Evidence::Lock => "its lock",
        Evidence::Pid => "pid and start time",
        _ => "other evidence",
    };
    let namespace = match e.same_pid_namespace {
        Some(true) => "this PID namespace",
        Some(false) => "another PID namespace",
        None => "PID namespace unknown",
    };
    format!(
        "slot {} {:?} (pid {}, attached {} times, liveness by {evidence}, {namespace})",
        e.slot, e.state, e.pid, e.generation
    )
}

/// The status as text lines.
pub fn describe(s: &RingStatus) -> String {
    let mut out = format!(
        "init {:?}, kind {}, layout version {}, capacity {} B, max message {} B\n\
         head {}, tail {}: {} B and {} records in flight\nconsumer: {}\n",
        s.init,
        s.kind.map(|k| k.to_string()).unwrap_or_else(|| "-".into()),
        s.version,
        s.capacity,
        s.max_message,
        s.head,
        s.tail,
        s.bytes_in_flight,
        s.records_in_flight,
        ends(&s.consumer)
    );
    for p in &s.producers {
        out.push_str(&format!("producer: {}\n", ends(p)));
    }
    if let (Some(policy), Some(sent)) = (s.policy, s.next_seq) {
        out.push_str(&format!("broadcast, policy {policy}: {sent} messages sent\n"));
    }
    for sub in &s.subscribers {
        let messages =
            sub.lag_messages.map_or_else(|| "written over".to_owned(), |n| format!("{n} messages"));
        out.push_str(&format!(
            "subscriber: {}, cursor {}, behind by {} B ({messages})\n",
            ends(&sub.end),
            sub.cursor,
            sub.lag_bytes
        ));
    }
    out
}

/// Print a ring's status.
pub fn inspect(ring: &str, json: bool) -> io::Result<()> {
    let region = open_read_only(ring)?;
    let s = shm_ring::status(&region).map_err(|e| io::Error::other(format!("{ring}: {e}")))?;
    if json {
        println!("{}", serde_json::to_string(&s).map_err(io::Error::other)?);
    } else {
        print!("{ring}: {}", describe(&s));
    }
    Ok(())
}

/// List the rings in `dir`.
pub fn list(dir: &Path, json: bool) -> io::Result<()> {
    for r in shm_ring::find_rings(dir)? {
        match (&r.status, json) {
            (Ok(s), true) => {
                println!("{}", serde_json::json!({"path": r.path, "in_use": s.in_use(), "status": s}))
            }
            (Err(e), true) => println!("{}", serde_json::json!({"path": r.path, "error": e})),
            (Ok(s), false) => println!(
                "{}  {:?} {} {} B, {} records in flight, {}",
                r.path.display(),
                s.init,
                s.kind.map(|k| k.to_string()).unwrap_or_else(|| "-".into()),
                s.capacity,
                s.records_in_flight,
                if s.in_use() { "in use" } else { "nobody attached" }
            ),
            (Err(e), false) => println!("{}  unreadable: {e}", r.path.display()),
        }
    }
    Ok(())
}

/// Remove (or in a dry run only list) the abandoned rings in `dir` as `options` say. Prints a
/// line for every ring found (failures on stderr), or one JSON object, and fails if any ring
/// could not be removed.
pub fn cleanup(dir: &Path, options: &CleanupOptions, json: bool) -> io::Result<()> {
    let report = shm_ring::cleanup(dir, options)?;
    if json {
        println!("{}", serde_json::to_string(&report).map_err(io::Error::other)?);
    } else {
        for entry in &report.entries {
            match &entry.outcome {
                CleanupOutcome::Failed(_) => eprintln!("{entry}"),
                CleanupOutcome::Kept(KeepReason::Undelivered(_)) => {
                    println!("{entry}; use --force to remove")
                }
                _ => println!("{entry}"),
            }
        }
    }
    match report.failed().count() {
        0 => Ok(()),
        n => Err(io::Error::other(format!(
            "{n} of {} rings in {} could not be removed",
            report.entries.len(),
            dir.display()
        ))),
    }
}
