//! The operations commands of `shm-demo`, run as the separate processes a user would run.

use std::process::Command;

use shm_core::Region;
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

    let (ok, out, _) = shm_demo(&["cleanup", "--dir", dir.path().to_str().unwrap(), "--dry-run"]);
    assert!(ok);
    assert_eq!(out.trim(), format!("would remove {}", stale.display()));
    assert!(stale.exists());
    let (ok, out, _) = shm_demo(&["cleanup", "--dir", dir.path().to_str().unwrap()]);
    assert!(ok);
    assert_eq!(out.trim(), format!("removed {}", stale.display()));
    assert!(!stale.exists() && live.exists());

    let (ok, _, err) = shm_demo(&["inspect", dir.path().join("missing").to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("missing: not found"), "{err}");
    drop(p);
}
