import os
import shutil
import pathlib

import pytest


def binary(name: str) -> str:
    """A shm-demo binary: from $SHM_DEMO_BIN (set by the Rust harness), else target/release."""
    base = os.environ.get("SHM_DEMO_BIN") or str(pathlib.Path(__file__).resolve().parents[3] / "target" / "release")
    path = os.path.join(base, name)
    if not os.path.exists(path):
        pytest.skip(f"{path} is not built (cargo build --release -p shm-demo)")
    return path


@pytest.fixture
def ring_path(tmp_path):
    return str(tmp_path / "ring")


@pytest.fixture
def producer_bin():
    return binary("shm-producer")


@pytest.fixture
def consumer_bin():
    return binary("shm-consumer")
