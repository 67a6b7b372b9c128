# `nix run`: Redis (services-flake) plus the worker and both services, each started only once
# Redis is healthy; the services are ready when their /readyz answers, the worker when it
# answers `worker healthcheck`. Environment in one place.
{ services-flake, binaries }:
let
  ports = { redis = 6379; order = 8080; notification = 8081; };
  environment = {
    REDIS_URL = "redis://127.0.0.1:${toString ports.redis}/0";
    CELERY_QUEUE = "celery";
    RUST_LOG = "info";
    ORDER_BIND = "127.0.0.1:${toString ports.order}";
    NOTIFICATION_BIND = "127.0.0.1:${toString ports.notification}";
    WORKER_NAME = "worker@%h";
    # The worker's /metrics and /healthz (the services serve /metrics on their own ports).
    WORKER_METRICS_BIND = "127.0.0.1:9808";
  };
  afterRedis = { depends_on.redis.condition = "process_healthy"; };
  ready = port: {
    readiness_probe.http_get = {
      host = "127.0.0.1";
      inherit port;
      path = "/readyz";
    };
  };
in
{
  imports = [ services-flake.processComposeModules.default ];

  services.redis.redis = {
    enable = true;
    port = ports.redis;
    extraConfig = "appendonly yes";
  };

  settings.processes = {
    worker = afterRedis // {
      command = "${binaries.worker}/bin/worker";
      inherit environment;
      # Ready once its node answers a remote-control ping (what the image's HEALTHCHECK runs).
      readiness_probe.exec.command = "${binaries.worker}/bin/worker healthcheck";
      availability.restart = "on_failure";
    };
    service-order = afterRedis // ready ports.order // {
      command = "${binaries.service-order}/bin/service-order";
      inherit environment;
      availability.restart = "on_failure";
    };
    service-notification = afterRedis // ready ports.notification // {
      command = "${binaries.service-notification}/bin/service-notification";
      inherit environment;
      availability.restart = "on_failure";
    };
  };
}
