# Shared by the scripts in this folder. Source it; do not run it.
# shellcheck shell=bash
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/node_modules/.bin:${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
# The Foundry npm packages' `forge`, `cast` and `anvil` commands are Node wrappers that drop the
# tool's exit status (a failing `forge test` would exit 0): put the platform binaries they wrap
# first. Called again by a script once its set-up has installed them (a cold machine has none
# when this file is sourced).
foundry_first() {
  local arch tool bin
  case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64 | arm64) arch=arm64 ;; *) arch=none ;; esac
  for tool in anvil cast forge; do
    bin="$ROOT/node_modules/@foundry-rs/$tool-linux-$arch/bin"
    if [[ -d "$bin" && ":$PATH:" != *":$bin:"* ]]; then PATH="$bin:$PATH"; fi
  done
  export PATH
}
foundry_first

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The wasm-bindgen version Cargo.lock resolved; the CLI must match it exactly.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}
