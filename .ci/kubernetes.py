#!/usr/bin/env python3
# What the Kubernetes schemas cannot see in the generated manifests (nix/kubernetes.nix), with
# the standard library only (also run by the flake's `kubernetes` check):
#   - KEDA ScaledObjects: the structure of KEDA's CRD (keda.sh/v1alpha1: scaleTargetRef.name,
#     triggers[].type/metadata as strings) and the Redis list scaler's metadata (listName,
#     listLength, an address, *FromEnv variables present in the target's containers);
#   - cross-references: Service selectors and targetPorts, probe ports, one ScaledObject per
#     worker Deployment with a trigger per queue it consumes (as `WORKER queues` answers with
#     the Deployment's environment: the fleet's own code, not a copy of its rules), grace
#     periods over the processes' own shutdown timeouts, probes, limits, non-root, read-only
#     root, no literal secrets.
# Usage: kubernetes.py split LIST DIR     a JSON list of manifests -> DIR/<kind>-<name>.json
#        kubernetes.py check DIR WORKER  exit 1 listing every problem (WORKER: the worker binary)
#        kubernetes.py native DIR        the files kubernetes-validate must check (non-KEDA)
#        kubernetes.py mutants DIR OUT   broken copies OUT/<name>/, each of which must fail
import copy
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

KEDA = "keda.sh/v1alpha1"
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SO_SPEC = {"scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
           "idleReplicaCount", "minReplicaCount", "maxReplicaCount", "advanced", "fallback", "triggers"}
TRIGGER = {"type", "name", "metadata", "authenticationRef", "metricType", "useCachedMetrics"}
REDIS_META = {"address", "addressFromEnv", "host", "hostFromEnv", "port", "portFromEnv",
              "usernameFromEnv", "passwordFromEnv", "listName", "listLength",
              "activationListLength", "enableTLS", "unsafeSsl", "databaseIndex"}
SECRET_VARS = {"REDIS_URL", "RESULT_BACKEND_URL", "API_TOKENS"}


def load(root):
    return sorted((str(p.relative_to(root)), json.loads(p.read_text()))
                  for p in Path(root).rglob("*.json"))


def pod(d):
    return d["spec"]["template"]["spec"]


def env_of(c):
    return {e["name"]: e for e in c.get("env", [])}


def is_int_str(v, low=0):
    return isinstance(v, str) and v.isdigit() and int(v) >= low


def check_deployment(d, err):
    n = d["metadata"]["name"]
    sel = d["spec"]["selector"]["matchLabels"]
    tl = d["spec"]["template"]["metadata"].get("labels", {})
    if any(tl.get(k) != v for k, v in sel.items()):
        err(f"Deployment {n}: selector {sel} does not match its pod labels {tl}")
    p = pod(d)
    if p.get("securityContext", {}).get("runAsNonRoot") is not True:
        err(f"Deployment {n}: pod securityContext.runAsNonRoot is not true")
    grace = p.get("terminationGracePeriodSeconds", 30)
    for c in p["containers"]:
        cn = f"Deployment {n} container {c['name']}"
        names = {port.get("name") for port in c.get("ports", [])}
        nums = {port["containerPort"] for port in c.get("ports", [])}
        for kind in ("readinessProbe", "livenessProbe"):
            probe = c.get(kind)
            if not probe:
                err(f"{cn}: no {kind}")
                continue
            for action in ("httpGet", "tcpSocket"):
                port = probe.get(action, {}).get("port")
                if port is not None and port not in names and port not in nums:
                    err(f"{cn}: {kind} port {port!r} is none of its ports")
        res = c.get("resources", {})
        for part in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(res.get(part, {})):
                err(f"{cn}: resources.{part} needs cpu and memory")
        sc = c.get("securityContext", {})
        if sc.get("readOnlyRootFilesystem") is not True or sc.get("allowPrivilegeEscalation") is not False:
            err(f"{cn}: needs readOnlyRootFilesystem true and allowPrivilegeEscalation false")
        env = env_of(c)
        for var in SECRET_VARS | {k for k in env if "PASSWORD" in k}:
            if var in env and "value" in env[var]:
                err(f"{cn}: {var} has a literal value; it must come from a Secret")
        stop = sleep = 0
        for var in ("WORKER_SHUTDOWN_TIMEOUT_SECS", "SHUTDOWN_TIMEOUT_SECS"):
            if var in env:
                stop = int(env[var]["value"])
        sleep = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        if grace <= stop + sleep:
            err(f"{cn}: terminationGracePeriodSeconds {grace} <= shutdown {stop} s + preStop {sleep} s")


