"""Python Celery client scenarios run against the Rust worker (interop.rs runs them).

Usage: python client.py SCENARIO [ARG]. Each prints one JSON report as its last stdout line;
the Rust test asserts on it. Everything here is plain Celery API, as a Python team writes it.
"""
import datetime
import http.server
import json
import sys
import threading
import time
import uuid

from celery import chain, chord, group
from celery.result import AsyncResult, GroupResult
from kombu import Exchange, Queue

from fleet import app, collect, echo, grow, on_chord_error, process_order, send_notification

TIMEOUT = 30


def order(order_id, sku="A", quantity=1):
    return {
        "order_id": order_id,
        "customer": {"id": "c-py", "email": "py@example.com"},
        "items": [{"sku": sku, "quantity": quantity, "unit_price_cents": 250}],
    }


def note(notification_id, channel="log", url=None):
    kw = {"notification_id": notification_id, "recipient": "py@example.com", "channel": channel,
          "subject": "from python", "body": "hello"}
    if url:
        kw["url"] = url
    return kw


def outcome(result, timeout=TIMEOUT):
    """The value, or the exception's class name and whether it is a ValueError."""
    try:
        return {"ok": result.get(timeout=timeout)}
    except Exception as e:  # the point is to see which exception Celery rebuilt
        return {"error": type(e).__name__, "value_error": isinstance(e, ValueError), "message": str(e)}


class Hook:
    """A local webhook: answers the scripted statuses, then 200; `hold` keeps requests waiting."""

    def __init__(self, statuses=(), hold=False):
        self.statuses = list(statuses)
        self.hits = []
        self.gate = threading.Event()
        self.arrived = threading.Event()
        if not hold:
            self.gate.set()
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.hits.append(self.headers.get("Idempotency-Key"))
                hook.arrived.set()
                hook.gate.wait(TIMEOUT)
                status = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def published_states(send, task_id):
    """Every state Celery publishes for `task_id`, in order, until a ready one: subscribes to the
    result channel before `send()` runs, so no state is missed (no polling)."""
    import os
    import redis
    pubsub = redis.Redis.from_url(os.environ["REDIS_URL"]).pubsub()
    pubsub.subscribe(f"celery-task-meta-{task_id}")
    pubsub.get_message(timeout=TIMEOUT)  # the subscribe confirmation
    result = send()
    states, deadline = [], time.time() + TIMEOUT
    while time.time() < deadline:
        msg = pubsub.get_message(timeout=1.0)
        if msg and msg["type"] == "message":
            states.append(json.loads(msg["data"])["status"])
            if states[-1] in ("SUCCESS", "FAILURE", "REVOKED"):
                break
    pubsub.close()
    return result, states


def basic():
    report = {}
    report["delay"] = outcome(process_order.delay(**order("py-delay")))
    report["apply_async"] = outcome(process_order.apply_async(kwargs=order("py-apply")))
    report["send_task"] = outcome(app.send_task("process_order", kwargs=order("py-send-task")))
    o = order("py-positional")
    report["positional"] = outcome(process_order.delay(o["order_id"], o["customer"], o["items"]))
    report["invalid"] = outcome(process_order.delay(order_id="py-bad", customer={"id": "c"}, items=[]))
    report["unknown_id_state"] = AsyncResult(str(uuid.uuid4()), app=app).state
    # STARTED is visible while the task runs (the webhook holds it), then SUCCESS.
    hook = Hook(hold=True)
    held = send_notification.delay(**note("py-held", "webhook", hook.url))
    hook.arrived.wait(TIMEOUT)
    report["state_while_running"] = held.state
    hook.gate.set()
    report["held"] = outcome(held)
    report["state_after"] = held.state
    report["idempotency_keys"] = hook.hits
    return report


