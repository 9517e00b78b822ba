"""The ring against multiprocessing.Pipe and multiprocessing.Queue, between two Python processes
pinned to different cores, in one run.

    python crates/shm-py/bench.py [--quick]

Prints one JSON object per line, as shm-bench does: {"transport": "py-shm" | "py-pipe" |
"py-queue", "test": "throughput", "msg_size": 64, "producers": 1, "msgs_per_s": ..,
"mb_per_s": ..} and {"transport": .., "test": "rtt", "msg_size": 64, "producers": 1,
"median_ns": .., "p99_ns": ..}; medians of the repetitions. Then a line
{"test": "summary", ...} with the ratios of the ring over the pipe.
"""
import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time

import shm_ipc

SIZE = 64
# Read before any pinning: a forked child inherits its parent's one core.
CORES = sorted(os.sched_getaffinity(0))


def pin(core):
    """Run on the core-th core of those this process started with."""
    if len(CORES) > 1:
        os.sched_setaffinity(0, {CORES[core % len(CORES)]})


# --- the three transports: (make, sender side, receiver side) -------------------------------


class Shm:
    name = "py-shm"

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="py-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        self.n = 0

    def pair(self):
        """A one-way channel: (path, receiver end made here) and a function to open the sender."""
        self.n += 1
        path = os.path.join(self.dir, f"ring{self.n}")
        rx = shm_ipc.Consumer.create_file(path, capacity=1 << 20)
        return path, rx

    @staticmethod
    def sender(path):
        tx = shm_ipc.Producer.open_file(path)
        return tx.send

    @staticmethod
    def receiver(rx):
        return rx.recv


def throughput_shm(count):
    t = Shm()
    path, rx = t.pair()
    p = mp.Process(target=_shm_send_many, args=(path, count))
    p.start()
    recv = rx.recv
    recv()  # the first message starts the clock
    start = time.perf_counter()
    for _ in range(count - 1):
        recv()
    secs = time.perf_counter() - start
    p.join()
    rx.close()
    os.remove(path)
    return (count - 1) / secs


def _shm_send_many(path, count):
    pin(1)
    send = Shm.sender(path)
    msg = bytes(SIZE)
    for _ in range(count):
        send(msg)


def throughput_pipe(count):
    a, b = mp.Pipe(duplex=False)
    p = mp.Process(target=_pipe_send_many, args=(b, count))
    p.start()
    recv = a.recv_bytes
    recv()
    start = time.perf_counter()
    for _ in range(count - 1):
        recv()
    secs = time.perf_counter() - start
    p.join()
    return (count - 1) / secs


def _pipe_send_many(conn, count):
    pin(1)
    msg = bytes(SIZE)
    send = conn.send_bytes
    for _ in range(count):
        send(msg)


def throughput_queue(count):
    q = mp.Queue(maxsize=10000)
    p = mp.Process(target=_queue_send_many, args=(q, count))
    p.start()
    get = q.get
    get()
    start = time.perf_counter()
    for _ in range(count - 1):
        get()
    secs = time.perf_counter() - start
    p.join()
    return (count - 1) / secs


def _queue_send_many(q, count):
    pin(1)
    msg = bytes(SIZE)
    put = q.put
    for _ in range(count):
        put(msg)


def rtt_shm(count):
    t = Shm()
    back_path, back_rx = t.pair()  # echo -> here
    t.n += 1
    there_path = os.path.join(t.dir, f"ring{t.n}")  # here -> echo
    there_tx = shm_ipc.Producer.create_file(there_path, capacity=1 << 20)
    p = mp.Process(target=_shm_echo, args=(there_path, back_path, count))
    p.start()
    return _pingpong(there_tx.send, back_rx.recv, count, p, [back_path, there_path], [back_rx, there_tx])


def _shm_echo(in_path, out_path, count):
    pin(1)
    rx = shm_ipc.Consumer.open_file(in_path)
    send = Shm.sender(out_path)
    recv = rx.recv
    for _ in range(count):
        send(recv())


def rtt_pipe(count):
    a, b = mp.Pipe()
    p = mp.Process(target=_pipe_echo, args=(b, count))
    p.start()
    return _pingpong(a.send_bytes, a.recv_bytes, count, p, [], [])


def _pipe_echo(conn, count):
    pin(1)
    for _ in range(count):
        conn.send_bytes(conn.recv_bytes())


def rtt_queue(count):
    there, back = mp.Queue(), mp.Queue()
    p = mp.Process(target=_queue_echo, args=(there, back, count))
    p.start()
    return _pingpong(there.put, back.get, count, p, [], [])


def _queue_echo(there, back, count):
    pin(1)
    for _ in range(count):
        back.put(there.get())


def _pingpong(send, recv, count, proc, paths, ends):
    msg = bytes(SIZE)
    times = []
    clock = time.perf_counter_ns
    for _ in range(count):
        t0 = clock()
        send(msg)
        recv()
        times.append(clock() - t0)
    proc.join()
    # A Consumer made here must outlive the echo's Producer: closed after the join.
    for e in ends:
        e.close()
    for path in paths:
        os.remove(path)
    times = times[count // 10:]  # warm-up
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer messages and repetitions (seconds)")
    args = ap.parse_args()
    reps = 3 if args.quick else 5
    tput_count = 100_000 if args.quick else 1_000_000
    rtt_count = 5_000 if args.quick else 50_000
    pin(0)
    rows = {}
    transports = [("py-shm", throughput_shm, rtt_shm), ("py-pipe", throughput_pipe, rtt_pipe),
                  ("py-queue", throughput_queue, rtt_queue)]
    for name, tput, rtt in transports:
        # The queue is far slower: a tenth of the messages gives the same confidence in time.
        n = tput_count // 10 if name == "py-queue" else tput_count
        rates = [tput(n) for _ in range(reps)]
        rate = statistics.median(rates)
        rows[(name, "throughput")] = rate
        print(json.dumps({"transport": name, "test": "throughput", "msg_size": SIZE, "producers": 1,
                          "msgs_per_s": round(rate), "mb_per_s": round(rate * SIZE / 1e6, 2)}), flush=True)
    for name, tput, rtt in transports:
        results = [rtt(rtt_count) for _ in range(reps)]
        median = statistics.median(r[0] for r in results)
        p99 = statistics.median(r[1] for r in results)
        rows[(name, "rtt")] = median
        print(json.dumps({"transport": name, "test": "rtt", "msg_size": SIZE, "producers": 1,
                          "median_ns": round(median), "p99_ns": round(p99)}), flush=True)
    summary = {
        "test": "summary",
        "throughput_shm_over_pipe": round(rows[("py-shm", "throughput")] / rows[("py-pipe", "throughput")], 2),
        "throughput_shm_over_queue": round(rows[("py-shm", "throughput")] / rows[("py-queue", "throughput")], 2),
        "rtt_pipe_over_shm": round(rows[("py-pipe", "rtt")] / rows[("py-shm", "rtt")], 2),
        "rtt_queue_over_shm": round(rows[("py-queue", "rtt")] / rows[("py-shm", "rtt")], 2),
        "targets": {"throughput_shm_over_pipe": 10, "rtt_pipe_over_shm": 5},
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    mp.set_start_method("fork")
    sys.exit(main())
