{
  description = "Rust microservices that talk through Celery protocol v2 task queues on Redis";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixpkgs-unstable";
    flake-parts = {
      url = "github:hercules-ci/flake-parts";
      inputs.nixpkgs-lib.follows = "nixpkgs";
    };
    crane.url = "github:ipetkov/crane";
    process-compose-flake.url = "github:Platonic-Systems/process-compose-flake";
    services-flake.url = "github:juspay/services-flake";
    advisory-db = {
      url = "github:rustsec/advisory-db";
      flake = false;
    };
  };

  outputs = inputs@{ flake-parts, ... }:
    flake-parts.lib.mkFlake { inherit inputs; } {
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      imports = [ inputs.process-compose-flake.flakeModule ];

      perSystem = { self', pkgs, lib, ... }:
        let
          # crane: one dependency build shared by every package and check (nix/rust.nix).
          rust = import ./nix/rust.nix {
            inherit pkgs lib;
            inherit (inputs) crane advisory-db;
            root = ./.;
          };
          images = import ./nix/images.nix { inherit pkgs lib; binaries = rust.packages; };
          # Kubernetes manifests (pure Nix, nix/kubernetes.nix), one JSON file each; the
          # development-only Redis under dev/ (docs/kubernetes.md).
          manifestFiles = dir: map (m: rec {
            name = "${dir}${lib.toLower m.kind}-${m.metadata.name}.json";
            path = pkgs.writeText (baseNameOf name) (builtins.toJSON m);
          });
          kubernetes = pkgs.linkFarm "kubernetes" (
            manifestFiles "" (import ./nix/kubernetes.nix { })
            ++ manifestFiles "dev/" (import ./nix/kubernetes-dev-redis.nix { })
          );
          nixFiles = lib.cleanSourceWith {
            src = ./.;
            name = "nix-files";
            filter = path: type: type == "directory" || lib.hasSuffix ".nix" path;
          };
        in
        {
          packages = rust.packages // images // {
            inherit kubernetes;
            default = pkgs.symlinkJoin {
              name = "celery-fleet";
              paths = builtins.attrValues rust.packages;
            };
          };

          checks = rust.checks // rust.packages // {
            nix-fmt = pkgs.runCommand "nix-fmt" { nativeBuildInputs = [ pkgs.nixpkgs-fmt ]; } ''
              nixpkgs-fmt --check ${nixFiles}
              touch $out
            '';
            deadnix = pkgs.runCommand "deadnix" { nativeBuildInputs = [ pkgs.deadnix ]; } ''
              deadnix --fail ${nixFiles}
              touch $out
            '';
            # KEDA's ScaledObject and the cross-references (the schemas: .ci/kubernetes).
            # A worker's queues are asked of the worker binary (`worker queues`).
            kubernetes = pkgs.runCommand "kubernetes-manifests" { nativeBuildInputs = [ pkgs.python3 ]; } ''
              python3 ${./.ci/kubernetes.py} check ${kubernetes} ${lib.getExe rust.packages.worker}
              touch $out
            '';
          };

          # `nix run`: Redis, the worker and both services under process-compose.
          process-compose.stack = import ./nix/process-compose.nix {
            inherit (inputs) services-flake;
            binaries = self'.packages;
          };
          apps = {
            default = {
              type = "app";
              program = lib.getExe self'.packages.stack;
            };
            # `nix run .#arion -- up`: the flake's images in Docker (run from the repo root).
            arion = {
              type = "app";
              program = lib.getExe (pkgs.writeShellApplication {
                name = "arion-stack";
                runtimeInputs = [ pkgs.arion ];
                text = ''
                  exec arion --file nix/arion-compose.nix --pkgs nix/arion-pkgs.nix "$@"
                '';
              });
            };
          };

          devShells.default = pkgs.mkShell {
            inputsFrom = [ rust.packages.worker ];
            packages = [
              pkgs.cargo
              pkgs.rustc
              pkgs.clippy
              pkgs.rustfmt
              pkgs.rust-analyzer
              pkgs.cargo-nextest
              pkgs.redis
              pkgs.process-compose
              pkgs.arion
              pkgs.nixpkgs-fmt
              pkgs.deadnix
              pkgs.taplo
              # The interop suite pins exact Celery versions (5.4 and 5.7) in venvs made with pip;
              # see worker/tests/interop/requirements-*.txt.
              pkgs.python3
            ];
          };

          formatter = pkgs.nixpkgs-fmt;
        };
    };
}
