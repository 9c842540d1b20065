#!/usr/bin/env bash
# Benchmarks ironpxe side by side with tftpd-hpa, async-tftp's own DirHandler, a null TFTP
# responder (the config phase's ceiling) and nginx, all on
# loopback, and writes BENCHMARKS.md. Reports only: nothing here fails on a number.
#
#   bash benches/run.sh            full run (3 runs per cell; ≤ 25 min on 2 cores)
#   QUICK=1 bash benches/run.sh    smoke run: every comparison, short and small (~4 min)
#
# Needs root (apt-get; tftpd-hpa's --secure chroots). Environment knobs: BENCH_DIR (scratch,
# default target/bench), BENCH_BASE_PORT (default 17000: uses +69 +80 +169 +180 +269 +369
# +380 +469 +569, admin +81 +381), IRONPXE_LOG (ironpxe's RUST_LOG, default info as shipped), BENCHMARKS_OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
QUICK=${QUICK:-0}
B=${BENCH_DIR:-$ROOT/target/bench}
OUT=${BENCHMARKS_OUT:-$ROOT/BENCHMARKS.md}
PORT=${BENCH_BASE_PORT:-17000}
IRONPXE_LOG=${IRONPXE_LOG:-info}
T0=$SECONDS

NODES=10000            # the node set every comparison but "scale" uses
UNKNOWN_PCT=2
STORM_TIMEOUT_MS=1000  # PXELINUX-like retransmit timer
LIVE_GAP_MS=60
LIVE_POLL_US=200
if [[ $QUICK == 1 ]]; then
    MODE=quick RUNS=1
    STORM_N=(100 1000) STORM_K=(200 1000)
    BULK_MB=4 BULK_C=(1 8) BULK_WINDOW_S=2
    WRK_D=2s LIVE_EDITS=20
    SCALE=(1000 10000 20000) LOOKUP_CLIENTS=1000 CHECK_MAX=20000
else
    MODE=full RUNS=3
    STORM_N=(100 1000 5000) STORM_K=(200 1000)
    BULK_MB=30 BULK_C=(1 50) BULK_WINDOW_S=5
    WRK_D=10s LIVE_EDITS=200
    SCALE=(1000 10000 100000) LOOKUP_CLIENTS=5000 CHECK_MAX=10000
fi
WRK_C=(1 64 512)
BULK_BS=(512 1468 8192)
BULK_WS=(1 8 32)

