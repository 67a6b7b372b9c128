# `nix run`: Redis (services-flake) plus one worker per pool and both services, each started
# only once Redis is healthy; the services are ready when their /readyz answers, a worker when
# it answers `worker healthcheck`. Ports, environment and pools come from nix/settings.nix.
{ services-flake, binaries }:
let
  settings = import ./settings.nix { };
  inherit (settings) ports;
  listen = "127.0.0.1";
  common = settings.common { redisUrl = "redis://${listen}:${toString ports.redis}/0"; };
  afterRedis = { depends_on.redis.condition = "process_healthy"; };
  # SIGKILL only after the process's own grace period (process-compose waits 10 s by default).
  stop = kind: {
    availability.restart = "on_failure";
    shutdown.timeout_seconds = settings.killAfterSecs kind;
  };

  service = name: {
    inherit name;
    value = afterRedis // stop "service" // {
      command = "${binaries.${name}}/bin/${name}";
      environment = common // settings.serviceEnv { inherit listen; } name;
      readiness_probe.http_get = {
        host = listen;
        port = settings.services.${name}.port;
        path = settings.paths.ready;
      };
    };
  };

  # Pool i serves /metrics and /healthz on ports.workerMetrics + i.
  worker = i:
    let
      pool = builtins.elemAt settings.pools i;
    in
    {
      inherit (pool) name;
      value = afterRedis // stop "worker" // {
        command = "${binaries.worker}/bin/worker";
        environment = common // settings.workerEnv
          { inherit listen; metricsPort = ports.workerMetrics + i; }
          pool;
        # Ready once its node answers a remote-control ping (what the image's HEALTHCHECK runs).
        readiness_probe.exec.command = "${binaries.worker}/bin/worker healthcheck";
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

  settings.processes = builtins.listToAttrs (
    map service (builtins.attrNames settings.services)
    ++ builtins.genList worker (builtins.length settings.pools)
  );
}
