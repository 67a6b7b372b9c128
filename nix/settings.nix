# The fleet's settings, the one home of what `nix run` (nix/process-compose.nix), the images
# (nix/images.nix) and the Kubernetes manifests (nix/kubernetes.nix) share: ports, each
# process's environment, probes, shutdown grace, worker pools and task routes. Pure Nix
# (builtins only): CI evaluates it with nix-instantiate, without nixpkgs.
# Arguments describe another fleet: `import ./settings.nix { routes = ...; pools = ...; }`.
{ queue ? "celery"
  # TASK_ROUTES, first match wins: [ { pattern = "send_notification"; queue = "notifications"; } ]
  # (a task name or a glob with `*`). Empty: every task goes to `queue`.
, routes ? [ ]
  # Worker pools: each consumes its `queues` (WORKER_QUEUES, Celery's -Q). `nix run` starts one
  # process per pool; Kubernetes gets a Deployment and a KEDA ScaledObject per pool.
, pools ? [{ name = "worker"; queues = [ queue ]; }]
}:
let
  join = builtins.concatStringsSep ",";
  hostPort = host: port: "${host}:${toString port}";
in
rec {
  inherit queue routes pools;
  ports = { redis = 6379; order = 8080; notification = 8081; workerMetrics = 9808; };

  # On SIGTERM a worker lets running tasks finish for this long (WORKER_SHUTDOWN_TIMEOUT_SECS),
  # a service its requests in flight (SHUTDOWN_TIMEOUT_SECS); whoever stops them waits longer.
  shutdownSecs = { worker = 30; service = 10; };
  # How long a supervisor waits after SIGTERM before it kills ("worker" or "service").
  killAfterSecs = kind: shutdownSecs.${kind} + 15;

  # The HTTP services: port, the variable naming their listen address, probe paths.
  services = {
    service-order = { port = ports.order; bindVar = "ORDER_BIND"; };
    service-notification = { port = ports.notification; bindVar = "NOTIFICATION_BIND"; };
  };
  paths = {
    alive = "/healthz"; # the process answers
    ready = "/readyz"; # ... and its Redis answers
    workerHealth = "/healthz"; # on the worker's metrics port: its Redis answers
  };

  # What every process reads; `redisUrl` is null where the URL comes from elsewhere (a Secret).
  common = { redisUrl ? null }:
    { CELERY_QUEUE = queue; RUST_LOG = "info"; }
    // (if redisUrl == null then { } else { REDIS_URL = redisUrl; })
    // (if routes == [ ] then { } else {
      TASK_ROUTES = join (map (r: "${r.pattern}=${r.queue}") routes);
    });

  # A service's own variables; `listen` is the address its listener binds.
  serviceEnv = { listen }: name: {
    ${services.${name}.bindVar} = hostPort listen services.${name}.port;
    SHUTDOWN_TIMEOUT_SECS = toString shutdownSecs.service;
  };

  # A pool's worker, serving /metrics and /healthz on `listen`:`metricsPort`.
  workerEnv = { listen, metricsPort }: pool: {
    WORKER_NAME = "${pool.name}@%h";
    WORKER_METRICS_BIND = hostPort listen metricsPort;
    WORKER_SHUTDOWN_TIMEOUT_SECS = toString shutdownSecs.worker;
  } // (if pool.queues == [ queue ] then { } else { WORKER_QUEUES = join pool.queues; });

}