log() { printf '[bench %4ds] %s\n' "$((SECONDS - T0))" "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Processes: every server is started here and stopped by PID, also on failure or Ctrl-C.
PIDS=()
stop_pid() {
    local p=$1
    kill "$p" 2>/dev/null || return 0
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}
cleanup() {
    local p
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    PIDS=()
    rm -f "$B/state/zz-live.json" "$B/state/.zz-live.json.tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------------------------------------
# The peers, from Debian. Their packages' init scripts must not start system daemons.
need=()
for p in tftpd-hpa nginx wrk syslinux-common time strace; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    if ((made_policy)); then rm -f /usr/sbin/policy-rc.d; fi
fi
LDLINUX=/usr/lib/syslinux/modules/bios/ldlinux.c32

# ---------------------------------------------------------------------------------------------
# Build: ironpxe and the load generator, release, in one cargo invocation.
mkdir -p "$B"
log "building ironpxe and benches/loadgen/ (release)"
cargo build --release --locked --bin ironpxe --bench loadgen \
    --message-format=json-render-diagnostics >"$B/build.json"
exe() { grep '"reason":"compiler-artifact"' "$B/build.json" | grep -o '"executable":"[^"]*"' |
    cut -d'"' -f4 | grep -E "/$1\$" | tail -1; }
IRONPXE=$(exe ironpxe)
LOADGEN=$(exe 'loadgen-[0-9a-f]+')
[[ -x $IRONPXE && -x $LOADGEN ]] || { echo "build produced no binaries" >&2; exit 1; }

RESULTS=$B/results.jsonl FACTS=$B/facts.tsv CMDS=$B/commands.txt
: >"$RESULTS"; : >"$FACTS"; : >"$CMDS"
fact() { printf '%s\t%s\n' "$1" "$2" >>"$FACTS"; }
# Records a command line (paths shortened) for the report.
note() {
    local line="$*"
    line=${line//$LOADGEN/loadgen}
    line=${line//$IRONPXE/ironpxe}
    line=${line//$B/\$B}
    line=${line//$ROOT\//}
    echo "$line" >>"$CMDS"
}
# Records a command and runs it (in the foreground).
rec() {
    note "$@"
    "$@"
}
# Runs a command that prints one JSON result line and keeps it; a failure is logged, not fatal.
result() {
    local out
    if out=$(rec "$@"); then
        [[ -n $out ]] && echo "$out" >>"$RESULTS"
    else
        log "FAILED (kept going): $*"
    fi
    return 0
}

fact mode "$MODE"
fact date "$(date -u '+%Y-%m-%d %H:%M UTC')"
fact runs "$RUNS"
fact nproc "$(nproc)"
fact cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
fact kernel "$(uname -sr)"
fact memory "$(free -m | awk '/^Mem:/ {printf "%.1f GiB", $2 / 1024}')"
fact rmem_max "$(cat /proc/sys/net/core/rmem_max)"
dirty=$(git --no-optional-locks status --porcelain 2>/dev/null | head -1 || true)
fact ironpxe "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)${dirty:+ + uncommitted changes}"
fact rustc "$(rustc --version)"
fact tftpd_hpa "$(dpkg-query -W -f='${Version}' tftpd-hpa)"
fact nginx "$(nginx -v 2>&1 | sed 's/^.*version: //')"
fact wrk "$(wrk -v 2>&1 | head -1 | awk '{print $2}' || true)"
fact ironpxe_log "$IRONPXE_LOG"
fact unknown_pct "$UNKNOWN_PCT"
fact storm_timeout_ms "$STORM_TIMEOUT_MS"
fact ldlinux_bytes "$(stat -c %s "$LDLINUX")"
fact bulk_mb "$BULK_MB"
fact bulk_window_s "$BULK_WINDOW_S"
fact wrk_duration "$WRK_D"
fact http_nodes "$NODES"
fact live_edits "$LIVE_EDITS"
fact live_gap_ms "$LIVE_GAP_MS"
fact live_poll_us "$LIVE_POLL_US"
fact lookup_clients "$LOOKUP_CLIENTS"
fact check_max "$CHECK_MAX"

# ---------------------------------------------------------------------------------------------
# Data: the node set, Ironic's static tree for tftpd-hpa, pre-rendered scripts for nginx.
log "generating $NODES nodes"
rm -rf "$B/state" "$B/tftp-root" "$B/http-root" "$B/image-cache" "$B/nginx" "$B"/scale-*
mkdir -p "$B/state" "$B/tftp-root" "$B/http-root" "$B/image-cache"
rec "$LOADGEN" gen --nodes "$NODES" --state-dir "$B/state" --images "$B/images"
fact bytes_per_node "$(($(stat -c %s "$B/state/nodes.json") / NODES))"
cp "$LDLINUX" "$B/tftp-root/ldlinux.c32"
rec "$LOADGEN" gen-file --out "$B/tftp-root/bulk.bin" --size-mb "$BULK_MB"
chmod -R a+rX "$B"

TFTP_IRONPXE=127.0.0.1:$((PORT + 69)) HTTP_IRONPXE=127.0.0.1:$((PORT + 80))
TFTP_HPA=127.0.0.1:$((PORT + 169)) TFTP_BARE=127.0.0.1:$((PORT + 269))
TFTP_IDEAL=127.0.0.1:$((PORT + 469)) TFTP_NULL=127.0.0.1:$((PORT + 569))
HTTP_NGINX=127.0.0.1:$((PORT + 180))
TFTP_SCALE=127.0.0.1:$((PORT + 369)) HTTP_SCALE=127.0.0.1:$((PORT + 380))

ironpxe_config() { # state-dir tftp-listen http-listen admin-listen
    cat <<EOF
state_dir = "$1"
templates = "$ROOT/templates"
tftp_root = "$B/tftp-root"
image_cache_dir = "$B/image-cache"
tftp_listen = ["$2"]
http_listen = "$3"

[http]
# wrk opens all its connections from 127.0.0.1; real iPXE clients are one host each.
max_connections_per_client = 2048

[admin]
listen = "$4"

[images]
# The generated nodes' kernels and ramdisks are files here (Ironic's own default is
# /var/lib/ironic): allowed, as an operator would allow theirs.
file_url_allowed_paths = ["$B/images", "$B/image-cache"]
EOF
}
LAST_PID=
start_ironpxe() { # config log: starts `ironpxe serve`, stamping the time just before exec
    rm -f "$2" "$2.start" # never let wait-ready see the last run's line or stamp
    (
        printf '%s' "$EPOCHREALTIME" >"$2.start"
        exec env RUST_LOG="$IRONPXE_LOG" "$IRONPXE" serve --config "$1"
    ) >/dev/null 2>"$2" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    note env RUST_LOG="$IRONPXE_LOG" "$IRONPXE" serve --config "$1"
}

ironpxe_config "$B/state" "$TFTP_IRONPXE" "$HTTP_IRONPXE" "127.0.0.1:$((PORT + 81))" \
    >"$B/ironpxe.toml"
log "starting ironpxe ($NODES nodes)"
start_ironpxe "$B/ironpxe.toml" "$B/ironpxe.log"
IRONPXE_PID=$LAST_PID
"$LOADGEN" wait-ready --log "$B/ironpxe.log" --pid "$IRONPXE_PID" \
    --start-file "$B/ironpxe.log.start" >/dev/null

log "rendering the static tree (Ironic's layout) and the nginx scripts once, from ironpxe"
rec "$LOADGEN" static-tree --nodes "$NODES" --http "$HTTP_IRONPXE" \
    --tftp-root "$B/tftp-root" --http-root "$B/http-root"
rec "$LOADGEN" wrk-paths --nodes "$NODES" --kind ironpxe --out "$B/paths-ironpxe.txt"
rec "$LOADGEN" wrk-paths --nodes "$NODES" --kind nginx --out "$B/paths-nginx.txt"
chmod -R a+rX "$B/tftp-root" "$B/http-root"

log "starting tftpd-hpa, async-tftp's DirHandler and nginx"
note in.tftpd --foreground --listen --address "$TFTP_HPA" --secure "$B/tftp-root"
in.tftpd --foreground --listen --address "$TFTP_HPA" --secure "$B/tftp-root" &
TFTPD_PID=$!
PIDS+=("$TFTPD_PID")
note "$LOADGEN" bare-tftpd --root "$B/tftp-root" --listen "$TFTP_BARE" --max-seconds 3600
"$LOADGEN" bare-tftpd --root "$B/tftp-root" --listen "$TFTP_BARE" --max-seconds 3600 \
    2>"$B/dirhandler.log" &
BARE_PID=$!
PIDS+=("$BARE_PID")
note "$LOADGEN" ideal-tftpd --root "$B/tftp-root" --listen "$TFTP_IDEAL" --max-seconds 3600
"$LOADGEN" ideal-tftpd --root "$B/tftp-root" --listen "$TFTP_IDEAL" --max-seconds 3600 \
    2>"$B/ideal.log" &
IDEAL_PID=$!
PIDS+=("$IDEAL_PID")
note "$LOADGEN" null-tftpd --listen "$TFTP_NULL" --max-seconds 3600
"$LOADGEN" null-tftpd --listen "$TFTP_NULL" --max-seconds 3600 2>"$B/null.log" &
NULL_PID=$!
PIDS+=("$NULL_PID")
NGX=$B/nginx
mkdir -p "$NGX/tmp"
cat >"$NGX/nginx.conf" <<EOF
daemon off;
worker_processes auto;
worker_rlimit_nofile 65536;
pid $NGX/nginx.pid;
error_log $NGX/error.log warn;
events { worker_connections 8192; }
http {
    access_log $NGX/access.log;
    default_type text/plain;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path $NGX/tmp/body;
    proxy_temp_path $NGX/tmp/proxy;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;
    server {
        listen $HTTP_NGINX;
        root $B/http-root;
    }
}
EOF
note nginx -p "$NGX" -c "$NGX/nginx.conf" -e "$NGX/error.log"
nginx -p "$NGX" -c "$NGX/nginx.conf" -e "$NGX/error.log" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")

for t in "$TFTP_IRONPXE" "$TFTP_HPA" "$TFTP_BARE" "$TFTP_IDEAL"; do
    "$LOADGEN" probe --server "$t" --file ldlinux.c32 --wait-s 15
done
"$LOADGEN" probe --server "$TFTP_NULL" --file pxelinux.cfg/default --wait-s 15
for _ in $(seq 100); do
    curl -sf -o /dev/null "http://$HTTP_NGINX/ipxe/n0" && break
    sleep 0.1
done
curl -sf -o /dev/null "http://$HTTP_NGINX/ipxe/n0"

declare -A TFTP_ADDR=([ironpxe]=$TFTP_IRONPXE [tftpd-hpa]=$TFTP_HPA [dirhandler]=$TFTP_BARE
    [ideal]=$TFTP_IDEAL [null]=$TFTP_NULL)
declare -A TFTP_PID=([ironpxe]=$IRONPXE_PID [tftpd-hpa]=$TFTPD_PID [dirhandler]=$BARE_PID
    [ideal]=$IDEAL_PID [null]=$NULL_PID)

# ---------------------------------------------------------------------------------------------
# 1. Boot storm. Runs interleave the servers so drift on the machine spreads over all of them.
# A warm-up storm first: renders are cached per node, like a fleet already seen once.
log "1. boot storm"
"$LOADGEN" storm --server "$TFTP_IRONPXE" --nodes "$NODES" --clients "$NODES" \
    --concurrency 200 --unknown-pct 0 >/dev/null 2>&1 || true
for r in $(seq "$RUNS"); do
    for n in "${STORM_N[@]}"; do
        for k in "${STORM_K[@]}"; do
            for ld in 0 1; do
                extra=()
                ((ld)) && extra=(--ldlinux --ldlinux-file "$B/tftp-root/ldlinux.c32")
                servers=(ironpxe tftpd-hpa dirhandler)
                # The null responder serves configs only: the config phase's ceiling.
                ((ld)) || servers+=(null)
                for s in "${servers[@]}"; do
                    result "$LOADGEN" storm --server "${TFTP_ADDR[$s]}" --server-name "$s" \
                        --server-pid "${TFTP_PID[$s]}" --run "$r" --nodes "$NODES" \
                        --clients "$n" --concurrency "$k" --unknown-pct "$UNKNOWN_PCT" \
                        --timeout-ms "$STORM_TIMEOUT_MS" "${extra[@]}"
                    sleep 0.3
                done
            done
        done
    done
done

# ---------------------------------------------------------------------------------------------
# 1b. Where an ldlinux.c32 storm's time goes: system calls per completed client, ironpxe
# beside the bare DirHandler (same crate, same client), one storm each under `strace -c -f`.
# strace slows both alike; its counts, not its times, are the point.
log "1b. storm syscall profile"
PROFILE_CLIENTS=$((QUICK == 1 ? 200 : 1000))
for s in ironpxe dirhandler; do
    strace -c -f -q -p "${TFTP_PID[$s]}" -o "$B/strace-$s.txt" &
    SP=$!
    sleep 1
    "$LOADGEN" storm --server "${TFTP_ADDR[$s]}" --nodes "$NODES" --clients "$PROFILE_CLIENTS" \
        --concurrency 200 --unknown-pct "$UNKNOWN_PCT" --timeout-ms "$STORM_TIMEOUT_MS" \
        --ldlinux --ldlinux-file "$B/tftp-root/ldlinux.c32" >/dev/null 2>&1 || true
    kill -INT "$SP"
    wait "$SP" || true
done
# strace -c: "% time  seconds  usecs/call  calls  [errors]  syscall"; the total line skipped.
calls() { awk '$NF != "total" && $1 ~ /^[0-9.]+$/ {print $NF, $4}' "$1"; }
{
    echo "## 1b. Profile: system calls per client in the ldlinux.c32 storm"
    echo
    echo "\`strace -c -f\` attached to each server for one storm of $PROFILE_CLIENTS clients, 200 at a time, with ldlinux.c32 (the same client as section 1). Calls per completed client: every call that is at least 1 % of ironpxe's, and any the DirHandler makes more of."
    echo
    echo "| syscall | ironpxe | async-tftp DirHandler | ironpxe ÷ DirHandler |"
    echo "|---|---|---|---|"
    join -a1 -a2 -e 0 -o 0,1.2,2.2 <(calls "$B/strace-ironpxe.txt" | sort) \
        <(calls "$B/strace-dirhandler.txt" | sort) |
        awk -v n="$PROFILE_CLIENTS" '{ tot += $2; a[$1] = $2; b[$1] = $3 }
            END { for (k in a) if (a[k] >= 0.01 * tot || b[k] > a[k]) 
                printf "| %s | %.1f | %.1f | %s |\n", k, a[k] / n, b[k] / n,
                    (b[k] > 0 ? sprintf("%.2f×", a[k] / b[k]) : "—") }' | sort -t'|' -k3 -gr
    echo
    cat benches/storm-notes.md
} >"$B/profile.md"

# ---------------------------------------------------------------------------------------------
# 2. Bulk TFTP. One client: the whole file. More clients: a fixed measuring window.
log "2. bulk TFTP"
result "$LOADGEN" bulk --bench-name wsprobe --server "$TFTP_HPA" --server-name tftpd-hpa \
    --file ldlinux.c32 --clients 1 --blksize 1468 --windowsize 8
for r in $(seq "$RUNS"); do
    for bs in "${BULK_BS[@]}"; do
        for c in "${BULK_C[@]}"; do
            win=()
            ((c > 1)) && win=(--duration-s "$BULK_WINDOW_S")
            for s in ironpxe ideal; do
                for ws in "${BULK_WS[@]}"; do
                    result "$LOADGEN" bulk --server "${TFTP_ADDR[$s]}" --server-name "$s" \
                        --server-pid "${TFTP_PID[$s]}" --run "$r" --file bulk.bin \
                        --verify "$B/tftp-root/bulk.bin" --clients "$c" --blksize "$bs" \
                        --windowsize "$ws" "${win[@]}"
                done
            done
            # tftpd-hpa has no windowsize (RFC 7440): lock-step only.
            result "$LOADGEN" bulk --server "$TFTP_HPA" --server-name tftpd-hpa \
                --server-pid "$TFTPD_PID" --run "$r" --file bulk.bin \
                --verify "$B/tftp-root/bulk.bin" --clients "$c" --blksize "$bs" \
                --windowsize 1 "${win[@]}"
        done
    done
done

# ---------------------------------------------------------------------------------------------
# 3. iPXE scripts over HTTP: wrk, the same Lua script, ironpxe rendering vs nginx files.
log "3. iPXE scripts over HTTP"
declare -A HTTP_ADDR=([ironpxe]=$HTTP_IRONPXE [nginx]=$HTTP_NGINX)
for r in $(seq "$RUNS"); do
    for c in "${WRK_C[@]}"; do
        threads=$((c < 2 ? 1 : 2)) # wrk needs connections >= threads
        for s in ironpxe nginx; do
            if out=$(rec wrk "-t$threads" "-c$c" "-d$WRK_D" --latency -s benches/wrk.lua \
                "http://${HTTP_ADDR[$s]}" -- "$B/paths-$s.txt"); then
                line=$(grep '^WRKJSON {' <<<"$out" | sed 's/^WRKJSON {//')
                echo "{\"bench\":\"http\",\"server\":\"$s\",\"connections\":$c,\"run\":$r,\"nodes\":$NODES,$line" >>"$RESULTS"
            else
                log "FAILED (kept going): wrk $s -c$c"
            fi
        done
    done
done

# ---------------------------------------------------------------------------------------------
# 4. Live update latency.
log "4. live update latency"
for r in $(seq "$RUNS"); do
    result "$LOADGEN" live --http "$HTTP_IRONPXE" --state-dir "$B/state" --run "$r" \
        --nodes "$NODES" --edits "$LIVE_EDITS" --gap-ms "$LIVE_GAP_MS" --poll-us "$LIVE_POLL_US"
done

# The peers are done; free the cores for the scale runs.
for p in "${PIDS[@]}"; do stop_pid "$p"; done # every server of sections 1-4
PIDS=()

# ---------------------------------------------------------------------------------------------
# 5. Scale: load time and peak RSS per size, `check` under /usr/bin/time, lookup cost.
log "5. scale"
for n in "${SCALE[@]}"; do
    d=$B/scale-$n
    rm -rf "$d"
    rec "$LOADGEN" gen --nodes "$n" --state-dir "$d" --images "$B/images"
    fact "state_mb_$n" "$(du -cm "$d"/*.json | tail -1 | cut -f1)"
    ironpxe_config "$d" "$TFTP_SCALE" "$HTTP_SCALE" "127.0.0.1:$((PORT + 381))" \
        >"$B/scale-$n.toml"
    for r in $(seq "$RUNS"); do
        start_ironpxe "$B/scale-$n.toml" "$B/scale-$n.log"
        pid=$LAST_PID
        result "$LOADGEN" wait-ready --bench-name ready --run "$r" --nodes "$n" --log "$B/scale-$n.log" \
            --pid "$pid" --start-file "$B/scale-$n.log.start"
        if ((r == 1)); then
            # First pass renders every config; the next ones hit the render cache.
            for l in $(seq $((RUNS > 1 ? RUNS : 2))); do
                result "$LOADGEN" storm --bench-name lookup --server "$TFTP_SCALE" --server-pid "$pid" \
                    --run "$l" --nodes "$n" --clients "$LOOKUP_CLIENTS" --concurrency 200 \
                    --unknown-pct 0
            done
        fi
        stop_pid "$pid"
        PIDS=()
    done
    # `check` renders every port in three formats: measured up to CHECK_MAX nodes.
    if ((n <= CHECK_MAX)); then
        for r in $(seq "$RUNS"); do
            rec /usr/bin/time -v -o "$B/check-$n.time" "$IRONPXE" check --state-dir "$d" \
                --templates "$ROOT/templates" >/dev/null 2>&1 || true
            wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, t, ":"); s = 0;
                for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s}' "$B/check-$n.time")
            rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$B/check-$n.time")
            echo "{\"bench\":\"check\",\"server\":\"ironpxe\",\"nodes\":$n,\"run\":$r,\"wall_s\":${wall:-null},\"maxrss_kb\":${rss:-null}}" >>"$RESULTS"
        done
    fi
    [[ $n -ge 100000 ]] && rm -rf "$d"
done

# ---------------------------------------------------------------------------------------------
fact duration "$(((SECONDS - T0) / 60)) min $(((SECONDS - T0) % 60)) s"
# The "Ironic at fleet scale" section is benches/ironic-scale.sh's: kept as it was.
KEEP=$(sed -n '/^<!-- ironic-scale:begin/,/^<!-- ironic-scale:end -->/p' "$OUT" 2>/dev/null || true)
"$LOADGEN" report --results "$RESULTS" --facts "$FACTS" --commands "$CMDS" --out "$OUT"
[[ -s $B/profile.md ]] && printf '\n%s\n' "$(cat "$B/profile.md")" >>"$OUT"
[[ -z $KEEP ]] || printf '\n%s\n' "$KEEP" >>"$OUT"
log "done: $OUT ($(((SECONDS - T0) / 60)) min $(((SECONDS - T0) % 60)) s)"
