//! The Python package's tests, run by `cargo test`: a virtual environment in the target
//! directory (made once, kept), maturin and pytest installed into it with pip, the wheel of
//! `crates/shm-py` built and installed, then pytest on `crates/shm-py/tests` against this
//! package's `shm-producer` and `shm-consumer`, and the benchmark script once (its output is
//! checked for shape, never for speed).
//!
//! It needs `python3` (3.11 or later, with `venv`) and PyPI; without `python3` it says it was
//! skipped and why. Set `SHM_PY_VENV` to use another environment.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn run(what: &str, cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed ({status})");
}

/// The environment's python, made (and maturin and pytest installed) if it is not there yet.
fn venv() -> Option<PathBuf> {
    let dir = match std::env::var_os("SHM_PY_VENV") {
        Some(d) => PathBuf::from(d),
        None => root().join("target/py-venv"),
    };
    let python = dir.join("bin/python");
    if !python.exists() {
        if Command::new("python3").arg("--version").output().is_err() {
            eprintln!("skipped: no python3 on PATH (the Python package's tests need Python 3.11+)");
            return None;
        }
        run("python3 -m venv", Command::new("python3").args(["-m", "venv"]).arg(&dir));
    }
    let have = Command::new(&python)
        .args(["-c", "import maturin, pytest"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        run(
            "pip install maturin pytest",
            Command::new(&python).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "maturin>=1.8,<2",
                "pytest>=8,<9",
            ]),
        );
    }
    Some(python)
}

#[test]
fn the_python_package_passes_its_tests_against_rust_processes() {
    let Some(python) = venv() else { return };
    let root = root();
    let wheels = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("wheels-{}", std::process::id()));
    // Its own target directory: the outer cargo's is in use. Release: a million messages each
    // way go through it.
    run(
        "maturin build",
        Command::new(&python)
            .args(["-m", "maturin", "build", "--release", "--quiet", "-m", "crates/shm-py/Cargo.toml"])
            .arg("--target-dir")
            .arg(root.join("target/py"))
            .arg("-o")
            .arg(&wheels)
            .current_dir(&root),
    );
    let wheel = std::fs::read_dir(&wheels).unwrap().next().expect("a wheel").unwrap().path();
    run(
        "pip install the wheel",
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps"])
            .arg(&wheel),
    );
    let bin = Path::new(env!("CARGO_BIN_EXE_shm-producer")).parent().unwrap().to_owned();
    run(
        "pytest crates/shm-py/tests",
        Command::new(&python)
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "crates/shm-py/tests"])
            .env("SHM_DEMO_BIN", &bin)
            .current_dir(&root),
    );
    let out = Command::new(&python)
        .args(["crates/shm-py/bench.py", "--quick"])
        .current_dir(&root)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    for transport in ["py-shm", "py-pipe", "py-queue"] {
        for test in ["throughput", "rtt"] {
            assert!(
                lines.iter().any(|l| l["transport"] == transport && l["test"] == test),
                "bench.py printed no {transport} {test} line:\n{text}"
            );
        }
    }
    println!("{text}");
}
