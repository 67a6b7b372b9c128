# A single Redis for a DEVELOPMENT cluster only, NOT for production: no password, no replica,
# no persistence (an emptyDir). Production points the Secret's redis-url at a managed Redis or a
# Sentinel set (docs/kubernetes.md). Pure Nix (builtins only): a list of two manifests.
{ namespace ? null
, image ? "docker.io/library/redis:7.4"
, port ? (import ./settings.nix { }).ports.redis
}:
let
  labels = {
    "app.kubernetes.io/name" = "redis";
    "app.kubernetes.io/component" = "broker";
    "app.kubernetes.io/part-of" = "celery-fleet";
  };
  metadata = {
    name = "redis";
    inherit labels;
    annotations."celery-fleet/purpose" = "development only, not for production";
  } // (if namespace == null then { } else { inherit namespace; });
in
[
  {
    apiVersion = "apps/v1";
    kind = "Deployment";
    inherit metadata;
    spec = {
      replicas = 1;
      strategy.type = "Recreate";
      selector.matchLabels = labels;
      template = {
        metadata.labels = labels;
        spec = {
          automountServiceAccountToken = false;
          enableServiceLinks = false;
          # The image's redis user; /data is an emptyDir it owns.
          securityContext = {
            runAsNonRoot = true;
            runAsUser = 999;
            runAsGroup = 999;
            fsGroup = 999;
            seccompProfile.type = "RuntimeDefault";
          };
          containers = [{
            name = "redis";
            inherit image;
            # noeviction: every process of the fleet refuses a Redis that may evict keys.
            args = [ "redis-server" "--port" (toString port) "--save" "" "--appendonly" "no" "--maxmemory-policy" "noeviction" ];
            ports = [{ name = "redis"; containerPort = port; protocol = "TCP"; }];
            readinessProbe = { exec.command = [ "redis-cli" "-p" (toString port) "ping" ]; periodSeconds = 5; };
            livenessProbe = { tcpSocket.port = "redis"; periodSeconds = 10; };
            resources = {
              requests = { cpu = "100m"; memory = "64Mi"; };
              limits = { cpu = "1"; memory = "512Mi"; };
            };
            securityContext = {
              allowPrivilegeEscalation = false;
              readOnlyRootFilesystem = true;
              capabilities.drop = [ "ALL" ];
            };
            volumeMounts = [{ name = "data"; mountPath = "/data"; }];
          }];
          volumes = [{ name = "data"; emptyDir = { }; }];
        };
      };
    };
  }
  {
    apiVersion = "v1";
    kind = "Service";
    inherit metadata;
    spec = {
      selector = labels;
      ports = [{ name = "redis"; inherit port; targetPort = "redis"; protocol = "TCP"; }];
    };
  }
]
