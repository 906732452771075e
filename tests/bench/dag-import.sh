#!/usr/bin/env bash
# Import + CAR throughput and peak memory: `estuary add` against ipfs-unixfs-importer + @ipld/car
# in Node, on the same input files, in one run. Each figure is the median of three runs, each
# after `sync`. The CAR goes to /dev/null (the engines' own speed) and to a file on disk (end to
# end). Prints a Markdown table for docs/benchmarks.md.
#   tests/bench/dag-import.sh [SIZES_MIB...]     (default: 100 1024)
# Needs /usr/bin/time (Debian package `time`) and bc.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
sizes=("$@")
[[ ${#sizes[@]} -gt 0 ]] || sizes=(100 1024)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --quiet --profile bench-cli -p estuary-cli
estuary="$root/target/bench-cli/estuary"

# median of three runs of a command → "seconds max_rss_kib root"
measure() {
  local runs=()
  for _ in 1 2 3; do
    sync
    /usr/bin/time -f '%e %M' -o "$work/time" "$@" > "$work/out" 2>/dev/null
    local r
    r=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["root"])' "$work/out")
    runs+=("$(cat "$work/time") $r")
  done
  printf '%s\n' "${runs[@]}" | sort -n | sed -n 2p
}

row() { # size bytes impl target secs rss root
  printf '| %s MiB | %s | %s | %s | %.0f | %.1f |\n' "$1" "$3" "$4" "$5" \
    "$(echo "$2 / 1000000 / $5" | bc -l)" "$(echo "$6 / 1024" | bc -l)"
}

echo "| input | implementation | CAR to | seconds | MB/s | peak RSS (MiB) |"
echo "|---|---|---|---|---|---|"
for mib in "${sizes[@]}"; do
  file="$work/input-$mib"
  head -c "$((mib * 1024 * 1024))" /dev/urandom > "$file"
  bytes=$((mib * 1024 * 1024))
  for target in /dev/null "$work/out.car"; do
    label=$([[ $target == /dev/null ]] && echo /dev/null || echo "a file")
    read -r secs rss rroot < <(measure "$estuary" add "$file" --car "$target" --json)
    row "$mib" "$bytes" "estuary add --car" "$label" "$secs" "$rss"
    read -r secs rss jroot < <(measure node tests/bench/js-import.mjs "$file" "$target")
    row "$mib" "$bytes" "ipfs-unixfs-importer + @ipld/car (Node $(node --version))" "$label" "$secs" "$rss"
    [[ "$rroot" == "$jroot" ]] || { echo "roots differ for $mib MiB: $rroot $jroot" >&2; exit 1; }
    rm -f "$work/out.car"
  done
  rm -f "$file"
done
