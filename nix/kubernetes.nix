# Kubernetes manifests for the fleet, from nix/settings.nix (the settings `nix run` uses): per
# worker pool a Deployment, a metrics Service and a KEDA ScaledObject on its queues' lengths; per
# HTTP service a Deployment and a Service. Pure Nix (builtins only): returns a list of manifests
# (attrsets); flake.nix writes them as the `kubernetes` package, CI evaluates this file with
# nix-instantiate and validates the JSON (.ci/kubernetes). See docs/kubernetes.md.
{ settings ? import ./settings.nix { }
, namespace ? null # null: none in the manifests (kubectl's -n, or the context's, applies)
, registry ? "" # prefix of the image names nix/images.nix builds, e.g. "ghcr.io/acme/"
, tag ? "latest" # the images' tag (nix/images.nix tags "latest")
, secretName ? "celery-fleet" # Secret with redis-url, redis-address, redis-password, api-tokens
, redisDatabase ? 0 # the db in redis-url, for the KEDA scaler
, redisTLS ? false # true when redis-url is rediss://
, serviceReplicas ? 2
, scaling ? { } # over { min = 1; max = 20; listLength = 50; pollingInterval = 15; cooldownPeriod = 300; }
}:
let
  scale = { min = 1; max = 20; listLength = 50; pollingInterval = 15; cooldownPeriod = 300; } // scaling;
  inherit (settings) ports paths;
  listen = "0.0.0.0";
  partOf = "celery-fleet";
  labels = name: component: {
    "app.kubernetes.io/name" = name;
    "app.kubernetes.io/component" = component;
    "app.kubernetes.io/part-of" = partOf;
  };
  meta = name: component: { inherit name; labels = labels name component; }
    // (if namespace == null then { } else { inherit namespace; });

  plain = env: map (name: { inherit name; value = env.${name}; }) (builtins.attrNames env);
  secret = name: key: optional: {
    inherit name;
    valueFrom.secretKeyRef = { name = secretName; inherit key optional; };
  };
  httpGet = path: port: { httpGet = { inherit path port; }; };

  container = { name, image, env, port, portName, readiness, liveness, resources }: {
    inherit name env resources;
    image = "${registry}${image}:${tag}";
    imagePullPolicy = "IfNotPresent";
    ports = [{ name = portName; containerPort = port; protocol = "TCP"; }];
    readinessProbe = readiness // { periodSeconds = 5; timeoutSeconds = 3; failureThreshold = 3; };
    livenessProbe = liveness;
    securityContext = {
      allowPrivilegeEscalation = false;
      readOnlyRootFilesystem = true;
      runAsNonRoot = true;
      capabilities.drop = [ "ALL" ];
    };
  };

  # `stopping`: "worker" or "service", whose shutdown grace the pod gets (nix/settings.nix).
  deployment = { name, component, replicas ? null, stopping, containers }: {
    apiVersion = "apps/v1";
    kind = "Deployment";
    metadata = meta name component;
    spec = (if replicas == null then { } else { inherit replicas; }) // {
      selector.matchLabels = labels name component;
      template = {
        metadata.labels = labels name component;
        spec = {
          inherit containers;
          # Over the process's own grace, so SIGKILL never cuts it short.
          terminationGracePeriodSeconds = settings.killAfterSecs stopping;
          automountServiceAccountToken = false;
          # No REDIS_PORT=tcp://... and the like injected from Services' names.
          enableServiceLinks = false;
          securityContext = {
            runAsNonRoot = true;
            runAsUser = 65534;
            runAsGroup = 65534;
            seccompProfile.type = "RuntimeDefault";
          };
        };
      };
    };
  };

  # A ClusterIP Service in front of the pods of Deployment `target`.
  clusterService = { name, target ? name, component, portName, port }: {
    apiVersion = "v1";
    kind = "Service";
    metadata = meta name component;
    spec = {
      selector = labels target component;
      ports = [{ name = portName; inherit port; targetPort = portName; protocol = "TCP"; }];
    };
  };

  common = plain (settings.common { }) ++ [ (secret "REDIS_URL" "redis-url" false) ];

  httpService = name: [
    (deployment {
      inherit name;
      component = "api";
      stopping = "service";
      replicas = serviceReplicas;
      containers = [
        ((container {
          inherit name;
          image = name;
          env = common ++ plain (settings.serviceEnv { inherit listen; } name)
            ++ [ (secret "API_TOKENS" "api-tokens" false) ];
          inherit (settings.services.${name}) port;
          portName = "http";
          readiness = httpGet paths.ready "http";
          liveness = httpGet paths.alive "http" // { periodSeconds = 10; timeoutSeconds = 3; };
          resources = {
            requests = { cpu = "100m"; memory = "32Mi"; };
            limits = { cpu = "1"; memory = "128Mi"; };
          };
        }) // {
          # Endpoints drop the pod before it stops accepting (Kubernetes >= 1.30).
          lifecycle.preStop.sleep.seconds = 5;
        })
      ];
    })
    (clusterService {
      inherit name;
      component = "api";
      portName = "http";
      inherit (settings.services.${name}) port;
    })
  ];

  # KEDA reads the list lengths with the address and password in the worker's own environment.
  kedaEnv = [
    (secret "KEDA_REDIS_ADDRESS" "redis-address" false)
    (secret "KEDA_REDIS_PASSWORD" "redis-password" false)
  ];

  workerPool = pool: [
    (deployment {
      inherit (pool) name;
      component = "worker";
      stopping = "worker";
      # No replicas: KEDA's HPA owns the count (applying again does not reset it).
      containers = [
        (container {
          name = "worker";
          image = "worker";
          env = common ++ plain (settings.workerEnv { inherit listen; metricsPort = ports.workerMetrics; } pool)
            ++ kedaEnv;
          port = ports.workerMetrics;
          portName = "metrics";
          # Ready while its Redis answers; alive while its node answers a remote-control ping
          # (patient: a Redis outage alone should not restart every worker at once).
          readiness = httpGet paths.workerHealth "metrics";
          liveness = {
            exec.command = [ "/bin/worker" "healthcheck" ];
            periodSeconds = 30;
            timeoutSeconds = 10;
            failureThreshold = 4;
          };
          resources = {
            requests = { cpu = "250m"; memory = "64Mi"; };
            # WORKER_THREADS=1: one core is all a worker uses.
            limits = { cpu = "1"; memory = "256Mi"; };
          };
        })
      ];
    })
    (clusterService {
      name = "${pool.name}-metrics";
      target = pool.name;
      component = "worker";
      portName = "metrics";
      port = ports.workerMetrics;
    })
    {
      apiVersion = "keda.sh/v1alpha1";
      kind = "ScaledObject";
      metadata = meta pool.name "worker";
      spec = {
        scaleTargetRef = { apiVersion = "apps/v1"; kind = "Deployment"; inherit (pool) name; };
        minReplicaCount = scale.min;
        maxReplicaCount = scale.max;
        inherit (scale) pollingInterval cooldownPeriod;
        # One trigger per queue, on its main list only: Celery's priority lists
        # (<queue>\x06\x163, \x06\x166, \x06\x169) are not counted (docs/kubernetes.md).
        triggers = map
          (queue: {
            type = "redis";
            name = "queue-${queue}";
            metadata = {
              addressFromEnv = "KEDA_REDIS_ADDRESS";
              passwordFromEnv = "KEDA_REDIS_PASSWORD";
              listName = queue;
              listLength = toString scale.listLength;
              databaseIndex = toString redisDatabase;
              enableTLS = if redisTLS then "true" else "false";
            };
          })
          pool.queues;
      };
    }
  ];
in
builtins.concatLists (
  map workerPool settings.pools
  ++ map httpService (builtins.attrNames settings.services)
)
