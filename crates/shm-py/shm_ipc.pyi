"""Inter-process message rings in shared memory (shm-ipc, Rust), for Python.

A ring lives in a file or a POSIX shm object that two or more processes map. Producers send
bytes-like messages, consumers receive them as ``bytes``, into a buffer, or in place::

    import shm_ipc
    rx = shm_ipc.Consumer.create_file("/tmp/ring", kind="spsc", capacity=1 << 20)
    tx = shm_ipc.Producer.open_file("/tmp/ring")          # in another process, usually
    tx.send(b"hello")
    assert rx.recv(timeout=1.0) == b"hello"
    tx.send(b"in place")
    with rx.read() as view:                               # a memoryview into the ring
        assert bytes(view) == b"in place"

Every wait releases the GIL (and lets signal handlers run every 100 ms: Ctrl-C interrupts it,
having taken nothing). ``timeout`` is in seconds: ``None`` waits as long as it takes, ``0``
not at all. Errors: ``TimeoutError`` (nothing in time), ``Disconnected`` (a ``ConnectionError``:
the peer closed) and its subclass ``PeerDead`` (the peer's process died), ``ValueError`` (bad
sizes or arguments; a message too long for a buffer stays in the ring), ``Lagged`` (a broadcast
subscriber was overtaken), ``CorruptError`` (the shared memory breaks the layout), ``OSError``
(creating or opening the file or shm object).

The ring kinds: ``"spsc"`` (one producer, one consumer), ``"mpsc"`` (up to ``slots`` producers,
one consumer), ``"broadcast"`` (one producer, up to ``slots`` subscribers that each get every
message; ``policy`` ``"block"`` waits for the slowest, ``"overwrite"`` never waits).
"""

from types import TracebackType
from typing import Iterator, Literal, Optional, Type

from collections.abc import Buffer

Kind = Literal["spsc", "mpsc", "broadcast"]
Policy = Literal["block", "overwrite"]

LAYOUT_VERSION: int

class Disconnected(ConnectionError):
    """The peer closed its end (a consumer gets it once everything sent was received)."""

class PeerDead(Disconnected):
    """The peer's process died without closing (a consumer gets it once everything sent was received)."""

class CorruptError(RuntimeError):
    """The shared memory breaks the ring layout (a buggy or hostile peer)."""

class Lagged(RuntimeError):
    """A broadcast subscriber was overtaken: messages were lost; the next receive returns the oldest left."""

class Producer:
    """The sending end of a ring of any kind."""

    @staticmethod
    def create_file(
        path: str, kind: Kind = "spsc", capacity: int = 1 << 20, slots: int = 8,
        max_message: Optional[int] = None, policy: Policy = "block",
    ) -> "Producer":
        """Create the file ``path`` (mode 0600; it must not exist) and a ring in it, and attach as its producer."""
    @staticmethod
    def create_shm(
        name: str, kind: Kind = "spsc", capacity: int = 1 << 20, slots: int = 8,
        max_message: Optional[int] = None, policy: Policy = "block",
    ) -> "Producer":
        """Create the POSIX shm object ``name`` and a ring in it, and attach as its producer."""
    @staticmethod
    def open_file(path: str, kind: Optional[Kind] = None) -> "Producer":
        """Attach as a producer of the ring in ``path`` (of ``kind``, or of the kind it has)."""
    @staticmethod
    def open_shm(name: str, kind: Optional[Kind] = None) -> "Producer":
        """Attach as a producer of the ring in the POSIX shm object ``name``."""
    def send(self, data: Buffer, timeout: Optional[float] = None) -> None:
        """Send a copy of ``data``, waiting up to ``timeout`` seconds for room (``TimeoutError``)."""
    def try_send(self, data: Buffer) -> bool:
        """Send a copy of ``data`` if there is room now; returns whether it was sent."""
    @property
    def kind(self) -> Kind: ...
    @property
    def max_message(self) -> int:
        """The largest message the ring takes, in bytes."""
    @property
    def capacity(self) -> int:
        """Size of the ring's data area, in bytes."""
    def close(self) -> None:
        """Close this end: the consumer drains what was sent, then gets ``Disconnected``."""
    def __enter__(self) -> "Producer": ...
    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None: ...

class Message:
    """A message held in place by ``Consumer.read()``; consumed when its ``with`` block ends."""

    def __enter__(self) -> memoryview:
        """A read-only view of the message in the ring, valid inside the block only."""
    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None: ...

class Consumer:
    """The receiving end (a subscriber, on a broadcast ring) of a ring of any kind."""

    @staticmethod
    def create_file(
        path: str, kind: Kind = "spsc", capacity: int = 1 << 20, slots: int = 8,
        max_message: Optional[int] = None, policy: Policy = "block",
    ) -> "Consumer":
        """Create the file ``path`` (mode 0600; it must not exist) and a ring in it, and attach as its consumer."""
    @staticmethod
    def create_shm(
        name: str, kind: Kind = "spsc", capacity: int = 1 << 20, slots: int = 8,
        max_message: Optional[int] = None, policy: Policy = "block",
    ) -> "Consumer":
        """Create the POSIX shm object ``name`` and a ring in it, and attach as its consumer."""
    @staticmethod
    def open_file(path: str, kind: Optional[Kind] = None, history: int = 0) -> "Consumer":
        """Attach as the consumer (broadcast: a subscriber, starting ``history`` messages back) of the ring in ``path``."""
    @staticmethod
    def open_shm(name: str, kind: Optional[Kind] = None, history: int = 0) -> "Consumer":
        """As ``open_file``, on the POSIX shm object ``name``."""
    def recv(self, timeout: Optional[float] = None) -> bytes:
        """The next message, waiting up to ``timeout`` seconds (``TimeoutError``)."""
    def recv_into(self, buffer: Buffer, timeout: Optional[float] = None) -> int:
        """Receive the next message into the writable ``buffer``; returns its length. A message
        longer than the buffer stays in the ring (``ValueError``)."""
    def read(self, timeout: Optional[float] = None) -> Message:
        """Wait for the next message and hold it in place: ``with consumer.read() as view: ...``.

        The view is released at the block's end (or by the next receive, or ``close``), then the
        message is consumed. While a view made from it (``memoryview(view)``, a NumPy array) is
        alive, the next receive and ``close`` raise ``ValueError`` and the message stays held:
        copy what you keep with ``bytes(view)``."""
    @property
    def kind(self) -> Kind: ...
    @property
    def max_message(self) -> int:
        """The largest message the ring takes (a buffer this large receives any message)."""
    @property
    def capacity(self) -> int:
        """Size of the ring's data area, in bytes."""
    def close(self) -> None:
        """Close this end."""
    def __iter__(self) -> Iterator[bytes]:
        """Every message, until the producers are gone (closed or dead)."""
    def __next__(self) -> bytes: ...
    def __enter__(self) -> "Consumer": ...
    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None: ...
