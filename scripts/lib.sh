# Shared by the scripts in this folder. Source it; do not run it.
# shellcheck shell=bash
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/node_modules/.bin:${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
# The Foundry npm packages' `forge`, `cast` and `anvil` commands are Node wrappers that drop the
# tool's exit status (a failing `forge test` would exit 0): put the platform binaries they wrap
# first.
case "$(uname -m)" in x86_64) foundry_arch=amd64 ;; aarch64 | arm64) foundry_arch=arm64 ;; *) foundry_arch=none ;; esac
for foundry_tool in anvil cast forge; do
  foundry_bin="$ROOT/node_modules/@foundry-rs/$foundry_tool-linux-$foundry_arch/bin"
  if [[ -d "$foundry_bin" ]]; then PATH="$foundry_bin:$PATH"; fi
done
export PATH

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The wasm-bindgen version Cargo.lock resolved; the CLI must match it exactly.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}
