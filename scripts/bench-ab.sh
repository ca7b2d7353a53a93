#!/usr/bin/env bash
# A/B of two server binaries under the relay load generator, alternating A and B so that
# both see the same machine: PAIRS (default 5) pairs of saturate runs, then PAIRS pairs of
# paced runs (10,000 msg/s), each `--targets server --synchronous normal`, 1,000 users,
# 10 s. Prints every run and, per mode, the median of B ÷ A (msg/s for saturate, delivery
# p99 for paced). Builds nothing.
#
# Usage: A=path/to/securechat B=path/to/other-securechat scripts/bench-ab.sh
# Environment: A, B (server binaries), LOADGEN_BIN (target/release/securechat-loadgen),
# PAIRS (5), MODES ("saturate paced"), OUT_DIR (a new temp dir), EXTRA_ARGS.
set -euo pipefail

A=${A:?A=server binary}
B=${B:?B=server binary}
LOADGEN_BIN=${LOADGEN_BIN:-target/release/securechat-loadgen}
PAIRS=${PAIRS:-5}
MODES=${MODES:-saturate paced}
OUT_DIR=${OUT_DIR:-$(mktemp -d -t bench-ab.XXXXXX)}
EXTRA_ARGS=${EXTRA_ARGS:-}
mkdir -p "$OUT_DIR"

value() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -1; }

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# run MODE WHICH BIN N: one loadgen run; prints "msgs p99 max errors".
run() {
  local log="$OUT_DIR/$1-$2-$4.txt" extra=()
  [[ $1 == paced ]] && extra=(--rate 10000)
  # shellcheck disable=SC2086
  "$LOADGEN_BIN" relay --server-bin "$3" --users 1000 --mode "$1" "${extra[@]}" --seconds 10 \
    --targets server --synchronous normal $EXTRA_ARGS >"$log" 2>&1 || { echo "nan nan nan failed"; return; }
  local line
  line=$(grep '^RESULT ' "$log" | tail -1)
  echo "$(value server_msgs_per_sec "$line") $(value server_p99_ms "$line") $(value server_max_ms "$line") $(value server_errors "$line")"
}

echo "A=$A B=$B, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), outputs in $OUT_DIR"
for mode in $MODES; do
  ratios=()
  printf '\n%s (server only, synchronous normal)\n%4s %12s %9s %9s %6s | %12s %9s %9s %6s | %s\n' \
    "$mode" pair "A msg/s" "A p99" "A max" "A err" "B msg/s" "B p99" "B max" "B err" "B/A"
  for n in $(seq 1 "$PAIRS"); do
    # Alternate which binary goes first, so neither always runs on the warmer machine.
    if ((n % 2)); then
      read -r am ap ax ae <<<"$(run "$mode" A "$A" "$n")"
      read -r bm bp bx be <<<"$(run "$mode" B "$B" "$n")"
    else
      read -r bm bp bx be <<<"$(run "$mode" B "$B" "$n")"
      read -r am ap ax ae <<<"$(run "$mode" A "$A" "$n")"
    fi
    if [[ $mode == saturate ]]; then
      r=$(awk -v a="$am" -v b="$bm" 'BEGIN { if (a > 0) printf "%.3f", b / a; else print "nan" }')
    else
      r=$(awk -v a="$ap" -v b="$bp" 'BEGIN { if (a > 0) printf "%.3f", b / a; else print "nan" }')
    fi
    ratios+=("$r")
    printf '%4s %12s %9s %9s %6s | %12s %9s %9s %6s | %s\n' "$n" "$am" "$ap" "$ax" "$ae" "$bm" "$bp" "$bx" "$be" "$r"
  done
  what=$([[ $mode == saturate ]] && echo "msg/s" || echo "delivery p99")
  echo "median B/A of $what over $PAIRS pairs: $(printf '%s\n' "${ratios[@]}" | grep -v nan | median)"
done
