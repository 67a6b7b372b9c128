"""After the Schemathesis run: nothing half-enqueued (docs/design.md "Keys").

With no worker running, every accepted submission is exactly one message on its service's queue
and one idempotency key `fleet:<kind>:<id>:task` holding that message's task id, with a TTL
(RETENTION_SECS). Reads what redis-cli dumped: argv = kind, queue dump, key dump, max depth.
The queue dump has one kombu message per line; the key dump has `key<TAB>value<TAB>ttl` lines.
"""
import base64
import json
import sys

kind, queue_file, keys_file, max_depth = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
task = {"order": "process_order", "notification": "send_notification"}[kind]
id_field = kind + "_id"
problems = []

queued = {}  # id -> task id
for line in open(queue_file, encoding="utf-8"):
    if not line.strip():
        continue
    msg = json.loads(line)
    headers = msg["headers"]
    args, kwargs, _embed = json.loads(base64.b64decode(msg["body"]))
    if headers["task"] != task:
        problems.append(f"a {headers['task']} message on the {kind} queue")
    sid = kwargs.get(id_field)
    if sid in queued:
        problems.append(f"{kind} {sid} queued twice")
    queued[sid] = headers["id"]

keys = {}  # id -> (task id, ttl)
prefix, suffix = f"fleet:{kind}:", ":task"
for line in open(keys_file, encoding="utf-8"):
    if not line.strip():
        continue
    key, value, ttl = line.rstrip("\n").split("\t")
    keys[key[len(prefix):-len(suffix)]] = (value, int(ttl))

for sid, task_id in queued.items():
    if sid not in keys:
        problems.append(f"queued {kind} {sid} (task {task_id}) has no idempotency key")
    elif keys[sid][0] != task_id:
        problems.append(f"{kind} {sid}: key holds {keys[sid][0]}, the queue has {task_id}")
for sid, (task_id, ttl) in keys.items():
    if sid not in queued:
        problems.append(f"idempotency key of {kind} {sid} (task {task_id}) has no message")
    if ttl <= 0:
        problems.append(f"idempotency key of {kind} {sid} has no expiry (ttl {ttl})")
if len(queued) > max_depth:
    problems.append(f"{len(queued)} {kind} messages queued, over MAX_QUEUE_DEPTH {max_depth}")

for p in problems:
    print("  HALF-ENQUEUED:", p)
print(f"{kind}: {len(queued)} messages, {len(keys)} idempotency keys, {len(problems)} problems")
sys.exit(1 if problems else 0)
