#!/usr/bin/env bash
# The relay's paced tail under both synchronous modes, against the disk's fsync floor.
#
# Runs RUNS (default 10) consecutive paced runs of
#   securechat-loadgen relay --users 1000 --mode paced --rate 10000 --seconds 10 --targets server
# with --synchronous normal, then RUNS with --synchronous full, and prints one table per
# mode (run, delivery p50 / p99 / max, the fsync probe's p50 / p99 / max, and the
# scheduling probe's p99 / max / longest stall and the hypervisor's steal time, all measured
# in the same run) and how many runs met the targets:
#   normal: p99 <= 5 ms and max <= 50 ms      full: p99 <= 15 ms
# Builds nothing: expects target/release/securechat and target/release/securechat-loadgen
# (cargo build --release -p securechat -p securechat-loadgen). Run from the workspace root,
# on a quiet machine. Every run's full loadgen output is kept in $OUT_DIR (default: a new
# temp dir, printed at the end).
#
# Environment: RUNS (10), MODES ("normal full"), SERVER_BIN, LOADGEN_BIN, OUT_DIR,
# EXTRA_ARGS (added to every loadgen command).
set -euo pipefail

RUNS=${RUNS:-10}
MODES=${MODES:-normal full}
SERVER_BIN=${SERVER_BIN:-target/release/securechat}
LOADGEN_BIN=${LOADGEN_BIN:-target/release/securechat-loadgen}
OUT_DIR=${OUT_DIR:-$(mktemp -d -t paced-tail.XXXXXX)}
EXTRA_ARGS=${EXTRA_ARGS:-}

for bin in "$SERVER_BIN" "$LOADGEN_BIN"; do
  if [[ ! -x $bin ]]; then
    echo "missing $bin: cargo build --release -p securechat -p securechat-loadgen" >&2
    exit 2
  fi
done
mkdir -p "$OUT_DIR"

# value KEY LINE: the value of KEY=... in a RESULT line ("nan" if absent).
value() {
  local v
  v=$(tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p")
  echo "${v:-nan}"
}

# meets MODE P99 MAX: exit 0 if the run meets the mode's target.
meets() {
  case $1 in
    normal) awk -v p="$2" -v m="$3" 'BEGIN { exit !(p != "nan" && p <= 5 && m <= 50) }' ;;
    full) awk -v p="$2" 'BEGIN { exit !(p != "nan" && p <= 15) }' ;;
    *) return 1 ;;
  esac
}

echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), server $SERVER_BIN, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) cores, outputs in $OUT_DIR"
declare -A table met
for mode in $MODES; do
  table[$mode]=""
  met[$mode]=0
  for run in $(seq 1 "$RUNS"); do
    log="$OUT_DIR/$mode-$run.txt"
    # shellcheck disable=SC2086
    if ! "$LOADGEN_BIN" relay --server-bin "$SERVER_BIN" --users 1000 --mode paced \
      --rate 10000 --seconds 10 --targets server --synchronous "$mode" $EXTRA_ARGS \
      >"$log" 2>&1; then
      echo "$mode run $run failed (see $log)" >&2
      table[$mode]+=$(printf '%4s  %-52s\n' "$run" "failed")$'\n'
      continue
    fi
    line=$(grep '^RESULT ' "$log" | tail -1)
    p50=$(value server_p50_ms "$line")
    p99=$(value server_p99_ms "$line")
    max=$(value server_max_ms "$line")
    errors=$(value server_errors "$line")
    f50=$(value server_fsync_p50_ms "$line")
    f99=$(value server_fsync_p99_ms "$line")
    fmax=$(value server_fsync_max_ms "$line")
    s99=$(value server_sched_p99_ms "$line")
    smax=$(value server_sched_max_ms "$line")
    sstall=$(value server_sched_stall_ms "$line")
    steal=$(value server_steal_pct "$line")
    ok=no
    if [[ $errors == 0 ]] && meets "$mode" "$p99" "$max"; then
      ok=yes
      met[$mode]=$((met[$mode] + 1))
    fi
    row=$(printf '%4s %9s %9s %9s %7s   %9s %9s %9s   %9s %9s %9s %7s   %s' \
      "$run" "$p50" "$p99" "$max" "$errors" "$f50" "$f99" "$fmax" "$s99" "$smax" "$sstall" "$steal" "$ok")
    echo "$(date -u +%H:%M:%S) $mode $row"
    table[$mode]+="$row"$'\n'
  done
done

for mode in $MODES; do
  case $mode in
    normal) target="p99 <= 5 ms and max <= 50 ms" ;;
    full) target="p99 <= 15 ms" ;;
    *) target="?" ;;
  esac
  echo
  echo "synchronous = $mode (delivery latency, ms; fsync = 4 KiB pwrite + fdatasync in the data dir; sched = a real-time 1 kHz thread's wake-up lateness and its longest stall, steal = hypervisor steal % of CPU time; all in the same run)"
  printf '%4s %9s %9s %9s %7s   %9s %9s %9s   %9s %9s %9s %7s   %s\n' run p50 p99 max errors "fsync p50" "fsync p99" "fsync max" "sched p99" "sched max" "stall" "steal%" target
  printf '%s' "${table[$mode]}"
  echo "runs meeting the target ($target, no errors): ${met[$mode]} of $RUNS"
done
