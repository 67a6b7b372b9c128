"""Python Celery *tools* against the Rust worker: remote control (revoke, inspect by pattern),
the event stream (`celery events --dump` and an EventReceiver, read like Flower reads it).
celery_tools.rs runs these scenarios; the `celery` CLI itself it runs directly.

Usage: python tools.py SCENARIO [ARGS]. Each prints one JSON report as its last stdout line;
progress lines for the Rust test to await go to stderr ("tools: ..."). Configured from the
environment like fleet.py (REDIS_URL).
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid

import redis
from celery.result import AsyncResult

from fleet import app, process_order, send_notification

TIMEOUT = 30
FINAL = ("SUCCESS", "FAILURE", "REVOKED")


def say(line):
    print(f"tools: {line}", file=sys.stderr, flush=True)


def order_kwargs(order_id, sku="A", quantity=1):
    items = [{"sku": sku, "quantity": quantity, "unit_price_cents": 250}] if quantity else []
    return {"order_id": order_id, "customer": {"id": "c-tools", "email": "tools@example.com"}, "items": items}


def outcome(result, timeout=TIMEOUT):
    try:
        return {"ok": result.get(timeout=timeout), "state": result.state}
    except Exception as e:  # which exception Celery rebuilt is the point
        return {"error": type(e).__name__, "message": str(e), "state": result.state}


def send(kind, ident, opts):
    """Enqueues one task the way a Python client does; waits for it with --wait."""
    options = {}
    if opts.queue:
        options["queue"] = opts.queue
    if opts.countdown is not None:
        options["countdown"] = opts.countdown
    if opts.task_id:
        options["task_id"] = opts.task_id
    if kind == "order":
        result = process_order.apply_async(kwargs=order_kwargs(ident, opts.sku, opts.qty), **options)
    else:
        kw = {"notification_id": ident, "recipient": "tools@example.com", "channel": "webhook" if opts.url else "log",
              "subject": "from tools", "body": "hello"}
        if opts.url:
            kw["url"] = opts.url
        result = send_notification.apply_async(kwargs=kw, **options)
    report = {"id": result.id}
    if opts.wait:
        report["outcome"] = outcome(result)
    return report


def states(ids):
    return {i: AsyncResult(i, app=app).state for i in ids}


def wait_states(ids, wanted, timeout=TIMEOUT):
    """Polls until every id is in `wanted` (or the deadline); returns the last states seen."""
    deadline = time.time() + timeout
    while True:
        seen = states(ids)
        if all(s in wanted for s in seen.values()) or time.time() > deadline:
            return seen
        time.sleep(0.1)


def revoke(ids, terminate=False, control=False):
    """`AsyncResult.revoke()` per id (a cast), or one `app.control.revoke(ids, reply=True)`."""
    if control:
        return {"replies": app.control.revoke(ids, terminate=terminate, reply=True, timeout=1.0)}
    for i in ids:
        AsyncResult(i, app=app).revoke(terminate=terminate)
    return {"revoked": ids}


def inspect_pattern(pattern):
    """The Python API's node-name matching (`pattern` + `matcher`), which the CLI cannot send."""
    insp = app.control.inspect(timeout=1.0, pattern=pattern, matcher="glob")
    return {"ping": insp.ping() or {}}


def numpat():
    """Pattern subscriptions on the server, counted per connection (PUBSUB NUMPAT counts distinct
    patterns, and every event receiver subscribes the same one)."""
    clients = redis.Redis.from_url(os.environ["REDIS_URL"]).client_list()
    return sum(int(c.get("psub", 0)) for c in clients)


class EventLog:
    """Every event on the `celeryev` exchange, read through Celery's own EventReceiver (what
    Flower and `celery events` use), in arrival order; `start()` returns once subscribed."""

    def __init__(self):
        self.events, self.errors, self.alive = [], [], []
        self.cond = threading.Condition()
        self.receiver = None
        self.state = app.events.State()  # live, as Flower keeps it

    def start(self, baseline=None, subscribers=1):
        """Returns once `subscribers` more patterns than `baseline` are subscribed on Redis."""
        before = numpat() if baseline is None else baseline
        threading.Thread(target=self._run, daemon=True).start()
        deadline = time.time() + TIMEOUT
        while numpat() < before + subscribers:
            if time.time() > deadline:
                raise RuntimeError("the event receivers never subscribed")
            time.sleep(0.05)
        return self

    def _on_event(self, event):
        with self.cond:
            self.events.append(dict(event))
            self.state.event(dict(event))
            kind, host = event.get("type", ""), event.get("hostname")
            if kind.startswith("worker-") and host in self.state.workers:
                self.alive.append([kind, host, self.state.workers[host].alive])
            self.cond.notify_all()

    def _run(self):
        try:
            with app.connection_for_read() as conn:
                self.receiver = app.events.Receiver(conn, handlers={"*": self._on_event})
                self.receiver.capture(limit=None, timeout=None, wakeup=False)
        except Exception as e:  # a receiver that chokes on an event is what the tests look for
            with self.cond:
                self.errors.append(repr(e))
                self.cond.notify_all()

    def wait(self, predicate, timeout=TIMEOUT):
        deadline = time.time() + timeout
        with self.cond:
            while not predicate(self.events) and not self.errors:
                left = deadline - time.time()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return predicate(self.events)

    def stop(self):
        if self.receiver is not None:
            self.receiver.should_stop = True


