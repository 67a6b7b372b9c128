# The package set arion evaluates nix/arion-compose.nix with: the flake's nixpkgs, plus the
# flake's own packages as `project` (so the compose file runs the images `nix build` makes).
let
  flake = builtins.getFlake (toString ./..);
  system = builtins.currentSystem;
in
flake.inputs.nixpkgs.legacyPackages.${system} // { project = flake.packages.${system}; }
