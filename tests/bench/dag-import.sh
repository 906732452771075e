#!/usr/bin/env bash
# Import + CAR throughput and peak memory: `estuary add` against ipfs-unixfs-importer + @ipld/car
# in Node, on the same files, in one run. Prints a Markdown table for docs/benchmarks.md.
#   tests/bench/dag-import.sh [SIZES_MIB...]     (default: 100 1024)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
sizes=("${@:-100 1024}")
[[ $# -gt 0 ]] || sizes=(100 1024)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --quiet --profile bench-cli -p estuary-cli
estuary="$root/target/bench-cli/estuary"

measure() { # command... → "seconds max_rss_kib"
  /usr/bin/time -f '%e %M' -o "$work/time" "$@" > "$work/out" 2>/dev/null
  cat "$work/time"
}

echo "| input | implementation | seconds | MB/s | peak RSS (MiB) | root |"
echo "|---|---|---|---|---|---|"
for mib in "${sizes[@]}"; do
  file="$work/input-$mib"
  head -c "$((mib * 1024 * 1024))" /dev/urandom > "$file"
  bytes=$((mib * 1024 * 1024))
  read -r secs rss < <(measure "$estuary" add "$file" --car "$work/rust.car" --json)
  rroot=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["root"])' "$work/out")
  printf '| %s MiB | estuary add --car | %s | %.0f | %.1f | %s |\n' "$mib" "$secs" \
    "$(echo "$bytes / 1000000 / $secs" | bc -l)" "$(echo "$rss / 1024" | bc -l)" "$rroot"
  read -r secs rss < <(measure node tests/bench/js-import.mjs "$file" "$work/js.car")
  jroot=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["root"])' "$work/out")
  printf '| %s MiB | ipfs-unixfs-importer + @ipld/car (Node %s) | %s | %.0f | %.1f | %s |\n' "$mib" \
    "$(node --version)" "$secs" "$(echo "$bytes / 1000000 / $secs" | bc -l)" "$(echo "$rss / 1024" | bc -l)" "$jroot"
  [[ "$rroot" == "$jroot" ]] || { echo "roots differ for $mib MiB" >&2; exit 1; }
  rm -f "$file"
done
