# Shared by the bench scripts: build, a throw-away home, the server, and
# percentile helpers. Figures go to stdout as "name: value" lines.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QTSP=${QTSP_BIN:-$ROOT/build/qtsp}
if [[ ! -x $QTSP ]]; then
  cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$ROOT/build" --target qtsp -j"$(nproc)" >/dev/null
fi
B_DIR=$(mktemp -d "${BENCH_TMP:-/tmp}/qtsp-bench-XXXXXX")
B_PID=
B_BASE=
B_PIDS=() # other processes a bench started (nginx, openssl ocsp): killed by PID on exit
# kill PID and its direct children (openssl ocsp -multi forks its workers), by PID
b_kill_tree() { # pid [signal]
  local kids
  kids=$(ps -o pid= --ppid "$1" 2>/dev/null || true)
  kill "-${2:-KILL}" "$1" 2>/dev/null || true
  for k in $kids; do kill "-${2:-KILL}" "$k" 2>/dev/null || true; done
}
cleanup() {
  [[ -n $B_PID ]] && kill -KILL "$B_PID" 2>/dev/null
  local p
  for p in "${B_PIDS[@]}"; do b_kill_tree "$p"; done
  rm -rf "$B_DIR"
}
trap cleanup EXIT
[[ -n ${BENCH_KEEP:-} ]] && trap - EXIT

b_init() { # home
  "$QTSP" init --home "$1" >/dev/null 2>&1
  sed -i 's/require_sync: true/require_sync: false/' "$1/policies/tsa.yaml"
}
# The server is the default `serve` (no flags: one worker process per core,
# at most 64); BENCH_PROCESSES=N passes --processes N (1 = a single process).
B_PROC_ARGS=()
if [[ -n ${BENCH_PROCESSES:-} ]]; then
  B_PROCESSES=$BENCH_PROCESSES B_PROC_ARGS=(--processes "$BENCH_PROCESSES")
  B_SERVE_DESC="serve --processes $B_PROCESSES"
else
  B_PROCESSES=$(nproc); ((B_PROCESSES > 64)) && B_PROCESSES=64
  B_SERVE_DESC="the default serve (no flags: one worker process per core = $B_PROCESSES)"
fi
b_serve() { # home [stderr file: the access log; default $B_DIR/serve.err]
  # emptied first: the background job opens it later, and the previous
  # server's "listening on" line must not be read as this one's
  : >"$B_DIR/serve.out"
  "$QTSP" serve --home "$1" --listen 127.0.0.1:0 "${B_PROC_ARGS[@]}" \
    >"$B_DIR/serve.out" 2>"${2:-$B_DIR/serve.err}" &
  B_PID=$!
  for _ in $(seq 1 400); do
    grep -q '^listening on ' "$B_DIR/serve.out" 2>/dev/null && break
    sleep 0.05
  done
  B_BASE=$(sed -n 's/^listening on //p' "$B_DIR/serve.out")
  [[ -n $B_BASE ]] || { cat "$B_DIR/serve.err"; exit 1; }
}
# Waits (up to 5 min) until the key pool of the running server is full: its
# filler generates keys at 100% of a core for seconds after a first start,
# which would otherwise eat into the first figures measured.
b_wait_keypool() {
  local i m
  for i in $(seq 1 3000); do
    m=$(curl -sf "$B_BASE/metrics" || true)
    awk '/^qtsp_keypool_available[{ ]/ {a = $2} /^qtsp_keypool_size[{ ]/ {s = $2}
      END {exit !(a != "" && s != "" && a + 0 >= s + 0)}' <<<"$m" && return 0
    sleep 0.1
  done
  echo "bench: the key pool did not fill in time" >&2
  return 1
}
b_stop() {
  [[ -n $B_PID ]] || return 0
  kill -TERM "$B_PID"; wait "$B_PID" || true; B_PID=
}
# the server's processes: pid and its worker processes (serve --processes N)
b_tree() { echo "$1"; ps -o pid= --ppid "$1" 2>/dev/null || true; }
# PROGRAM (awk) run on /proc/PID/FILE, summed over the server's processes
b_tree_sum() { # pid file awk-program
  local p s=0 v
  for p in $(b_tree "$1"); do
    v=$(awk "$3" "/proc/$p/$2" 2>/dev/null || true)
    s=$((s + ${v:-0}))
  done
  echo "$s"
}
# peak RSS (VmHWM) summed over the server's processes, KiB
b_rss_kib() { b_tree_sum "$1" status '/VmHWM/ {print $2}'; }
# percentile P (0..100) of the numbers in file (one per line)
b_pct() { sort -n "$2" | awk -v p="$1" '{a[NR]=$1} END {i=int((p/100)*NR+0.999); if(i<1)i=1; if(i>NR)i=NR; print a[i]}'; }

