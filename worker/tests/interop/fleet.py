"""The Python side of the interoperability tests: a Celery app configured like a Python fleet
that shares Redis with the Rust services and worker, and Python implementations of the two
tasks (same names and arguments as the Rust contracts) for when a Python worker serves them.

Configured from the environment: REDIS_URL, RESULT_BACKEND_URL, REDIS_SENTINEL_MASTER (for
sentinel:// URLs), VISIBILITY_TIMEOUT_SECS, PY_TASK_SLEEP (seconds a Python task sleeps, to be killed mid-task),
and kombu's transport options under the Rust side's names: BROKER_PRIORITY_STEPS (priority_steps),
BROKER_KEY_SEP (sep), BROKER_KEY_PREFIX (global_keyprefix), BROKER_QUEUE_ORDER (queue_order_strategy).
"""
import os
import sys
import time

from celery import Celery
from celery.signals import worker_ready

broker = os.environ["REDIS_URL"]
app = Celery("fleet", broker=broker, backend=os.environ.get("RESULT_BACKEND_URL", broker))
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    enable_utc=True,
    timezone="UTC",
    task_acks_late=True,
    task_track_started=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": int(os.environ.get("VISIBILITY_TIMEOUT_SECS", "30"))},
)
# kombu's Redis transport options, from the variables the Rust side reads (unset: kombu's defaults).
_layout = {
    "priority_steps": [int(p) for p in os.environ["BROKER_PRIORITY_STEPS"].split(",")]
    if os.environ.get("BROKER_PRIORITY_STEPS") else None,
    "sep": os.environ["BROKER_KEY_SEP"].encode("latin-1").decode("unicode_escape")
    if os.environ.get("BROKER_KEY_SEP") else None,
    "global_keyprefix": os.environ.get("BROKER_KEY_PREFIX"),
    "queue_order_strategy": os.environ.get("BROKER_QUEUE_ORDER"),
}
app.conf.broker_transport_options.update({k: v for k, v in _layout.items() if v is not None})
if os.environ.get("REDIS_SENTINEL_MASTER"):
    # sentinel:// URLs (sentinel.rs): kombu and the result backend take the master's name here.
    app.conf.broker_transport_options["master_name"] = os.environ["REDIS_SENTINEL_MASTER"]
    app.conf.result_backend_transport_options = {"master_name": os.environ["REDIS_SENTINEL_MASTER"]}


@worker_ready.connect
def _announce(**_):
    # A readiness line that does not depend on the log level (the benchmark runs -l warning).
    print("fleet worker ready", file=sys.stderr, flush=True)


def _pause():
    seconds = float(os.environ.get("PY_TASK_SLEEP", "0"))
    if seconds:
        time.sleep(seconds)


@app.task(name="process_order")
def process_order(order_id, customer, items):
    """Python twin of the Rust task (no stock): the same result shape, marked runner=python."""
    _pause()
    total = sum(int(i["quantity"]) * int(i["unit_price_cents"]) for i in items)
    return {"order_id": order_id, "status": "confirmed", "total_cents": total, "runner": "python"}


@app.task(name="send_notification")
def send_notification(notification_id, recipient, channel, subject, body, url=None):
    """Python twin of the Rust task (records nothing): marked runner=python."""
    _pause()
    return {"notification_id": notification_id, "status": "delivered", "channel": channel, "runner": "python"}


@app.task(name="py_only")
def py_only(n):
    """A task only the Python side registers (a shared queue's other tasks)."""
    return {"n": n, "runner": "python"}


@app.task(name="echo")
def echo(*args, **kwargs):
    """What it was called with: a canvas member a Python worker runs (the Rust worker has none)."""
    return {"args": list(args), "kwargs": kwargs, "runner": "python"}


@app.task(name="collect")
def collect(results):
    """A chord body: the header's order ids in the order Celery hands them over."""
    return {"order_ids": [r["order_id"] for r in results],
            "runners": [r.get("runner", "rust") for r in results], "runner": "python"}


@app.task(name="grow", bind=True)
def grow(self, order_id, extra_order_id):
    """A chord member that adds an order for the Rust worker to its own chord (Celery's
    `add_to_chord`: the size grows by one in the `.t` counter, a chord of unknown size)."""
    self.add_to_chord(process_order.s(
        order_id=extra_order_id, customer={"id": "c", "email": "c@example.com"},
        items=[{"sku": "A", "quantity": 1, "unit_price_cents": 100}]))
    return {"order_id": order_id, "runner": "python"}


@app.task(name="on_chord_error")
def on_chord_error(task_id):
    """A chord body's errback: records the failed body's id where the client reads it."""
    app.backend.client.set(f"chord-errback:{task_id}", task_id, ex=600)
    return task_id
