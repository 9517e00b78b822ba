"""Python against Rust across real processes: shm-demo's shm-producer and shm-consumer."""
import os
import signal
import subprocess
import sys
import time

import pytest

import shm_ipc
from stream import Encoder, decode

MILLION = 1_000_000
HERE = os.path.dirname(os.path.abspath(__file__))


def test_a_rust_producer_feeds_a_python_consumer_a_million_checked_messages(ring_path, producer_bin):
    rx = shm_ipc.Consumer.create_file(ring_path, kind="spsc", capacity=1 << 20)
    producer = subprocess.Popen([producer_bin, "--path", ring_path, "--count", str(MILLION), "--size", "100"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    expected = 0
    buf = bytearray(rx.max_message)
    view = memoryview(buf)
    while True:
        try:
            if expected % 3 == 0:
                msg = rx.recv(timeout=30)
            elif expected % 3 == 1:
                n = rx.recv_into(buf, timeout=30)
                msg = view[:n]
            else:
                with rx.read(timeout=30) as v:
                    msg = bytes(v)
        except shm_ipc.Disconnected:
            break
        assert decode(msg) == expected, f"message {expected} is wrong or corrupt"
        expected += 1
    assert producer.wait(timeout=60) == 0
    assert expected == MILLION


def test_a_python_producer_feeds_shm_consumer_a_million_messages(ring_path, consumer_bin):
    consumer = subprocess.Popen([consumer_bin, "--path", ring_path, "--create", "--remove"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not os.path.exists(ring_path):
        assert time.monotonic() < deadline and consumer.poll() is None, "shm-consumer did not create the ring"
        time.sleep(0.01)
    tx = shm_ipc.Producer.open_file(ring_path)  # waits for the creator's initialisation
    enc = Encoder(100)
    for seq in range(MILLION):
        tx.send(enc.message(seq))
    tx.close()
    out, err = consumer.communicate(timeout=60)
    assert consumer.returncode == 0, err
    assert f"summary: {MILLION} msgs" in out, out
    assert "lost 0, corrupt 0" in out, out


def test_a_python_producer_killed_mid_stream_is_reported_dead_to_rust(ring_path, consumer_bin):
    consumer = subprocess.Popen([consumer_bin, "--path", ring_path, "--create", "--remove"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not os.path.exists(ring_path):
        assert time.monotonic() < deadline and consumer.poll() is None
        time.sleep(0.01)
    script = (
        "import sys, shm_ipc; sys.path.insert(0, sys.argv[2]); from stream import Encoder\n"
        "tx = shm_ipc.Producer.open_file(sys.argv[1]); enc = Encoder(64)\n"
        "for seq in range(1000): tx.send(enc.message(seq))\n"
        "print('sent', flush=True)\n"
        "seq = 1000\n"
        "while True:\n"
        "    tx.send(enc.message(seq)); seq += 1\n"
    )
    producer = subprocess.Popen([sys.executable, "-c", script, ring_path, HERE], stdout=subprocess.PIPE, text=True)
    assert producer.stdout.readline().strip() == "sent"  # mid-stream: it is sending still
    os.kill(producer.pid, signal.SIGKILL)
    producer.wait()
    out, err = consumer.communicate(timeout=30)
    assert f"producer process {producer.pid} died" in err, err
    assert "lost 0, corrupt 0" in out, out


def test_a_python_consumer_of_a_killed_rust_producer_gets_peer_dead(ring_path, producer_bin):
    rx = shm_ipc.Consumer.create_file(ring_path, capacity=1 << 16)
    producer = subprocess.Popen([producer_bin, "--path", ring_path, "--count", "0", "--rate", "10000"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        rx.recv(timeout=30)  # it is sending
    os.kill(producer.pid, signal.SIGKILL)
    producer.wait()
    start = time.monotonic()
    with pytest.raises(shm_ipc.PeerDead, match=f"{producer.pid}"):
        while True:
            rx.recv(timeout=30)  # drains what it sent, then the exception (never a hang)
    assert time.monotonic() - start < 30
    assert isinstance(shm_ipc.PeerDead("x"), ConnectionError)