def check_service(s, deployments, err):
    n = s["metadata"]["name"]
    sel = s["spec"].get("selector", {})
    targets = [d for d in deployments.values()
               if sel and all(pod_labels(d).get(k) == v for k, v in sel.items())]
    if not targets:
        err(f"Service {n}: selector {sel} matches no Deployment's pods")
    for port in s["spec"]["ports"]:
        tp = port.get("targetPort", port["port"])
        for d in targets:
            names = {(p.get("name"), p["containerPort"]) for c in pod(d)["containers"] for p in c.get("ports", [])}
            if not any(tp in pair for pair in names):
                err(f"Service {n}: targetPort {tp!r} is no port of Deployment {d['metadata']['name']}")


def pod_labels(d):
    return d["spec"]["template"]["metadata"].get("labels", {})


def check_scaled_object(so, deployments, err):
    n = so["metadata"].get("name", "?")
    spec = so.get("spec")
    if not isinstance(spec, dict):
        return err(f"ScaledObject {n}: no spec")
    for k in set(spec) - SO_SPEC:
        err(f"ScaledObject {n}: unknown spec field {k!r}")
    ref = spec.get("scaleTargetRef")
    if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
        return err(f"ScaledObject {n}: spec.scaleTargetRef.name (a string) is required")
    if ref.get("kind", "Deployment") != "Deployment" or ref["name"] not in deployments:
        return err(f"ScaledObject {n}: target {ref} is no Deployment of this set")
    for k in ("pollingInterval", "cooldownPeriod", "minReplicaCount", "maxReplicaCount"):
        if k in spec and (not isinstance(spec[k], int) or isinstance(spec[k], bool) or spec[k] < 0):
            err(f"ScaledObject {n}: {k} must be a non-negative integer")
    if spec.get("minReplicaCount", 0) > spec.get("maxReplicaCount", 100):
        err(f"ScaledObject {n}: minReplicaCount over maxReplicaCount")
    triggers = spec.get("triggers")
    if not isinstance(triggers, list) or not triggers:
        return err(f"ScaledObject {n}: spec.triggers must be a non-empty list")
    target_env = {}
    for c in pod(deployments[ref["name"]])["containers"]:
        target_env.update(env_of(c))
    for i, t in enumerate(triggers):
        tn = f"ScaledObject {n} trigger {i}"
        for k in set(t) - TRIGGER:
            err(f"{tn}: unknown field {k!r}")
        meta = t.get("metadata")
        if t.get("type") != "redis" or not isinstance(meta, dict):
            err(f"{tn}: type must be 'redis' with a metadata map")
            continue
        for k, v in meta.items():
            if not isinstance(v, str):
                err(f"{tn}: metadata.{k} must be a string (KEDA's CRD)")
        for k in set(meta) - REDIS_META:
            err(f"{tn}: {k!r} is no parameter of KEDA's Redis list scaler")
        if not meta.get("listName"):
            err(f"{tn}: listName is required")
        if not is_int_str(meta.get("listLength"), 1):
            err(f"{tn}: listLength must be a positive integer string")
        if not ({"address", "addressFromEnv"} & set(meta) or {"host", "hostFromEnv"} & set(meta)):
            err(f"{tn}: needs address, addressFromEnv, host or hostFromEnv")
        for k in ("databaseIndex", "activationListLength"):
            if k in meta and not is_int_str(meta[k]):
                err(f"{tn}: {k} must be an integer string")
        for k in ("enableTLS", "unsafeSsl"):
            if k in meta and meta[k] not in ("true", "false"):
                err(f"{tn}: {k} must be 'true' or 'false'")
        for k, v in meta.items():
            if k.endswith("FromEnv") and v not in target_env:
                err(f"{tn}: {k} names {v}, which the target's containers do not set")
    return ref["name"]


def queues_of(d, worker_bin):
    """The queues the worker of Deployment `d` consumes, as `worker queues` answers with the
    literal values of its containers' environment (a Secret reference left unset), run from an
    empty folder (no .env). Raises ValueError when the worker refuses that environment."""
    env = {}
    for c in pod(d)["containers"]:
        env.update({k: e["value"] for k, e in env_of(c).items() if "value" in e})
    with tempfile.TemporaryDirectory() as cwd:
        run = subprocess.run([worker_bin, "queues"], env=env, cwd=cwd, capture_output=True,
                             text=True, timeout=30)
    if run.returncode:
        raise ValueError(f"worker queues exited {run.returncode}: {run.stderr.strip()}")
    return set(json.loads(run.stdout)["queues"])


