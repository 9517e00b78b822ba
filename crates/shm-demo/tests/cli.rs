//! The operations commands of `shm-demo`, run as the separate processes a user would run (as
//! user "nobody" where another user's file is needed).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use shm_core::{CreateOptions, Region};
use shm_ring::spsc::Producer;
use shm_ring::RingConfig;

fn shm_demo(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shm-demo")).args(args).output().expect("run shm-demo");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn inspect_list_and_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    let config = RingConfig::spsc(1 << 16);
    let live = dir.path().join("live");
    let mut p = Producer::create(Region::create_file(&live, config.region_len()).unwrap(), &config).unwrap();
    p.try_send(b"one").unwrap();
    p.try_send(b"two").unwrap();
    // Both ends closed, two messages never received: kept unless --force.
    let pending = dir.path().join("pending");
    let mut q =
        Producer::create(Region::create_file(&pending, config.region_len()).unwrap(), &config).unwrap();
    q.try_send(b"one").unwrap();
    q.try_send(b"two").unwrap();
    drop(q);
    let stale = dir.path().join("stale");
    drop(Producer::create(Region::create_file(&stale, config.region_len()).unwrap(), &config).unwrap());

    let (ok, out, err) = shm_demo(&["inspect", live.to_str().unwrap(), "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["init"], "Ready");
    assert_eq!(v["kind"], "Spsc");
    assert_eq!(v["records_in_flight"], 2);
    assert_eq!(v["producers"][0]["state"], "Attached");
    assert_eq!(v["producers"][0]["pid"], std::process::id());

    let (ok, out, _) = shm_demo(&["list", "--dir", dir.path().to_str().unwrap()]);
    assert!(ok);
    assert!(out.contains("live") && out.contains("in use"), "{out}");
    assert!(out.contains("stale") && out.contains("nobody attached"), "{out}");

    let d = dir.path().to_str().unwrap();
    let pid = std::process::id();
    let kept = |dir_out: &str| {
        format!(
            "kept {}: in use by pid {pid}\nkept {}: 2 messages (32 bytes) undelivered; use --force to remove\n{dir_out}",
            live.display(),
            pending.display()
        )
    };
    let (ok, out, err) = shm_demo(&["cleanup", "--dir", d, "--dry-run"]);
    assert!(ok, "{err}");
    assert_eq!(out, kept(&format!("would remove {}\n", stale.display())));
    assert!(stale.exists());
    let (ok, out, err) = shm_demo(&["cleanup", "--dir", d]);
    assert!(ok, "{err}");
    assert_eq!(out, kept(&format!("removed {}\n", stale.display())));
    assert!(!stale.exists() && live.exists() && pending.exists());

    // --force removes the ring holding undelivered messages, and says what was lost; never one
    // in use.
    let (ok, out, err) = shm_demo(&["cleanup", "--dir", d, "--force", "--dry-run"]);
    assert!(ok, "{err}");
    let discarding = format!("{}, discarding 2 messages (32 bytes) undelivered", pending.display());
    assert_eq!(out, format!("kept {}: in use by pid {pid}\nwould remove {discarding}\n", live.display()));
    assert!(pending.exists());
    let (ok, out, err) = shm_demo(&["cleanup", "--dir", d, "--force", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["entries"][0]["outcome"]["Kept"]["InUse"]["pids"][0], pid, "{v}");
    assert_eq!(v["entries"][1]["path"], pending.to_str().unwrap(), "{v}");
    assert_eq!(v["entries"][1]["outcome"]["Removed"]["discarded"]["messages"], 2, "{v}");
    assert!(!pending.exists() && live.exists());

    let (ok, _, err) = shm_demo(&["inspect", dir.path().join("missing").to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("missing: not found"), "{err}");
    drop(p);
}

/// An abandoned SPSC ring (both ends came and closed) at `path`, created with `mode`.
fn closed_ring(path: &Path, mode: u32) {
    let config = RingConfig::spsc(4096);
    let region = CreateOptions::new().mode(mode).create_file(path, config.region_len()).unwrap();
    drop(Producer::create(region, &config).unwrap());
}

#[test]
fn cleanup_reports_a_ring_it_cannot_remove_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name);
    let d = dir.path().to_str().unwrap();
    if !nix::unistd::geteuid().is_root() {
        // A directory we cannot write: every removal fails.
        closed_ring(&at("a"), 0o600);
        closed_ring(&at("b"), 0o600);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
        let (ok, out, err) = shm_demo(&["cleanup", "--dir", d]);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!ok && out.is_empty(), "{out}");
        let (a, b) = (at("a"), at("b"));
        assert_eq!(
            err,
            format!(
                "failed to remove {}: Permission denied (os error 13)\n\
                 failed to remove {}: Permission denied (os error 13)\n\
                 shm-demo: 2 of 2 rings in {d} could not be removed\n",
                a.display(),
                b.display()
            )
        );
        return;
    }
    // A sticky, world-writable directory (as /dev/shm) with a ring of root's, readable by all,
    // between two of user "nobody"; shm-demo runs as nobody.
    closed_ring(&at("a-nobody"), 0o600);
    closed_ring(&at("b-root"), 0o644);
    closed_ring(&at("c-nobody"), 0o600);
    for name in ["a-nobody", "c-nobody"] {
        std::os::unix::fs::chown(at(name), Some(65534), Some(65534)).unwrap();
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    // A copy of the binary that nobody can run, wherever the build directory is. `cp` writes it,
    // not this process: a child forked by another test while we held it open for writing would
    // inherit that descriptor until its exec, and our exec would fail with ETXTBSY.
    let bin_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = bin_dir.path().join("shm-demo");
    let copied = Command::new("cp").arg(env!("CARGO_BIN_EXE_shm-demo")).arg(&bin).status().unwrap();
    assert!(copied.success(), "cp {} {}: {copied}", env!("CARGO_BIN_EXE_shm-demo"), bin.display());
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(&bin)
        .args(["cleanup", "--dir", d])
        .current_dir("/")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run shm-demo as nobody");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        format!("removed {}\nremoved {}\n", at("a-nobody").display(), at("c-nobody").display())
    );
    assert_eq!(
        stderr,
        format!(
            "failed to remove {}: Operation not permitted (os error 1)\n\
             shm-demo: 1 of 3 rings in {d} could not be removed\n",
            at("b-root").display()
        )
    );
    assert!(!at("a-nobody").exists() && at("b-root").exists() && !at("c-nobody").exists());
}

/// The loop `shm-bench instr` counts under callgrind runs on its own (valgrind itself is not
/// needed here), for both kinds, and refuses an unknown kind by name.
#[test]
fn the_instruction_count_loop_runs_and_names_a_bad_kind() {
    let bench = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_shm-bench")).args(args).output().expect("run shm-bench");
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    for kind in ["spsc", "mpsc"] {
        let (ok, err) = bench(&["instr-loop", "--kind", kind, "--size", "64", "--n", "1000"]);
        assert!(ok, "{kind}: {err}");
    }
    let (ok, err) = bench(&["instr-loop", "--kind", "broadcast", "--size", "8", "--n", "10"]);
    assert!(
        !ok && err
            .contains("kind \"broadcast\": expected spsc, spsc-in-place, spsc-batch, spsc-blocking or mpsc"),
        "{err}"
    );
}
