# The Rust side of the flake: one crane dependency build, reused by the three binaries and by
# every check (clippy, fmt, taplo, audit, nextest with a real redis-server).
{ pkgs, lib, crane, advisory-db, root }:
let
  craneLib = crane.mkLib pkgs;

  # Rust sources and manifests (crane's filter), plus the Lua scripts embedded with include_str!.
  rustFile = path: type:
    craneLib.filterCargoSources path type || lib.hasSuffix ".lua" path;
  src = lib.cleanSourceWith {
    src = root;
    filter = rustFile;
    name = "source";
  };

  # The tests also read the Celery capture fixtures and check the documented variables.
  testSrc = lib.cleanSourceWith {
    src = root;
    name = "source";
    filter = path: type:
      rustFile path type
      || lib.hasInfix "/tests/fixtures" path
      || lib.hasSuffix "/docs/configuration.md" path
      || baseNameOf path == ".env.example";
  };

  commonArgs = {
    inherit src;
    pname = "celery-fleet";
    version = "0.1.0";
    strictDeps = true;
    buildInputs = lib.optionals pkgs.stdenv.isDarwin [ pkgs.libiconv ];
  };

  cargoArtifacts = craneLib.buildDepsOnly commonArgs;

  binary = name: craneLib.buildPackage (commonArgs // {
    inherit cargoArtifacts;
    pname = name;
    cargoExtraArgs = "--locked -p ${name}";
    # Tests run once, in the nextest check, where redis-server is available.
    doCheck = false;
    meta.mainProgram = name;
  });
in
{
  packages = lib.genAttrs [ "worker" "service-order" "service-notification" ] binary;

  checks = {
    clippy = craneLib.cargoClippy (commonArgs // {
      inherit cargoArtifacts;
      cargoClippyExtraArgs = "--all-targets -- --deny warnings";
    });

    rustfmt = craneLib.cargoFmt { inherit src; };

    taplo = craneLib.taploFmt {
      src = lib.sources.sourceFilesBySuffices src [ ".toml" ];
    };

    audit = craneLib.cargoAudit { inherit src advisory-db; };

    # The test harness starts its own redis-server on a free loopback port.
    nextest = craneLib.cargoNextest (commonArgs // {
      inherit cargoArtifacts;
      src = testSrc;
      nativeCheckInputs = [ pkgs.redis ];
      partitions = 1;
      partitionType = "count";
      __darwinAllowLocalNetworking = true;
    });
  };
}
