# `arion up` (see README): Redis and the flake's own three images, each service waiting for a
# healthy Redis. `pkgs.project` is the flake's package set (nix/arion-pkgs.nix adds it); the
# ports are nix/settings.nix's.
{ pkgs, lib, ... }:
let
  inherit (import ./settings.nix { }) ports;
  # Published on the host's loopback only.
  loopback = port: "127.0.0.1:${toString port}:${toString port}";
  flakeImage = name: {
    # arion would build its own image; run the flake's instead (arion issue #169).
    build.image = lib.mkForce pkgs.project."image-${name}";
    service.depends_on.redis.condition = "service_healthy";
    service.restart = "unless-stopped";
  };
  selfCheck = name: {
    test = [ "CMD" (lib.getExe pkgs.project.${name}) "healthcheck" ];
    interval = "5s";
    timeout = "3s";
    retries = 5;
  };
in
{
  project.name = "celery-fleet";
  docker-compose.volumes.redis-data = { };

  services = {
    redis.service = {
      command = [ "${pkgs.redis}/bin/redis-server" "--bind" "0.0.0.0" "--protected-mode" "no" "--appendonly" "yes" "--dir" "/data" ];
      volumes = [ "redis-data:/data" ];
      healthcheck = {
        test = [ "CMD" "${pkgs.redis}/bin/redis-cli" "ping" ];
        interval = "2s";
        timeout = "2s";
        retries = 15;
      };
    };

    worker = lib.mkMerge [
      (flakeImage "worker")
      {
        # Metrics and /healthz, published on the host's loopback only.
        service.ports = [ (loopback ports.workerMetrics) ];
        service.healthcheck = selfCheck "worker";
      }
    ];

    service-order = lib.mkMerge [
      (flakeImage "service-order")
      {
        # Published on the host's loopback only: the API runs without tokens here.
        service.ports = [ (loopback ports.order) ];
        service.environment.API_PUBLIC = "true";
        service.healthcheck = selfCheck "service-order";
      }
    ];

    service-notification = lib.mkMerge [
      (flakeImage "service-notification")
      {
        # Published on the host's loopback only: the API runs without tokens here.
        service.ports = [ (loopback ports.notification) ];
        service.environment.API_PUBLIC = "true";
        service.healthcheck = selfCheck "service-notification";
      }
    ];
  };
}