def canvas():
    report = {}
    cb_id, eb_id = str(uuid.uuid4()), str(uuid.uuid4())
    parent = process_order.apply_async(kwargs=order("py-link"), link=send_notification.si(**note("py-cb")).set(task_id=cb_id))
    report["link_parent"] = outcome(parent)
    report["link_callback"] = outcome(AsyncResult(cb_id, app=app))
    failing = process_order.apply_async(
        kwargs={"order_id": "py-fails", "customer": {"id": "c"}, "items": []},
        link_error=send_notification.si(**note("py-eb")).set(task_id=eb_id))
    report["link_error_parent"] = outcome(failing)
    report["link_error_errback"] = outcome(AsyncResult(eb_id, app=app))
    two = chain(process_order.si(**order("py-chain2")), send_notification.si(**note("py-chain2-n"))).apply_async()
    report["chain2_last"] = outcome(two)
    report["chain2_first"] = outcome(two.parent)
    three = chain(process_order.si(**order("py-chain3")), send_notification.si(**note("py-c3-a")),
                  send_notification.si(**note("py-c3-b"))).apply_async()
    report["chain3"] = [outcome(three.parent.parent), outcome(three.parent), outcome(three)]
    report["chain3_parent_ids"] = [AsyncResult(three.id, app=app)._get_task_meta().get("parent_id"), three.parent.id]
    # Not immutable: the first step's result is prepended to the second's arguments, so it lands
    # in send_notification's first parameter (notification_id) and is refused as not a string.
    prepended = chain(process_order.si(**order("py-prepend")),
                      send_notification.s(recipient="py@example.com", channel="log", subject="s", body="b")).apply_async()
    report["prepended"] = outcome(prepended)
    members = group(process_order.s(**order("py-g1")), process_order.s(**order("py-g2"))).apply_async()
    try:
        report["group"] = {"ok": members.get(timeout=TIMEOUT)}
    except Exception as e:
        report["group"] = {"error": type(e).__name__, "message": str(e)}
    return report


def by_id(task_id, timeout=TIMEOUT):
    """A task's outcome read from the result backend by id, until it is ready: Celery 5.4's
    AsyncResult.get() misses results stored while the client waited on another task (an
    all-Python 5.4 fleet times out the same way), so the key is read instead."""
    deadline = time.monotonic() + timeout
    while True:
        meta = app.backend.get_task_meta(task_id, cache=False)
        if meta["status"] == "SUCCESS":
            return {"ok": meta["result"]}
        if meta["status"] in ("FAILURE", "REVOKED") or time.monotonic() > deadline:
            return {"error": meta["status"], "result": meta.get("result")}
        time.sleep(0.05)


def canvas_steps():
    """Groups and chains met as a step of the Rust worker's task: members run on Python (queue py)."""
    report = {}
    py = echo.s().set(queue="py")
    # chain(task, group): the group is the Rust task's next chain step; the client froze its ids.
    res = chain(process_order.s(**order("py-step")), group(py.clone(), echo.s("two").set(queue="py"))).apply_async()
    report["chain_group"] = outcome(res)
    meta = AsyncResult(res.parent.id, app=app)
    report["chain_group_parent"] = outcome(meta)
    report["chain_group_children"] = [[c.id, [r.id for r in c.results]] if hasattr(c, "results") else c.id
                                      for c in meta.children or []]
    report["chain_group_ids"] = [res.id, [r.id for r in res.results]]
    # A group in link, its queue set on the group, its members' ids set by the client (Celery
    # keeps them): the parent's children name them (its members read by id, see by_id).
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    parent = process_order.apply_async(kwargs=order("py-link-group"), link=group(
        echo.s().set(task_id=ids[0]), echo.si("fixed").set(task_id=ids[1]), queue="py"))
    report["link_group_parent"] = outcome(parent)
    report["link_group"] = [by_id(i) for i in ids]
    report["link_group_ids"] = ids
    report["link_group_children"] = [[c.id, [r.id for r in c.results]]
                                     for c in AsyncResult(parent.id, app=app).children or []
                                     if isinstance(c, GroupResult)]
    # A chain in link: the first step gets the result, the last the first's.
    last = str(uuid.uuid4())
    parent = process_order.apply_async(kwargs=order("py-link-chain"),
                                       link=chain(py.clone(), echo.s().set(queue="py", task_id=last)))
    outcome(parent)
    report["link_chain"] = by_id(last)
    # A group in link_error: each member gets the failed task's id.
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    failing = process_order.apply_async(
        kwargs={"order_id": "py-fails-g", "customer": {"id": "c"}, "items": []},
        link_error=group(echo.s().set(queue="py", task_id=ids[0]), echo.s().set(queue="py", task_id=ids[1])))
    report["errback_parent"] = {"id": failing.id, **outcome(failing)}
    report["errback_group"] = [by_id(i) for i in ids]
    # chain(task, group, task, task): Celery's client makes `group | task` a chord, the Rust task's
    # next step. The header runs on Python, whose join sends the body and the rest after it.
    res = chain(process_order.s(**order("py-chord")), group(py.clone(), echo.s("two").set(queue="py")),
                py.clone(), py.clone()).apply_async()
    report["chord"] = by_id(res.id)
    return report


