"""The Python API on one process's two ends (and a thread for the GIL)."""
import threading
import time

import pytest

import shm_ipc


@pytest.fixture(params=["spsc", "mpsc", "broadcast"])
def ends(request, ring_path):
    rx = shm_ipc.Consumer.create_file(ring_path, kind=request.param, capacity=4096, slots=4)
    tx = shm_ipc.Producer.open_file(ring_path)
    yield tx, rx
    tx.close()
    rx.close()


def test_every_kind_sends_and_receives_bytes_like_objects(ends):
    tx, rx = ends
    assert tx.kind == rx.kind
    tx.send(b"bytes")
    tx.send(bytearray(b"bytearray"))
    tx.send(memoryview(b"xmemoryview")[1:])
    assert tx.try_send(b"try")
    assert [rx.recv(timeout=1), rx.recv(timeout=1), rx.recv(timeout=1), rx.recv(0)] == [
        b"bytes", b"bytearray", b"memoryview", b"try"]


def test_read_gives_a_memoryview_valid_inside_the_block(ends):
    tx, rx = ends
    tx.send(b"in place")
    tx.send(b"next")
    with rx.read(timeout=1) as view:
        assert isinstance(view, memoryview) and view.readonly
        assert bytes(view) == b"in place"
    with pytest.raises(ValueError):
        view[0]  # released with the block
    assert rx.recv(0) == b"next"


def test_recv_into_keeps_a_message_too_long_for_the_buffer(ends):
    tx, rx = ends
    tx.send(b"twelve bytes")
    small = bytearray(4)
    with pytest.raises(ValueError, match="12 bytes"):
        rx.recv_into(small, timeout=0)
    big = bytearray(32)
    assert rx.recv_into(big, timeout=0) == 12 and big[:12] == b"twelve bytes"
    with pytest.raises(ValueError, match="read-only"):
        rx.recv_into(b"immutable", timeout=0)


def test_errors_say_what_and_why(ends, tmp_path):
    tx, rx = ends
    with pytest.raises(TimeoutError):
        rx.recv(timeout=0)
    with pytest.raises(TimeoutError):
        rx.recv(timeout=0.01)
    with pytest.raises(ValueError, match="max"):
        tx.send(bytes(tx.max_message + 1))
    with pytest.raises(ValueError, match="timeout is -1"):
        rx.recv(timeout=-1)
    with pytest.raises(ValueError, match='kind is "ring"'):
        shm_ipc.Consumer.create_file(str(tmp_path / "x"), kind="ring")
    with pytest.raises(ValueError, match="capacity"):
        shm_ipc.Consumer.create_file(str(tmp_path / "y"), capacity=1000)
    with pytest.raises(OSError, match="missing"):
        shm_ipc.Consumer.open_file(str(tmp_path / "missing"))
    tx.close()
    with pytest.raises(ValueError, match="closed"):
        tx.send(b"x")
    with pytest.raises(shm_ipc.Disconnected):
        rx.recv(timeout=1)


def test_a_wait_releases_the_gil(ends):
    tx, rx = ends
    got = []
    waiter = threading.Thread(target=lambda: got.append(rx.recv(timeout=10)))
    waiter.start()
    # This thread runs Python code while the other one waits in recv.
    start, spins = time.monotonic(), 0
    while time.monotonic() - start < 0.2:
        spins += 1
    assert spins > 1000 and not got
    tx.send(b"wake")
    waiter.join(timeout=10)
    assert got == [b"wake"]


def test_iteration_ends_when_the_producer_closes(ends):
    tx, rx = ends
    for i in range(5):
        tx.send(bytes([i]))
    tx.close()
    assert list(rx) == [bytes([i]) for i in range(5)]


def test_a_view_never_outlives_its_message(ends):
    tx, rx = ends
    for m in (b"first", b"second", b"third"):
        tx.send(m)
    with rx.read(timeout=1) as view:
        assert bytes(view) == b"first"
        assert rx.recv(timeout=1) == b"second"  # a receive inside the block releases the view
        with pytest.raises(ValueError):
            bytes(view)
    with rx.read(timeout=1) as view:
        exported = memoryview(view)  # an export of the view: it cannot be released now
        with pytest.raises(ValueError, match="still exported"):
            rx.recv(timeout=0)
        exported.release()
    tx.send(b"fourth")
    with rx.read(timeout=1) as view:
        rx.close()  # closing inside the block releases the view before it unmaps the ring
        with pytest.raises(ValueError):
            bytes(view)


def test_a_consumer_with_a_live_export_refuses_to_close(ends):
    tx, rx = ends
    tx.send(b"kept")
    with rx.read(timeout=1) as view:
        keep = memoryview(view)  # made from the view: an export of the message
        with pytest.raises(ValueError, match="still exported"):
            rx.close()
        assert bytes(keep) == b"kept"  # the ring is still mapped, the message still held
        keep.release()
    rx.close()


def test_ctrl_c_interrupts_a_wait_with_no_timeout(ends):
    import os
    import signal
    tx, rx = ends
    timer = threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        rx.recv()  # nothing will come: only the signal ends it
    assert time.monotonic() - start < 5
    timer.join()
    tx.send(b"after")  # nothing was taken by the interrupted wait
    assert rx.recv(timeout=1) == b"after"


def test_huge_timeouts_mean_forever_and_failed_creates_leave_nothing(ends, tmp_path):
    tx, rx = ends
    tx.send(b"x")
    assert rx.recv(timeout=1e300) == b"x"
    bad = tmp_path / "bad"
    with pytest.raises(ValueError):
        shm_ipc.Producer.create_file(str(bad), capacity=1000)
    assert not bad.exists()
    shm_ipc.Producer.create_file(str(bad), capacity=4096).close()  # the name is free again
