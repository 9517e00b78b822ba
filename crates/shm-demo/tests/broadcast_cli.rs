//! `shm-producer` and several `shm-consumer`s on one broadcast ring, as a user would run them:
//! every consumer receives every message; `shm-demo inspect` shows the subscribers.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

fn consumer(path: &str, create: bool) -> (Child, BufReader<std::process::ChildStderr>) {
    let mut args = vec!["--path", path, "--kind", "broadcast", "--slots", "4", "--capacity", "65536"];
    if create {
        args.push("--create");
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_shm-consumer"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start shm-consumer");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    // The handshake: the consumer says it is attached before it waits for messages.
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("waiting for messages"), "{line}");
    (child, err)
}

#[test]
fn every_consumer_of_a_broadcast_ring_gets_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring");
    let path = path.to_str().unwrap();
    let (a, _ea) = consumer(path, true);
    let (b, _eb) = consumer(path, false);
    let (c, _ec) = consumer(path, false);

    let out = Command::new(env!("CARGO_BIN_EXE_shm-demo")).args(["inspect", path]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("subscriber: slot").count(), 3, "{text}");
    assert!(text.contains("policy block"), "{text}");

    let n = 200_000;
    let status = Command::new(env!("CARGO_BIN_EXE_shm-producer"))
        .args(["--path", path, "--kind", "broadcast", "--count", &n.to_string(), "--size", "100"])
        .status()
        .unwrap();
    assert!(status.success());
    for child in [a, b, c] {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        let summary = text.lines().find(|l| l.starts_with("summary:")).expect("a summary line");
        assert!(summary.contains(&format!("summary: {n} msgs")), "{summary}");
        assert!(summary.contains("lost 0, corrupt 0"), "{summary}");
    }
}
