#!/usr/bin/env bash
# The one-pass pipeline (files → DAG → CAR → piece) against its bound, measured in one run.
# One pass does five SHA-256 passes per payload byte: one for the DAG, and four for the piece
# tree (its levels together hash about twice the Fr32-padded payload, in 64-byte inputs that each
# cost two SHA-256 blocks: the data and the padding). So on N cores the bound is
# N × (SHA-256 speed per core) ÷ 5. The per-core
# speed is `openssl speed -evp sha256 -bytes 16384` (SHA-NI where the CPU has it), measured here.
# Each figure is the median of three runs after `sync`.
#   tests/bench/pipeline.sh [MIB]     (default: 512)
# Needs /usr/bin/time (Debian package `time`), openssl and bc. Prints a Markdown table.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
mib=${1:-512}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --quiet --profile bench-cli -p estuary-cli
estuary="$root/target/bench-cli/estuary"
cores=$(nproc)

# openssl's 16 KiB column, in kB/s (1000 bytes) → MB/s.
sha=$(openssl speed -evp sha256 -bytes 16384 -seconds 3 2>/dev/null | awk '/^sha256/ {v=$NF} END {sub(/k$/, "", v); print v / 1000}')
bound=$(echo "$cores * $sha / 5" | bc -l)

file="$work/input"
head -c "$((mib * 1024 * 1024))" /dev/urandom > "$file"
bytes=$((mib * 1024 * 1024))

# median of three runs → "seconds cpu_percent max_rss_kib"
measure() {
  local runs=()
  for _ in 1 2 3; do
    sync
    /usr/bin/time -f '%e %P %M' -o "$work/time" "$@" > /dev/null 2>&1
    runs+=("$(sed 's/%//' "$work/time")")
  done
  printf '%s\n' "${runs[@]}" | sort -n | sed -n 2p
}

row() { # label secs cpu rss
  local mbs
  mbs=$(echo "$bytes / 1000000 / $2" | bc -l)
  printf '| %s | %.2f | %.0f | %.0f %% | %.2f | %.1f |\n' "$1" "$2" "$mbs" \
    "$(echo "100 * $mbs / $bound" | bc -l)" "$(echo "$3 / 100" | bc -l)" "$(echo "$4 / 1024" | bc -l)"
}

echo "SHA-256 per core: $(printf '%.0f' "$sha") MB/s; bound on $cores cores (× $cores ÷ 5): $(printf '%.0f' "$bound") MB/s; input: $mib MiB random"
echo
echo "| command | seconds | MB/s | of the bound | cores used | peak RSS (MiB) |"
echo "|---|---|---|---|---|---|"
read -r s c m < <(measure "$estuary" add "$file" --car /dev/null --json)
row "\`estuary add --car /dev/null\` (DAG + CAR + piece)" "$s" "$c" "$m"
read -r s c m < <(measure "$estuary" add "$file" --json)
row "\`estuary add\` (DAG only)" "$s" "$c" "$m"
read -r s c m < <(measure "$estuary" piece "$file")
row "\`estuary piece\` (piece only)" "$s" "$c" "$m"