def options():
    report = {}
    t0 = time.time()
    delayed = process_order.apply_async(kwargs=order("py-countdown"), countdown=2)
    report["countdown"] = outcome(delayed)
    report["countdown_waited"] = time.time() - t0
    t0 = time.time()
    eta = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=1)
    report["eta"] = outcome(process_order.apply_async(kwargs=order("py-eta"), eta=eta))
    report["eta_waited"] = time.time() - t0
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
    report["expired"] = outcome(process_order.apply_async(kwargs=order("py-expired"), expires=past))
    ignored = send_notification.apply_async(kwargs=note("py-ignored"), ignore_result=True)
    report["ignored_id"] = ignored.id
    report["after_ignored"] = outcome(send_notification.apply_async(kwargs=note("py-after-ignored")))
    hook = Hook(hold=True)
    limited = send_notification.apply_async(kwargs=note("py-limited", "webhook", hook.url), time_limit=1)
    report["time_limit"] = outcome(limited)
    hook.gate.set()
    flaky = Hook(statuses=[503, 503])
    retry_id = str(uuid.uuid4())
    retried, report["retry_states"] = published_states(
        lambda: send_notification.apply_async(kwargs=note("py-retried", "webhook", flaky.url), task_id=retry_id),
        retry_id)
    report["retried"] = outcome(retried)
    report["retry_hits"] = flaky.hits
    # A message that already used its retries (`retries` header) is not retried again.
    down = Hook(statuses=[503] * 10)
    spent = send_notification.apply_async(kwargs=note("py-spent", "webhook", down.url), retries=2)
    report["spent"] = outcome(spent)
    report["spent_hits"] = len(down.hits)
    return report


def publish_priorities(*priorities):
    ids = {}
    for p in [int(p) for p in priorities] or [9, 5, 0]:
        ids[p] = process_order.apply_async(kwargs=order(f"py-prio-{p}"), priority=p).id
    return ids


def link_to_python(priority):
    """An order for the queue `orders` (a Rust worker's) whose callback, a notification for the
    queue `notifications` (a Python worker's) at `priority`, the Rust worker publishes: returns
    both ids."""
    note_id = str(uuid.uuid4())
    callback = send_notification.si(**note("py-linked")).set(
        task_id=note_id, queue="notifications", priority=int(priority))
    parent = process_order.apply_async(kwargs=order("py-linked"), queue="orders", link=callback)
    return {"order": parent.id, "notification": note_id}


def ping():
    """The nodes that answer a broadcast ping (remote control over kombu's pidbox)."""
    return sorted(name for reply in app.control.ping(timeout=2.0) for name in reply)


def send_many(count):
    return [process_order.apply_async(kwargs=order(f"py-many-{i}")).id for i in range(int(count))]


def send_one(kind):
    if kind == "order":
        return process_order.apply_async(kwargs=order("py-slow")).id
    return send_notification.apply_async(kwargs=note("py-slow-note", "webhook", kind)).id


# A routed fleet's task_routes: orders and notifications each on a queue of their own.
ROUTES = {"process_order": {"queue": "orders"}, "send_notification": {"queue": "notifications"}}


def publish_routed(*specs):
    """Publishes through ROUTES, as a routed Python fleet does, and returns the task ids in order:
    each spec is order:ORDER_ID, note:NOTIFICATION_ID or hook:URL (a webhook notification)."""
    app.conf.task_routes = ROUTES
    ids = []
    for spec in specs:
        kind, _, arg = spec.partition(":")
        if kind == "order":
            ids.append(process_order.apply_async(kwargs=order(arg)).id)
        elif kind == "note":
            ids.append(send_notification.apply_async(kwargs=note(arg)).id)
        else:
            ids.append(send_notification.apply_async(kwargs=note("py-routed-hook", "webhook", arg)).id)
    return ids


# A fleet that publishes to a named exchange: `orders` is bound to the direct exchange "shop"
# with routing key "shop.orders", so kombu delivers what is published there into the list
# `orders`, with delivery_info {"exchange": "shop", "routing_key": "shop.orders"}.
SHOP = Exchange("shop", type="direct")
SHOP_ORDERS = Queue("orders", SHOP, routing_key="shop.orders")
# A route naming the queue alone publishes to the default exchange (Celery turns a direct
# queue's route into exchange "", routing key "orders"): it takes the exchange and its routing
# key to publish to the exchange.
TO_SHOP = {"queue": "orders", "exchange": "shop", "routing_key": "shop.orders"}
# Seconds a `later:` order waits (its eta): longer than a worker takes to start and claim it.
COUNTDOWN = 3


