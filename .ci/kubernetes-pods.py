#!/usr/bin/env python3
# The generated Deployments' containers run as local processes: each binary (from BIN, the
# image's name) starts with exactly the environment its manifest gives it, except that Secret
# references get local values (a private redis-server this script starts, a throwaway token)
# and the listen ports are moved to free ones (per pod, as each pod has its own network: two
# worker pools both declare 9808). Then every readiness and liveness probe the manifests declare
# must pass (httpGet against the process, exec run with its environment), .ci/nix-smoke must
# pass against the services (an order end to end, with the token), and the order's two tasks
# must each have run once, from the queue the fleet's routes send them to (`worker route`, the
# fleet's own routing code, with service-order's manifest environment), on a worker pool
# consuming that queue (`worker queues` with the pool's environment):
# read from each pool's celery_task_succeeded_total{name,queue_name} on its own metrics port.
# Last, on SIGTERM each process must exit 0 well within its terminationGracePeriodSeconds.
# Usage: kubernetes-pods.py MANIFEST_DIR BIN_DIR
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

# The tasks one order runs: process_order, submitted by service-order, and the
# send_notification it chains, sent on by the worker that ran it.
ORDER_TASKS = ("process_order", "send_notification")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url):
    try:
        return urllib.request.urlopen(url, timeout=3).status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def ask_worker(bins, env, args, cwd):
    """The JSON lines `worker ARGS` prints with `env` (a container's environment), run from `cwd`
    (no .env there): the fleet's own code answering. Raises ValueError when it refuses."""
    exe = str((Path(bins) / "worker").resolve())
    run = subprocess.run([exe, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=30)
    if run.returncode:
        raise ValueError(f"worker {args[0]} exited {run.returncode}: {run.stderr.strip()}")
    return [json.loads(line) for line in run.stdout.splitlines() if line.strip()]


def routed(bins, env, tasks, cwd):
    """{task: queue} as `worker route` answers with `env`."""
    return {a["task"]: a["queue"] for a in ask_worker(bins, env, ["route", *tasks], cwd)}


def succeeded(url):
    """{(name, queue_name, hostname): count} from celery_task_succeeded_total at `url`."""
    counts = {}
    text = urllib.request.urlopen(url, timeout=3).read().decode()
    for m in re.finditer(r"^celery_task_succeeded_total\{([^}]*)\} (\S+)$", text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        key = (labels.get("name"), labels.get("queue_name"), labels.get("hostname"))
        counts[key] = counts.get(key, 0) + float(m.group(2))
    return counts


def check_routing(procs, pools, bins, logs, failures):
    """The order's tasks ran once each, from their routed queue, on a pool that consumes it."""
    order = next((env for _, c, env, _, _, _ in procs if c["name"] == "service-order"), {})
    try:
        expected = routed(bins, order, ORDER_TASKS, logs)
    except (ValueError, OSError, subprocess.SubprocessError) as e:
        failures.append(f"routing: no queues from service-order's environment: {e}")
        return
    consumers = {q: [p for p, (queues, _) in pools.items() if q in queues] for q in expected.values()}
    # A task's counter goes up just after its result is stored: wait a little for both.
    deadline = time.time() + 15
    while True:
        runs = []  # (task, queue, pool, hostname, count)
        try:
            for pool, (_, url) in pools.items():
                runs += [(n, q, pool, h, v) for (n, q, h), v in succeeded(url).items() if n in ORDER_TASKS and v]
        except OSError as e:
            failures.append(f"routing: a worker's /metrics did not answer: {e}")
            return
        if all(sum(r[4] for r in runs if r[0] == t) >= 1 for t in ORDER_TASKS) or time.time() > deadline:
            break
        time.sleep(0.5)
    ran_on = {}
    for task, queue in expected.items():
        mine = [r for r in runs if r[0] == task]
        where = ", ".join(f"pool {p} ({h}) from queue {q} x{v:g}" for _, q, p, h, v in mine) or "nowhere"
        by = consumers[queue]
        print(f"routing: {task} -> queue {queue} (consumed by pool{'s' * (len(by) > 1)} "
              f"{' and '.join(by) or 'none'}): ran on {where}")
        if sum(r[4] for r in mine) != 1:
            failures.append(f"routing: {task} succeeded {sum(r[4] for r in mine):g} times, not once ({where})")
        for _, q, p, _, _ in mine:
            if q != queue:
                failures.append(f"routing: {task} ran from queue {q}, but the routes send it to {queue}")
            elif p not in by:
                failures.append(f"routing: {task} ran on pool {p}, which does not consume {queue}")
        ran_on[task] = sorted({r[2] for r in mine})
    if len(pools) > 1:
        shared = [f"{t}'s queue {q} has {len(consumers[q])} consuming pools, either may run it"
                  for t, q in expected.items() if len(consumers[q]) > 1]
        print("routing: " + ", ".join(f"{t} on {'/'.join(p)}" for t, p in ran_on.items())
              + (f" ({'; '.join(shared)})" if shared else ", each on the one pool consuming its queue"))


def main(manifests, bins):
    root = Path(__file__).resolve().parent.parent
    logs = Path(manifests).with_name(Path(manifests).name + "-logs")
    logs.mkdir(exist_ok=True)
    redis_port = free_port()
    token = os.urandom(16).hex()
    secret = {"redis-url": f"redis://127.0.0.1:{redis_port}/0",
              "redis-address": f"127.0.0.1:{redis_port}", "redis-password": "", "api-tokens": token}
    deployments = [json.loads(p.read_text()) for p in sorted(Path(manifests).glob("deployment-*.json"))]
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    procs, failures = [], []
    pools = {}  # worker Deployment -> (its queues, its /metrics URL)
    try:
        time.sleep(0.5)
        for d in deployments:
            pod = d["spec"]["template"]["spec"]
            moved = {}  # this pod's containerPort -> the local port it listens on
            for c in pod["containers"]:
                for p in c["ports"]:
                    moved[p["containerPort"]] = free_port()
            for c in pod["containers"]:
                env = {"PATH": os.environ["PATH"]}
                for e in c["env"]:
                    value = e["value"] if "value" in e else secret[e["valueFrom"]["secretKeyRef"]["key"]]
                    for old, new in moved.items():
                        value = value.replace(f":{old}", f":{new}") if value.endswith(f":{old}") else value
                    env[e["name"]] = value
                exe = str(Path(bins) / c["image"].split("/")[-1].split(":")[0])
                log = open(logs / f"{d['metadata']['name']}.log", "w")
                procs.append((d, c, env, exe, moved, subprocess.Popen([exe], env=env, stderr=log)))
                if "WORKER_METRICS_BIND" in env:
                    # The queues it consumes, as `worker queues` reads them from its environment.
                    try:
                        queues = ask_worker(bins, env, ["queues"], logs)[0]["queues"]
                    except (ValueError, OSError, subprocess.SubprocessError, IndexError, KeyError) as e:
                        failures.append(f"{d['metadata']['name']}: no consumed queues: {e}")
                        queues = []
                    metrics = next(moved[p["containerPort"]] for p in c["ports"] if p["name"] == "metrics")
                    pools[d["metadata"]["name"]] = (queues, f"http://127.0.0.1:{metrics}/metrics")

        def probe(c, env, exe, moved, kind):
            pr = c[kind]
            if "httpGet" in pr:
                port = pr["httpGet"]["port"]
                number = next(p["containerPort"] for p in c["ports"] if port in (p["name"], p["containerPort"]))
                return http_status(f"http://127.0.0.1:{moved[number]}{pr['httpGet']['path']}") == 200
            command = [exe] + pr["exec"]["command"][1:]  # the image's /bin/<name> is BIN/<name> here
            return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode == 0

        for d, c, env, exe, moved, proc in procs:
            name = d["metadata"]["name"]
            deadline = time.time() + 30
            while not probe(c, env, exe, moved, "readinessProbe"):
                if proc.poll() is not None or time.time() > deadline:
                    failures.append(f"{name}: never ready (exit {proc.poll()}; {logs}/{name}.log)")
                    break
                time.sleep(0.5)
            else:
                live = probe(c, env, exe, moved, "livenessProbe")
                print(f"{name}: readinessProbe ok, livenessProbe {'ok' if live else 'FAILED'}")
                if not live:
                    failures.append(f"{name}: livenessProbe failed")
        services = {c["name"]: moved[c["ports"][0]["containerPort"]] for _, c, _, _, moved, _ in procs}
        if not failures and {"service-order", "service-notification"} <= set(services):
            smoke = subprocess.run(["bash", str(root / ".ci/nix-smoke"),
                                    f"http://127.0.0.1:{services['service-order']}",
                                    f"http://127.0.0.1:{services['service-notification']}"],
                                   env=dict(os.environ, SMOKE_TOKEN=token, SMOKE_TIMEOUT="60"))
            if smoke.returncode:
                failures.append("the smoke test failed")
            else:
                check_routing(procs, pools, bins, logs, failures)
    finally:
        for d, c, env, exe, moved, proc in procs:
            name = d["metadata"]["name"]
            grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            started = time.time()
            proc.terminate()
            try:
                code = proc.wait(timeout=grace)
                print(f"{name}: SIGTERM, exit {code} in {time.time() - started:.1f} s (grace {grace} s)")
                if code != 0:
                    failures.append(f"{name}: exit {code} on SIGTERM")
            except subprocess.TimeoutExpired:
                proc.kill()
                failures.append(f"{name}: still running after its grace period, {grace} s")
        redis.terminate()
        redis.wait()
    for f in failures:
        print("ERROR", f)
    print(f"kubernetes-pods: {len(procs)} containers ({len(pools)} worker pool{'s' * (len(pools) != 1)}) run with their "
          f"manifests' environment, {len(failures)} problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
