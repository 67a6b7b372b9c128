# One layered OCI image per service: the binary (also linked as /bin/<name>, for exec probes)
# and what it links, a non-root user, the binary as entrypoint, defaults for a container network
# where Redis is the host `redis`. Ports and variables come from nix/settings.nix.
{ pkgs, lib, binaries }:
let
  settings = import ./settings.nix { };
  listen = "0.0.0.0";
  toEnv = lib.mapAttrsToList (name: value: "${name}=${value}");
  common = settings.common { redisUrl = "redis://redis:${toString settings.ports.redis}/0"; };

  # CA certificates: rediss:// (TLS) for every service, https webhooks for the worker.
  image = { name, env, port }:
    pkgs.dockerTools.buildLayeredImage {
      inherit name;
      contents = [ pkgs.dockerTools.caCertificates binaries.${name} ];
      tag = "latest";
      config = {
        Entrypoint = [ (lib.getExe binaries.${name}) ];
        User = "65534:65534";
        Env = toEnv (common // env);
        ExposedPorts."${toString port}/tcp" = { };
        # The image has no shell or curl: the binary checks itself (the services their own
        # /healthz, the worker a remote-control ping of its node, as `celery inspect ping -d`).
        Healthcheck = {
          Test = [ "CMD" (lib.getExe binaries.${name}) "healthcheck" ];
          Interval = 5000000000;
          Timeout = 3000000000;
          Retries = 3;
        };
      };
    };
  service = name: image {
    inherit name;
    env = settings.serviceEnv { inherit listen; } name;
    inherit (settings.services.${name}) port;
  };
in
rec {
  image-worker = image {
    name = "worker";
    # %h is the container's host name: each replica gets its own node name, which its
    # healthcheck pings. The default pool: one queue, CELERY_QUEUE.
    env = settings.workerEnv { inherit listen; metricsPort = settings.ports.workerMetrics; }
      (builtins.head settings.pools) // { WORKER_CONCURRENCY = "8"; };
    port = settings.ports.workerMetrics;
  };
  image-service-order = service "service-order";
  image-service-notification = service "service-notification";
  images = pkgs.linkFarm "images" [
    { name = "worker.tar.gz"; path = image-worker; }
    { name = "service-order.tar.gz"; path = image-service-order; }
    { name = "service-notification.tar.gz"; path = image-service-notification; }
  ];
}
