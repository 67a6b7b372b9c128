# One layered OCI image per service: the binary and what it links, a non-root user, the binary
# as entrypoint, defaults for a container network where Redis is the host `redis`.
{ pkgs, lib, binaries }:
let
  redisEnv = [ "REDIS_URL=redis://redis:6379/0" "RUST_LOG=info" ];

  # CA certificates: rediss:// (TLS) for every service, https webhooks for the worker.
  image = { name, env, port ? null, healthcheck ? false }:
    pkgs.dockerTools.buildLayeredImage {
      inherit name;
      contents = [ pkgs.dockerTools.caCertificates ];
      tag = "latest";
      config = {
        Entrypoint = [ (lib.getExe binaries.${name}) ];
        User = "65534:65534";
        Env = redisEnv ++ env;
      } // lib.optionalAttrs (port != null) {
        ExposedPorts."${toString port}/tcp" = { };
      } // lib.optionalAttrs healthcheck {
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
in
rec {
  image-worker = image {
    name = "worker";
    # %h is the container's host name: each replica gets its own node name, which its
    # healthcheck pings.
    env = [ "WORKER_CONCURRENCY=8" "WORKER_NAME=worker@%h" "WORKER_METRICS_BIND=0.0.0.0:9808" ];
    port = 9808;
    healthcheck = true;
  };
  image-service-order = image {
    name = "service-order";
    env = [ "ORDER_BIND=0.0.0.0:8080" ];
    port = 8080;
    healthcheck = true;
  };
  image-service-notification = image {
    name = "service-notification";
    env = [ "NOTIFICATION_BIND=0.0.0.0:8081" ];
    port = 8081;
    healthcheck = true;
  };
  images = pkgs.linkFarm "images" [
    { name = "worker.tar.gz"; path = image-worker; }
    { name = "service-order.tar.gz"; path = image-service-order; }
    { name = "service-notification.tar.gz"; path = image-service-notification; }
  ];
}