def check(root, worker_bin):
    worker_bin = str(Path(worker_bin).resolve())
    problems = []
    err = problems.append
    docs = load(root)
    if not docs:
        err(f"no manifest under {root}")
    deployments = {m["metadata"]["name"]: m for _, m in docs if m.get("kind") == "Deployment"}
    scaled = {}
    for path, m in docs:
        name = m.get("metadata", {}).get("name", "")
        if not (m.get("apiVersion") and m.get("kind") and NAME.match(name) and len(name) <= 63):
            err(f"{path}: needs apiVersion, kind and a DNS-1123 label as metadata.name")
            continue
        try:
            if m["kind"] == "Deployment":
                check_deployment(m, err)
            elif m["kind"] == "Service":
                check_service(m, deployments, err)
            elif m["apiVersion"] == KEDA and m["kind"] == "ScaledObject":
                target = check_scaled_object(m, deployments, err)
                if target:
                    scaled[target] = {t["metadata"]["listName"] for t in m["spec"]["triggers"]
                                      if isinstance(t.get("metadata"), dict) and "listName" in t["metadata"]}
            elif m["apiVersion"].startswith("keda.sh/"):
                err(f"{path}: {m['kind']} is not checked here")
        except (KeyError, TypeError, ValueError) as e:
            err(f"{path}: malformed ({type(e).__name__}: {e})")
    for n, d in deployments.items():
        if pod_labels(d).get("app.kubernetes.io/component") == "worker":
            try:
                consumed = queues_of(d, worker_bin)
            except (ValueError, KeyError, TypeError, OSError, subprocess.SubprocessError) as e:
                err(f"Deployment {n}: no consumed queues from its environment: {e}")
                continue
            if n not in scaled:
                err(f"Deployment {n}: a worker without a ScaledObject")
            elif scaled[n] != consumed:
                err(f"Deployment {n}: consumes {sorted(consumed)}, scaled on {sorted(scaled[n])}")
    for p in problems:
        print("ERROR", p)
    print(f"kubernetes.py: {len(docs)} manifests, {len(problems)} problems")
    return 1 if problems else 0


def first(docs, kind, pred=lambda m: True):
    return next(m for _, m in docs if m["kind"] == kind and pred(m))


def worker(m):
    return pod_labels(m).get("app.kubernetes.io/component") == "worker"


def api(m):
    return pod_labels(m).get("app.kubernetes.io/component") == "api"


# name -> (who must catch it, change to the manifests)
MUTANTS = {
    "schema-port-string": ("kubernetes-validate", lambda d: first(d, "Service")["spec"]["ports"][0].update(port="http")),
    "schema-unknown-field": ("kubernetes-validate", lambda d: pod(first(d, "Deployment")).update(restartPolicyy="Always")),
    "keda-no-target": ("kubernetes.py", lambda d: first(d, "ScaledObject")["spec"].pop("scaleTargetRef")),
    "keda-list-length": ("kubernetes.py", lambda d: first(d, "ScaledObject")["spec"]["triggers"][0]["metadata"].update(listLength="many")),
    "keda-env-missing": ("kubernetes.py", lambda d: first(d, "ScaledObject")["spec"]["triggers"][0]["metadata"].update(addressFromEnv="NO_SUCH_VAR")),
    "keda-wrong-queue": ("kubernetes.py", lambda d: first(d, "ScaledObject")["spec"]["triggers"][0]["metadata"].update(listName="elsewhere")),
    "grace-too-short": ("kubernetes.py", lambda d: pod(first(d, "Deployment", worker)).update(terminationGracePeriodSeconds=20)),
    "service-target-port": ("kubernetes.py", lambda d: first(d, "Service")["spec"]["ports"][0].update(targetPort="nope")),
    "literal-secret": ("kubernetes.py", lambda d: pod(first(d, "Deployment", api))["containers"][0]["env"].append({"name": "API_TOKENS", "value": "x" * 20})),
    "no-liveness": ("kubernetes.py", lambda d: pod(first(d, "Deployment", api))["containers"][0].pop("livenessProbe")),
    # A queue listed twice: the worker refuses it (a rule only the worker's own code knows).
    "worker-queues-refused": ("kubernetes.py", lambda d: pod(first(d, "Deployment", worker))["containers"][0]["env"].append({"name": "WORKER_QUEUES", "value": "celery,celery"})),
}


def mutants(root, out):
    docs = load(root)
    for name, (_, change) in MUTANTS.items():
        broken = copy.deepcopy(docs)
        change(broken)
        target = Path(out) / name
        shutil.rmtree(target, ignore_errors=True)
        for path, m in broken:
            (target / path).parent.mkdir(parents=True, exist_ok=True)
            (target / path).write_text(json.dumps(m))
        print(name)
    return 0


def split(listing, out):
    for m in json.loads(Path(listing).read_text()):
        path = Path(out) / f"{m['kind'].lower()}-{m['metadata']['name']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(m, indent=2) + "\n")
    return 0


def native(root):
    for path, m in load(root):
        if not m.get("apiVersion", "").startswith("keda.sh/"):
            print(Path(root) / path)
    return 0


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    sys.exit({"split": split, "check": check, "native": native, "mutants": mutants}[cmd](*args))
