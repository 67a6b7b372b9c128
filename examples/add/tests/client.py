"""A Python Celery client calling the Rust `add` task (tests/interop.rs runs it against the
example's worker binary).

Usage: REDIS_URL=redis://... python client.py. Prints one JSON report as its last stdout line;
the Rust test asserts on it. Plain Celery API, as a Python team calls a task it does not define:
`app.signature("add")` (or `app.send_task("add", ...)`), nothing registered on this side, so
the arguments are checked by the worker, not by Celery before sending.
"""
import json
import os

from celery import Celery

TIMEOUT = 30

app = Celery("client", broker=os.environ["REDIS_URL"], backend=os.environ["REDIS_URL"])
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])
add = app.signature("add")


def outcome(result):
    """The value, or the class, module and message of the exception Celery rebuilt."""
    try:
        return {"ok": result.get(timeout=TIMEOUT)}
    except Exception as e:  # the point is to see which exception Celery rebuilt
        return {"error": type(e).__name__, "module": type(e).__module__, "message": str(e),
                "type_error": isinstance(e, TypeError)}


def main():
    return {
        "delay": outcome(add.delay(2, 3)),
        "send_task": outcome(app.send_task("add", args=[2, 3])),
        "kwargs": outcome(add.apply_async(kwargs={"x": 1, "y": 2})),
        "mixed": outcome(add.delay(40, y=2)),
        "missing": outcome(app.send_task("add", args=[1])),
        "too_many": outcome(add.delay(1, 2, 3)),
        "unknown_kwarg": outcome(add.apply_async(kwargs={"x": 1, "y": 2, "z": 3})),
    }


if __name__ == "__main__":
    print(json.dumps(main()), flush=True)