def publish_to_exchange(*specs):
    """Publishes to the exchange "shop" and returns the task ids in order: order:ORDER_ID and
    later:ORDER_ID (countdown=COUNTDOWN) through task_routes, hook:URL (a webhook notification)
    through apply_async(exchange=, routing_key=). Declares SHOP_ORDERS first, as a worker or
    producer with these task_queues does: kombu writes the binding `_kombu.binding.shop`."""
    app.conf.task_queues = [SHOP_ORDERS]
    app.conf.task_routes = {"process_order": TO_SHOP}
    with app.connection_for_write() as conn:
        SHOP_ORDERS(conn.default_channel).declare()
    ids = []
    for spec in specs:
        kind, _, arg = spec.partition(":")
        if kind == "order":
            ids.append(process_order.apply_async(kwargs=order(arg)).id)
        elif kind == "later":
            ids.append(process_order.apply_async(kwargs=order(arg), countdown=COUNTDOWN).id)
        else:
            ids.append(send_notification.apply_async(
                kwargs=note("py-shop-hook", "webhook", arg), exchange="shop", routing_key="shop.orders").id)
    return ids


def send_py_only(count):
    return [app.send_task("py_only", args=(i,)).id for i in range(int(count))]


def send_held(countdown):
    """On the queue `py` (a Python worker's): one order with a countdown, one without."""
    later = process_order.apply_async(kwargs=order("py-held-later"), countdown=int(countdown), queue="py")
    now = process_order.apply_async(kwargs=order("py-held-now"), queue="py")
    return [later.id, now.id]


def send_later(countdown):
    return process_order.apply_async(kwargs=order("py-later"), countdown=int(countdown)).id


def extended():
    """What AsyncResult reads of a result stored with result_extended (RESULT_EXTENDED)."""
    o = order("py-extended")
    r = process_order.apply_async(args=(o["order_id"],), kwargs={"customer": o["customer"], "items": o["items"]})
    r.get(timeout=TIMEOUT)
    return {"name": r.name, "args": r.args, "kwargs": r.kwargs, "worker": r.worker,
            "queue": r.queue, "retries": r.retries}


def chords(kind):
    """A chord of two orders; `kind` says where its parts run: `rust` (header and an immutable
    notification body on the Rust worker), `python-body` (header on Rust, `collect` on the
    Python worker's queue `py`), `split` (the second member on `py` too), `rust-last` (the first
    member on `py`), `failing` (the second member fails; the body's errback runs on `py`),
    `grown` (the second member, on `py`, adds a third order to the chord as it runs)."""
    header = [process_order.s(**order(f"{kind}-1")), process_order.s(**order(f"{kind}-2"))]
    body = collect.s().set(queue="py")
    if kind == "rust":
        body = send_notification.si(**note(f"{kind}-n"))
    elif kind == "split":
        header[1] = header[1].set(queue="py")
    elif kind == "rust-last":
        header[0] = header[0].set(queue="py")
    elif kind == "grown":
        header[1] = grow.s(f"{kind}-2", f"{kind}-3").set(queue="py")
    elif kind == "failing":
        header[1] = process_order.s(order_id=f"{kind}-2", customer={"id": "c"}, items=[])
        body = body.set(link_error=[on_chord_error.s().set(queue="py")])
    result = chord(header, body).apply_async()
    # A fresh AsyncResult: `result.get()` re-raises a failed header member's own exception.
    report = {"body": outcome(AsyncResult(result.id, app=app)), "body_id": result.id,
              "body_parent": AsyncResult(result.id, app=app)._get_task_meta().get("parent_id")}
    if result.parent is not None:
        report["header"] = [outcome(r) for r in result.parent.results]
        report["header_ids"] = [r.id for r in result.parent.results]
    if kind == "failing":
        deadline = time.time() + TIMEOUT
        key = f"chord-errback:{result.id}"
        while time.time() < deadline and not app.backend.client.get(key):
            time.sleep(0.05)
        report["errback"] = (app.backend.client.get(key) or b"").decode()
    return report


def wait_all(ids_json):
    """Each task's outcome, read by id (`by_id`: Celery 5.4's `get()` can hang on results stored
    while it waited on another one)."""
    return [by_id(i) for i in json.loads(ids_json)]


SCENARIOS = {"basic": basic, "canvas": canvas, "canvas-steps": canvas_steps, "options": options,
             "publish-priorities": publish_priorities, "send-many": send_many,
             "send-one": send_one, "wait-all": wait_all, "publish-routed": publish_routed,
             "publish-to-exchange": publish_to_exchange, "extended": extended, "send-later": send_later,
             "send-py-only": send_py_only, "send-held": send_held, "link-to-python": link_to_python, "ping": ping,
             "chords": chords}

if __name__ == "__main__":
    name, *args = sys.argv[1:]
    print(json.dumps(SCENARIOS[name](*args)), flush=True)
