"""The Python Celery half of `cargo bench -p worker --bench stack`: the same workloads, run by
real Celery against the same Redis. Usage: python celery_bench.py WHAT [ARGS...]; prints JSON.

WHAT: enqueue N [THREADS] | drain N POOL CONCURRENCY [PROCESSES] | roundtrip N
"""
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "interop"))
from celery.result import ResultSet  # noqa: E402

from fleet import app, process_order  # noqa: E402


def order(i):
    return {"order_id": f"py-{i}", "customer": {"id": "c", "email": "c@example.com"},
            "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 100}]}


def enqueue(n, threads="1"):
    """N apply_async calls, one message each, from THREADS threads (kombu's producer pool)."""
    n, threads = int(n), int(threads)

    def send(part):
        for i in range(part, n, threads):
            process_order.apply_async(kwargs=order(i), ignore_result=True)
    workers = [threading.Thread(target=send, args=(t,)) for t in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return {"rate": n / (time.perf_counter() - start)}


def start_worker(pool, concurrency, index=0):
    cmd = [sys.executable, "-m", "celery", "-A", "fleet", "worker", "-l", "warning", "-P", pool,
           "-c", str(concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat",
           "-n", f"bench-{os.getpid()}-{index}@localhost"]
    here = os.path.join(os.path.dirname(__file__), "..", "tests", "interop")
    proc = subprocess.Popen(cmd, cwd=here, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, start_new_session=True, env={**os.environ, "PYTHONPATH": here})
    ready = threading.Event()

    def drain_log():
        for line in proc.stderr:
            if "fleet worker ready" in line:
                ready.set()
    threading.Thread(target=drain_log, daemon=True).start()
    return proc, ready


def stop_worker(proc):
    os.killpg(proc.pid, 15)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)


def warm_up():
    process_order.apply_async(kwargs=order("warm")).get(timeout=120)


def drain(n, pool, concurrency, processes="1"):
    """N tasks queued first; PROCESSES separate worker processes (each POOL with CONCURRENCY)
    started together; timed from the last one's readiness to the last stored result."""
    n = int(n)
    ids = [process_order.apply_async(kwargs=order(i)).id for i in range(n)]
    workers = [start_worker(pool, int(concurrency), k) for k in range(int(processes))]
    try:
        for _, ready in workers:
            if not ready.wait(120):
                raise SystemExit("celery worker did not start")
        start = time.perf_counter()
        # Tasks the first workers finished while the others started are not timed.
        metas = app.backend.client.mget([f"celery-task-meta-{i}" for i in ids])
        early = sum(1 for m in metas if m and json.loads(m)["status"] == "SUCCESS")
        ResultSet([app.AsyncResult(i) for i in ids]).join_native(timeout=600, propagate=False)
        return {"rate": (n - early) / (time.perf_counter() - start), "early": early}
    finally:
        for proc, _ in workers:
            stop_worker(proc)


def roundtrip(n):
    n = int(n)
    proc, _ = start_worker("prefork", 2)
    try:
        warm_up()
        lat = []
        for i in range(n):
            t = time.perf_counter()
            process_order.apply_async(kwargs=order(i)).get(timeout=30)
            lat.append((time.perf_counter() - t) * 1000)
        return {"latencies": lat}
    finally:
        stop_worker(proc)


if __name__ == "__main__":
    what, *args = sys.argv[1:]
    print(json.dumps({"enqueue": enqueue, "drain": drain, "roundtrip": roundtrip}[what](*args)), flush=True)
