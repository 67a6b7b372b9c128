#!/usr/bin/env python3
# The generated Deployments' containers run as local processes: each binary (from BIN, the
# image's name) starts with exactly the environment its manifest gives it, except that Secret
# references get local values (a private redis-server this script starts, a throwaway token)
# and the listen ports are moved to free ones. Then every readiness and liveness probe the
# manifests declare must pass (httpGet against the process, exec run with its environment),
# .ci/nix-smoke must pass against the services (an order end to end, with the token), and on
# SIGTERM each process must exit 0 well within its terminationGracePeriodSeconds.
# Usage: kubernetes-pods.py MANIFEST_DIR BIN_DIR
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


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


def main(manifests, bins):
    root = Path(__file__).resolve().parent.parent
    logs = Path(manifests).with_name(Path(manifests).name + "-logs")
    logs.mkdir(exist_ok=True)
    redis_port = free_port()
    token = os.urandom(16).hex()
    secret = {"redis-url": f"redis://127.0.0.1:{redis_port}/0",
              "redis-address": f"127.0.0.1:{redis_port}", "redis-password": "", "api-tokens": token}
    deployments = [json.loads(p.read_text()) for p in sorted(Path(manifests).glob("deployment-*.json"))]
    moved = {}  # containerPort -> the local port it listens on
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    procs, failures = [], []
    try:
        time.sleep(0.5)
        for d in deployments:
            pod = d["spec"]["template"]["spec"]
            for c in pod["containers"]:
                env = {"PATH": os.environ["PATH"]}
                for p in c["ports"]:
                    moved[p["containerPort"]] = free_port()
                for e in c["env"]:
                    value = e["value"] if "value" in e else secret[e["valueFrom"]["secretKeyRef"]["key"]]
                    for old, new in moved.items():
                        value = value.replace(f":{old}", f":{new}") if value.endswith(f":{old}") else value
                    env[e["name"]] = value
                exe = str(Path(bins) / c["image"].split("/")[-1].split(":")[0])
                log = open(logs / f"{d['metadata']['name']}.log", "w")
                procs.append((d, c, env, exe, subprocess.Popen([exe], env=env, stderr=log)))

        def probe(c, env, exe, kind):
            pr = c[kind]
            if "httpGet" in pr:
                port = pr["httpGet"]["port"]
                number = next(p["containerPort"] for p in c["ports"] if port in (p["name"], p["containerPort"]))
                return http_status(f"http://127.0.0.1:{moved[number]}{pr['httpGet']['path']}") == 200
            command = [exe] + pr["exec"]["command"][1:]  # the image's /bin/<name> is BIN/<name> here
            return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode == 0

        for d, c, env, exe, proc in procs:
            name = d["metadata"]["name"]
            deadline = time.time() + 30
            while not probe(c, env, exe, "readinessProbe"):
                if proc.poll() is not None or time.time() > deadline:
                    failures.append(f"{name}: never ready (exit {proc.poll()}; {logs}/{name}.log)")
                    break
                time.sleep(0.5)
            else:
                live = probe(c, env, exe, "livenessProbe")
                print(f"{name}: readinessProbe ok, livenessProbe {'ok' if live else 'FAILED'}")
                if not live:
                    failures.append(f"{name}: livenessProbe failed")
        services = {c["name"]: moved[c["ports"][0]["containerPort"]] for _, c, _, _, _ in procs}
        if not failures and {"service-order", "service-notification"} <= set(services):
            smoke = subprocess.run(["bash", str(root / ".ci/nix-smoke"),
                                    f"http://127.0.0.1:{services['service-order']}",
                                    f"http://127.0.0.1:{services['service-notification']}"],
                                   env=dict(os.environ, SMOKE_TOKEN=token, SMOKE_TIMEOUT="60"))
            if smoke.returncode:
                failures.append("the smoke test failed")
    finally:
        for d, c, env, exe, proc in procs:
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
    print(f"kubernetes-pods: {len(procs)} containers run with their manifests' environment, {len(failures)} problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