NUMBER = (int, float)
COMMON = {"type": str, "timestamp": NUMBER, "hostname": str, "pid": int, "clock": int, "utcoffset": NUMBER}
WORKER = {"freq": NUMBER, "active": int, "processed": int, "loadavg": list, "sw_ident": str, "sw_ver": str, "sw_sys": str}
TASK = {
    "task-received": {"uuid": str, "name": str, "args": str, "kwargs": str, "retries": int},
    "task-started": {"uuid": str},
    "task-succeeded": {"uuid": str, "result": str, "runtime": NUMBER},
    "task-failed": {"uuid": str, "exception": str},
    "task-retried": {"uuid": str, "exception": str},
    "task-revoked": {"uuid": str, "terminated": bool, "expired": bool},
}
PRESENT = {"task-received": ("root_id", "parent_id", "eta", "expires"), "task-failed": ("traceback",),
           "task-revoked": ("signum",)}


def problems_of(event):
    """What a Python tool would trip over in one event (types as Celery's own workers send)."""
    kind = event.get("type")
    wanted = dict(COMMON)
    if kind in ("worker-online", "worker-heartbeat", "worker-offline"):
        wanted.update(WORKER)
    elif kind in TASK:
        wanted.update(TASK[kind])
    else:
        return [f"unknown event type {kind!r}"]
    found = []
    for field, typ in wanted.items():
        value = event.get(field)
        if field not in event:
            found.append(f"{kind}: no {field}")
        elif not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            found.append(f"{kind}: {field}={value!r} is not {typ}")
    for field in PRESENT.get(kind, ()):
        if field not in event:
            found.append(f"{kind}: no {field}")
    if kind.startswith("worker-") and isinstance(event.get("loadavg"), list):
        if len(event["loadavg"]) != 3 or not all(isinstance(x, NUMBER) for x in event["loadavg"]):
            found.append(f"{kind}: loadavg {event['loadavg']!r} is not 3 numbers")
    return found