# A loopback TCP port free right now (the kernel picks it).
b_free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
b_urlencode() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }

# Enrol one subject and issue its certificate through the RA API of the
# running server (b_serve) with ra-officer token TOK; writes FILE.pem and
# prints the serial (hex).
b_issue_one() { # tok file
  local sid out
  sid=$(curl -sf -H "Authorization: Bearer $1" -H 'Content-Type: application/json' \
    --data '{"given_name":"Bench","surname":"Person","country":"DE","national_id":"00000001","email":"b@example.org","phone":"+4915100000001","package":"free"}' \
    "$B_BASE/ra/v1/subjects" | sed -E 's/.*"subject_id":"([0-9a-f]+)".*/\1/')
  out=$(curl -sf -X POST -H "Authorization: Bearer $1" -H 'Content-Type: application/json' --data '{}' \
    "$B_BASE/ra/v1/subjects/$sid/certificates")
  sed -E 's/.*"certificate":"([^"]+)".*/\1/; s/\\n/\n/g' <<<"$out" >"$2.pem"
  sed -E 's/.*"serial":"([0-9a-f]+)".*/\1/' <<<"$out"
}

# Run wrk NAME ARGS...: keeps the output in $B_DIR/wrk-NAME.txt and sets
# B_RPS[NAME], B_P50[NAME], B_P99[NAME] (ms), B_ERRS[NAME] (socket errors +
# non-2xx/3xx) and B_BPR[NAME] (bytes read per response, headers included);
# with B_CPU_PID set, B_CPU[NAME] = that process's CPU microseconds per request.
# wrk needs --latency among ARGS for the percentiles.
declare -A B_RPS B_P50 B_P99 B_ERRS B_BPR B_CPU
# user+system CPU ticks the server has used so far (all threads, all its processes)
b_cpu_ticks() { b_tree_sum "$1" stat '{print $14 + $15}'; }
b_wrk() { # name wrk-args...
  local name=$1 f=$B_DIR/wrk-$1.txt
  shift
  local c0=0
  [[ -n ${B_CPU_PID:-} ]] && c0=$(b_cpu_ticks "$B_CPU_PID")
  timeout 300 wrk "$@" >"$f" 2>&1 || { cat "$f" >&2; return 1; }
  if [[ -n ${B_CPU_PID:-} ]]; then # server CPU (user+sys) per request, microseconds
    B_CPU[$name]=$(awk -v d="$(($(b_cpu_ticks "$B_CPU_PID") - c0))" -v hz="$(getconf CLK_TCK)" \
      '/ requests in / {printf "%.0f", ($1 > 0 ? d / hz * 1e6 / $1 : 0)}' "$f")
  fi
  local ms='function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /m$/) return v*60000; return v*1000 }'
  B_RPS[$name]=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$f")
  B_P50[$name]=$(awk "$ms"' $1 == "50%" {printf "%.2f", ms($2)}' "$f")
  B_P99[$name]=$(awk "$ms"' $1 == "99%" {printf "%.2f", ms($2)}' "$f")
  B_ERRS[$name]=$(awk '/Socket errors:/ {gsub(",", ""); n += $4 + $6 + $8 + $10} /Non-2xx/ {n += $NF} END {print n + 0}' "$f")
  B_BPR[$name]=$(awk 'function b(v) { if (v ~ /GB$/) return v*1073741824; if (v ~ /MB$/) return v*1048576; if (v ~ /KB$/) return v*1024; return v+0 }
    / requests in / {printf "%.0f", ($1 > 0 ? b($5) / $1 : 0)}' "$f")
  [[ -n ${B_RPS[$name]} ]] || { cat "$f" >&2; return 1; }
}
b_wrk_line() { # name label
  printf '%-34s %7s req/s %-15s p50 %6s ms  p99 %7s ms  errors %s  bytes/resp %s%s\n' "$2" "${B_RPS[$1]}" \
    "${B_RANGE[$1]:+(${B_RANGE[$1]})}" "${B_P50[$1]}" "${B_P99[$1]}" "${B_ERRS[$1]}" "${B_BPR[$1]}" \
    "${B_CPU[$1]:+  server CPU ${B_CPU[$1]} us/req}"
}

# The token's 2-process signing ceiling: two `qtsp token bench --keys 1
# --signs N` on HOME's token in parallel, signs_per_s summed. A process that
# fails to start (SoftHSM2 can fail C_GetSlotList while the other process
# writes its key file) is retried 0.2 s later. Prints "SUM CPU_US": signs/s
# summed and the CPU microseconds (user+sys) the two spent per signature.
b_token_ceiling() { # home type signs
  local i out sum=0 r
  for i in 1 2; do
    (
      for try in 1 2 3; do
        /usr/bin/time -f '%U %S' -o "$B_DIR/tok$i.cpu" "$QTSP" token bench --home "$1" --type "$2" \
          --keys 1 --signs "$3" >"$B_DIR/tok$i.out" 2>"$B_DIR/tok$i.err" && exit 0
        sleep 0.2
      done
      exit 1
    ) &
    B_TOK_PIDS[$i]=$!
  done
  for i in 1 2; do
    wait "${B_TOK_PIDS[$i]}" || { cat "$B_DIR/tok$i.err" >&2; return 1; }
    r=$(sed -E 's/.*signs_per_s=([0-9.]+).*/\1/' "$B_DIR/tok$i.out")
    sum=$((sum + ${r%.*}))
  done
  # CPU microseconds per signature (keygen included: one key per process)
  B_TOK_CPU_US=$(cat "$B_DIR/tok1.cpu" "$B_DIR/tok2.cpu" | awk -v n="$3" '{c += $1 + $2} END {printf "%.0f", c * 1e6 / (2 * n)}')
  echo "$sum $B_TOK_CPU_US"
}
declare -a B_TOK_PIDS

# nginx (nginx-light) serving FILE for every path under PREFIX on PORT with
# Content-Type CTYPE: the HTTP ceiling of this machine. Sets B_NGINX_PID.
b_nginx_start() { # file prefix port ctype
  local d=$B_DIR/nginx
  mkdir -p "$d/tmp"
  cp "$1" "$d/answer"
  chmod 755 "$B_DIR" "$d"
  chmod 644 "$d/answer"
  cat >"$d/nginx.conf" <<CONF
$([[ $(id -u) -eq 0 ]] && echo 'user root;')
worker_processes 2;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  server {
    listen 127.0.0.1:$3;
    root $d;
    location $2 { default_type $4; try_files /answer =404; }
  }
}
CONF
  nginx -p "$d" -c "$d/nginx.conf" -g 'daemon off;' 2>"$d/stderr" &
  B_NGINX_PID=$!
  B_PIDS+=("$B_NGINX_PID")
  for _ in $(seq 1 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$3$2" && return 0
    sleep 0.05
  done
  cat "$d/stderr" "$d/error.log" >&2
  return 1
}
b_nginx_stop() { # QUIT: the master waits for its workers
  kill -QUIT "$B_NGINX_PID" 2>/dev/null || true
  wait "$B_NGINX_PID" 2>/dev/null || true
}
b_loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
b_untrack() { # pid: forget a process the bench has stopped itself
  local p keep=()
  for p in "${B_PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  B_PIDS=("${keep[@]}")
}
# With worker processes, /metrics shows the other workers' figures as they
# were up to a second ago: wait that long after a run before reading counters.
b_settle_metrics() { if ((B_PROCESSES > 1)); then sleep 1.2; fi; }
# value of one /metrics sample of the running server, summed over its worker
# processes (their samples carry process="i"), e.g.
# b_metric 'qtsp_ocsp_cache_total{outcome="hit"}'
b_metric() {
  curl -sf "$B_BASE/metrics" | awk -v k="$1" '{ n = $1; sub(/process="[0-9]+",?/, "", n); sub(/\{\}/, "", n) }
    n == k {s += $2; f = 1} END {if (f) printf "%.6f\n", s; else print 0}' | sed -E 's/\.0+$//'
}
# After rounds NAME#1..NAME#R of b_wrk: B_RPS/B_P50/B_P99/B_BPR[NAME] = the
# median over the rounds (of each figure separately), B_ERRS[NAME] = the sum,
# B_RANGE[NAME] = "min..max" req/s.
declare -A B_RANGE
b_median() { # name rounds
  local k i f=$B_DIR/median
  for k in RPS P50 P99 BPR CPU; do
    local -n arr=B_$k
    for i in $(seq 1 "$2"); do [[ -n ${arr[$1#$i]:-} ]] && echo "${arr[$1#$i]}"; done >"$f"
    [[ -s $f ]] || { unset -n arr; continue; }
    arr[$1]=$(b_pct 50 "$f")
    [[ $k == RPS ]] && B_RANGE[$1]="$(sort -n "$f" | head -1)..$(sort -n "$f" | tail -1)"
    unset -n arr
  done
  B_ERRS[$1]=0
  for i in $(seq 1 "$2"); do B_ERRS[$1]=$((B_ERRS[$1] + B_ERRS[$1#$i])); done
}
# median of the numbers given as arguments
b_median_of() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