def events(node):
    """Listens with `celery events --dump` and an EventReceiver until `node` says worker-offline;
    checks every event of `node` and replays them into Celery's State (what Flower shows)."""
    baseline = numpat()
    dump = subprocess.Popen([sys.executable, "-m", "celery", "-A", "fleet", "events", "--dump"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dump_lines = []

    def read_dump():
        for line in dump.stdout:
            dump_lines.append(line.rstrip("\n"))

    threading.Thread(target=read_dump, daemon=True).start()
    log = EventLog().start(baseline, subscribers=2)
    say("listening")
    counted = set()

    def progress(evs):
        for i, e in enumerate(evs):
            if i not in counted and e.get("hostname") == node:
                counted.add(i)
                say(f"event {e.get('type')}")
        return any(e.get("type") == "worker-offline" and e.get("hostname") == node for e in evs)

    offline = log.wait(progress, timeout=120)
    # The dump prints the same stream; give it until it printed the shutdown line too.
    deadline = time.time() + 10
    while time.time() < deadline and not any(node in l and "shutdown" in l for l in dump_lines):
        time.sleep(0.05)
    log.stop()
    dump.terminate()
    _, dump_err = dump.communicate(timeout=10)

    mine = [e for e in log.events if e.get("hostname") == node]
    state = log.state
    tasks = {}
    for e in mine:
        if e["type"].startswith("task-"):
            tasks.setdefault(e["uuid"], []).append(e["type"])
    return {
        "offline_seen": offline,
        "receiver_errors": log.errors,
        "problems": sorted({p for e in mine for p in problems_of(e)}),
        "types": [e["type"] for e in mine],
        "tasks": tasks,
        "task_states": {u: t.state for u, t in state.tasks.items()},
        "task_names": {u: t.name for u, t in state.tasks.items()},
        "task_results": {u: t.result for u, t in state.tasks.items()},
        "task_exceptions": {u: t.exception for u, t in state.tasks.items()},
        "alive": [[kind, alive] for kind, host, alive in log.alive if host == node],
        "worker_sw": {k: mine[0].get(k) for k in ("sw_ident", "sw_ver", "sw_sys")} if mine else {},
        "heartbeat_freqs": sorted({e.get("freq") for e in mine if e["type"] == "worker-heartbeat"}),
        "dump": [l for l in dump_lines if node in l],
        "dump_stderr": dump_err[-4000:],
        "dump_exit": dump.returncode,
    }


def revoke_both(count, rust_queue, py_queue):
    """A Python client revokes ids, then sends tasks with them to the Rust worker's queue and to
    the Python worker's; reports which node refused (task-revoked) each, and what else ran."""
    count = int(count)
    log = EventLog().start()
    ids = {"rust": [str(uuid.uuid4()) for _ in range(count)], "python": [str(uuid.uuid4()) for _ in range(count)]}
    every = ids["rust"] + ids["python"]
    replies = app.control.revoke(every, reply=True, timeout=1.0)
    for side, queue in (("rust", rust_queue), ("python", py_queue)):
        for n, task_id in enumerate(ids[side]):
            process_order.apply_async(kwargs=order_kwargs(f"both-{side}-{n}"), queue=queue, task_id=task_id)

    def all_refused(evs):
        return {e["uuid"] for e in evs if e.get("type") == "task-revoked"} >= set(every)

    log.wait(all_refused)
    # A sentinel after them on each queue: once it ran, the revoked ones were long handled.
    sentinels = {side: process_order.apply_async(kwargs=order_kwargs(f"both-{side}-sentinel"), queue=queue)
                 for side, queue in (("rust", rust_queue), ("python", py_queue))}
    sentinel_outcomes = {side: outcome(r) for side, r in sentinels.items()}
    log.stop()
    by = {}
    for e in log.events:
        if e.get("type") == "task-revoked" and e.get("uuid") in every:
            by.setdefault(e["uuid"], set()).add(e["hostname"])
    ran = sorted({e["uuid"] for e in log.events
                  if e.get("type") in ("task-started", "task-succeeded", "task-failed") and e.get("uuid") in every})
    return {
        "replies": replies,
        "ids": ids,
        "refused_by": {i: sorted(h) for i, h in by.items()},
        "ran": ran,
        "states": states(every),
        "sentinels": sentinel_outcomes,
        "receiver_errors": log.errors,
    }


def main(argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="scenario", required=True)
    for kind in ("send-order", "send-note"):
        p = sub.add_parser(kind)
        p.add_argument("ident")
        p.add_argument("--sku", default="A")
        p.add_argument("--qty", type=int, default=1)
        p.add_argument("--url")
        p.add_argument("--queue")
        p.add_argument("--countdown", type=float)
        p.add_argument("--task-id")
        p.add_argument("--wait", action="store_true")
    p = sub.add_parser("states")
    p.add_argument("ids", nargs="+")
    p = sub.add_parser("wait-states")
    p.add_argument("state")
    p.add_argument("ids", nargs="+")
    p = sub.add_parser("wait")
    p.add_argument("ids", nargs="+")
    p = sub.add_parser("revoke")
    p.add_argument("ids", nargs="+")
    p.add_argument("--terminate", action="store_true")
    p.add_argument("--control", action="store_true")
    p = sub.add_parser("inspect-pattern")
    p.add_argument("pattern")
    p = sub.add_parser("events")
    p.add_argument("node")
    p = sub.add_parser("revoke-both")
    p.add_argument("count")
    p.add_argument("rust_queue")
    p.add_argument("py_queue")
    a = parser.parse_args(argv)
    if a.scenario in ("send-order", "send-note"):
        return send(a.scenario[5:], a.ident, a)
    if a.scenario == "states":
        return states(a.ids)
    if a.scenario == "wait-states":
        return wait_states(a.ids, a.state.split(","))
    if a.scenario == "wait":
        return {i: outcome(AsyncResult(i, app=app)) for i in a.ids}
    if a.scenario == "revoke":
        return revoke(a.ids, a.terminate, a.control)
    if a.scenario == "inspect-pattern":
        return inspect_pattern(a.pattern)
    if a.scenario == "events":
        return events(a.node)
    return revoke_both(a.count, a.rust_queue, a.py_queue)


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), default=repr), flush=True)
