#!/usr/bin/env bash
# bench/run.sh — weir side by side with nginx and HAProxy (and the upstreams direct, the ceiling).
#
#   bench/run.sh                                   # full run: REPS=3, DURATION=10, WARMUP=2
#   WEIR=/path/to/weir QUICK=1 bench/run.sh        # smoke run: 1 rep, 2 s, 32 connections
#   ONLY=weir,nginx SCENARIOS='h1-*' bench/run.sh  # a subset
#   WORKERS=1,2 bench/run.sh                       # a second pass with two workers
#
# See bench/README.md for the method and the meaning of each column. Everything is generated in
# a temp dir; only bench/results/latest.{md,csv,json} are written outside it. Every process the
# script starts is stopped by its PID on exit, Ctrl-C included; every load run is time-bounded.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=lib/procs.sh
source "$BENCH_DIR/lib/procs.sh"
# shellcheck source=lib/configs.sh
source "$BENCH_DIR/lib/configs.sh"

# ---- settings (environment) ---------------------------------------------------------------------
QUICK=${QUICK:-0}
if ((QUICK)); then
    REPS=${REPS:-1} DURATION=${DURATION:-2} WARMUP=${WARMUP:-1}
fi
REPS=${REPS:-3}               # repetitions of the whole A B C D cycle
DURATION=${DURATION:-10}      # seconds per measured run
WARMUP=${WARMUP:-2}           # seconds of unmeasured load before each measured run
ONLY=${ONLY:-direct,nginx,haproxy,weir}
SCENARIOS=${SCENARIOS:-all}   # comma list of names or globs, e.g. 'h1-*,tls-h2-small-c32'
WORKERS=${WORKERS:-1}         # proxy workers/threads; "1,2" runs a second pass with two
PROXY_CORE=${PROXY_CORE:-0}   # the core the proxy gets (with one worker)
LOAD_CORE=${LOAD_CORE:-1}     # the core wrk/h2load and the upstreams share
BASE_PORT=${BASE_PORT:-19100}
H2_STREAMS=${H2_STREAMS:-1}   # h2load -m: concurrent streams per connection
NOISE_MAX_PCT=${NOISE_MAX_PCT:-20}  # others' CPU, in % of one core, above which a run is "noisy"
NOISE_RETRIES=${NOISE_RETRIES:-3}
NOISE_WAIT=${NOISE_WAIT:-5}
STOP_TIMEOUT=${STOP_TIMEOUT:-5}     # seconds a proxy gets to exit after SIGTERM before SIGKILL
RESULTS_DIR=${RESULTS_DIR:-$BENCH_DIR/results}
KEEP_TMP=${KEEP_TMP:-0}       # 1: keep the temp dir (it is kept anyway when a run had problems)
RUN_PROBLEMS=0

# weir terminates TLS with the run's certificate as its default certificate (clients connect
# to 127.0.0.1 and send no SNI), as nginx and HAProxy serve their one certificate.
WEIR_HAS_TLS=1

ALL_PROXIES=(direct nginx haproxy weir)
# Names encode protocol, body and connections; describe_scenario decodes them.
ALL_SCENARIOS=(
    h1-small-c32 h1-small-c256 h1-4k-c32 h1-4k-c256
    tls-h1-small-c32 tls-h1-small-c256 tls-h2-small-c32 tls-h2-small-c256
    h2c-small-c32 h2c-small-c256
)

# nginx and haproxy live in /usr/sbin, which a non-login PATH can miss.
export PATH=$PATH:/usr/sbin:/sbin
NCPU=$(nproc)
CLK_TCK=$(getconf CLK_TCK)

UP_PORTS=($((BASE_PORT + 1)) $((BASE_PORT + 2)) $((BASE_PORT + 3)))
NGINX_HTTP_PORT=$((BASE_PORT + 10)) NGINX_TLS_PORT=$((BASE_PORT + 11)) NGINX_H2C_PORT=$((BASE_PORT + 12))
HAPROXY_HTTP_PORT=$((BASE_PORT + 20)) HAPROXY_TLS_PORT=$((BASE_PORT + 21)) HAPROXY_H2C_PORT=$((BASE_PORT + 22))
WEIR_HTTP_PORT=$((BASE_PORT + 30)) WEIR_ADMIN_PORT=$((BASE_PORT + 31)) WEIR_TLS_PORT=$((BASE_PORT + 32))

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---- setup --------------------------------------------------------------------------------------

# Installs the Debian packages that provide missing tools (needs root and apt).
ensure_tools() {
    local -A package_of=(
        [wrk]=wrk [h2load]=nghttp2-client [nginx]=nginx [haproxy]=haproxy
        [openssl]=openssl [curl]=curl [taskset]=util-linux [python3]=python3
    )
    local missing=() tool
    for tool in "${!package_of[@]}"; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("${package_of[$tool]}")
    done
    ((${#missing[@]} == 0)) && return 0
    if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
        die "missing: ${missing[*]}; install them with: apt-get install -y ${missing[*]}"
    fi
    log "installing ${missing[*]} from Debian"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# Sets WEIR to a weir binary: the one given, or a release build of this checkout.
ensure_weir() {
    if [[ -n ${WEIR:-} ]]; then
        WEIR=$(realpath "$WEIR")
        [[ -x $WEIR ]] || die "WEIR=$WEIR is not an executable"
        return 0
    fi
    # Resolve CARGO_TARGET_DIR against the caller's directory before cargo runs in the repo.
    local target_dir
    target_dir=$(realpath -m "${CARGO_TARGET_DIR:-$REPO_ROOT/target}")
    log "building weir (cargo build --release) into $target_dir"
    (cd "$REPO_ROOT" && CARGO_TARGET_DIR=$target_dir cargo build --release --bin weir >&2) ||
        die "building weir failed; fix the build or point WEIR=... at a binary you have"
    WEIR=$target_dir/release/weir
}

# Every listening port must be free: a stray server would silently be measured instead.
check_ports_free() {
    local port
    for port in "${UP_PORTS[@]}" "$NGINX_HTTP_PORT" "$NGINX_TLS_PORT" "$NGINX_H2C_PORT" \
        "$HAPROXY_HTTP_PORT" "$HAPROXY_TLS_PORT" "$HAPROXY_H2C_PORT" \
        "$WEIR_HTTP_PORT" "$WEIR_ADMIN_PORT" "$WEIR_TLS_PORT"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            die "127.0.0.1:$port is already in use; pick other ports with BASE_PORT=..."
        fi
    done
}

# Expands ONLY and SCENARIOS (names or globs) into PROXIES and SCENARIO_LIST.
select_matrix() {
    local want name pattern
    PROXIES=()
    IFS=, read -r -a want <<<"$ONLY"
    for name in "${ALL_PROXIES[@]}"; do
        for pattern in "${want[@]}"; do
            [[ $name == "$pattern" ]] && PROXIES+=("$name")
        done
    done
    ((${#PROXIES[@]})) || die "ONLY=$ONLY selects none of: ${ALL_PROXIES[*]}"

    [[ $SCENARIOS == all ]] && SCENARIOS='*'
    SCENARIO_LIST=()
    IFS=, read -r -a want <<<"$SCENARIOS"
    for name in "${ALL_SCENARIOS[@]}"; do
        # QUICK keeps to 32 connections.
        ((QUICK)) && [[ $name != *-c32 ]] && continue
        for pattern in "${want[@]}"; do
            # shellcheck disable=SC2053  # the pattern is meant to glob
            if [[ $name == $pattern ]]; then SCENARIO_LIST+=("$name"); break; fi
        done
    done
    ((${#SCENARIO_LIST[@]})) || die "SCENARIOS=$SCENARIOS selects none of: ${ALL_SCENARIOS[*]}"

    IFS=, read -r -a WORKER_COUNTS <<<"$WORKERS"
}

# Sets S_TOOL (wrk|h2load), S_SCHEME (http|https), S_CONNS and S_PATH for a scenario name.
describe_scenario() {
    local name=$1
    S_CONNS=${name##*-c}
    case $name in
        h1-*) S_TOOL=wrk S_SCHEME=http S_PROTO=h1 ;;
        tls-h1-*) S_TOOL=wrk S_SCHEME=https S_PROTO=h1 ;;
        tls-h2-*) S_TOOL=h2load S_SCHEME=https S_PROTO=h2 ;;
        h2c-*) S_TOOL=h2load S_SCHEME=http S_PROTO=h2c ;;
        *) die "unknown scenario $name" ;;
    esac
    case $name in
        *-4k-*) S_PATH=/4k ;;
        *) S_PATH=/ ;;
    esac
}

# Prints why PROXY cannot run the current scenario, or nothing when it can.
unsupported_reason() {
    local proxy=$1
    case $proxy/$S_SCHEME/$S_PROTO in
        direct/http/h1) ;;
        direct/*) echo "n/a (upstreams speak plain HTTP/1.1 only)" ;;
        weir/https/*) ((WEIR_HAS_TLS)) || echo "weir: n/a (no TLS yet)" ;;
    esac
}

# Prints the URL that PROXY serves the current scenario on.
target_url() {
    local proxy=$1 port
    case $proxy/$S_SCHEME/$S_PROTO in
        direct/*) port=${UP_PORTS[0]} ;;
        nginx/http/h1) port=$NGINX_HTTP_PORT ;;
        nginx/https/*) port=$NGINX_TLS_PORT ;;
        nginx/http/h2c) port=$NGINX_H2C_PORT ;;
        haproxy/http/h1) port=$HAPROXY_HTTP_PORT ;;
        haproxy/https/*) port=$HAPROXY_TLS_PORT ;;
        haproxy/http/h2c) port=$HAPROXY_H2C_PORT ;;
        weir/http/*) port=$WEIR_HTTP_PORT ;; # one listener for HTTP/1.1 and h2c
        weir/https/*) port=$WEIR_TLS_PORT ;;
    esac
    echo "$S_SCHEME://127.0.0.1:$port$S_PATH"
}

# ---- servers ------------------------------------------------------------------------------------

# Waits up to 10 s for URL to answer 200, giving up early if PID exits.
wait_http_ok() {
    local url=$1 pid=$2 i
    for ((i = 0; i < 100; i++)); do
        pid_alive "$pid" || return 1
        if curl -sf -o /dev/null --max-time 1 "$url"; then return 0; fi
        sleep 0.1
    done
    return 1
}

# Checks that URL answers 200, over the scenario's protocol, with a body of the size the
# upstreams send: catches a proxy that answers its own error page fast.
check_response() {
    local url=$1 proto=$2 want_bytes=$3 extra=() want_version got
    case $proto in
        h2c) extra+=(--http2-prior-knowledge) want_version=2 ;;
        h2) extra+=(--http2) want_version=2 ;;
        h1) extra+=(--http1.1) want_version=1.1 ;;
    esac
    # -k: the TLS certificate is the run's self-signed one.
    got=$(curl -ks --max-time 5 -o /dev/null -w '%{http_code} %{size_download} %{http_version}' \
        "${extra[@]}" "$url") || true
    [[ $got == "200 $want_bytes $want_version" ]] && return 0
    log "check failed: $url ($proto) answered '$got', wanted '200 $want_bytes $want_version'"
    return 1
}

start_upstreams() {
    local conf port
    conf=$(write_upstream_nginx_conf)
    taskset -c "$LOAD_CORE" nginx -q -p "$TMP/upstream" -e "$TMP/upstream/error.log" -c "$conf" \
        >"$TMP/upstream/stdout.log" 2>&1 &
    UPSTREAM_PID=$!
    track_pid "$UPSTREAM_PID"
    for port in "${UP_PORTS[@]}"; do
        wait_http_ok "http://127.0.0.1:$port/" "$UPSTREAM_PID" ||
            { tail -5 "$TMP/upstream/error.log" >&2 || true; die "the upstream nginx did not start"; }
    done
    check_response "http://127.0.0.1:${UP_PORTS[0]}/" h1 20 || die "upstream / is wrong"
    check_response "http://127.0.0.1:${UP_PORTS[0]}/4k" h1 4096 || die "upstream /4k is wrong"
}

# Starts PROXY on PROXY_CPUS and sets PROXY_PID and PROXY_LOG; returns non-zero if it fails.
start_proxy() {
    local proxy=$1
    case $proxy in
        nginx) start_nginx ;;
        haproxy) start_haproxy ;;
        weir) start_weir ;;
    esac
}

start_nginx() {
    local conf
    conf=$(write_nginx_proxy_conf)
    PROXY_LOG=$TMP/nginx-proxy/error.log
    : >"$PROXY_LOG"
    # nginx's error log and its stderr (early start-up errors) share one file on purpose.
    # shellcheck disable=SC2094
    taskset -c "$PROXY_CPUS" nginx -q -p "$TMP/nginx-proxy" -e "$PROXY_LOG" -c "$conf" \
        >>"$PROXY_LOG" 2>&1 &
    PROXY_PID=$!
    track_pid "$PROXY_PID"
    wait_http_ok "http://127.0.0.1:$NGINX_HTTP_PORT/" "$PROXY_PID"
}

start_haproxy() {
    local conf
    conf=$(write_haproxy_conf)
    PROXY_LOG=$TMP/haproxy/haproxy.log
    # -db: stay in the foreground, one process, so the PID we hold is HAProxy itself.
    taskset -c "$PROXY_CPUS" haproxy -db -f "$conf" >"$PROXY_LOG" 2>&1 &
    PROXY_PID=$!
    track_pid "$PROXY_PID"
    wait_http_ok "http://127.0.0.1:$HAPROXY_HTTP_PORT/" "$PROXY_PID"
}

start_weir() {
    local conf args
    conf=$(write_weir_config)
    PROXY_LOG=$TMP/weir/weir.log
    args=(serve --config "$conf" --workers "$PROXY_WORKERS" --shutdown-grace 2s
        --http-addr "127.0.0.1:$WEIR_HTTP_PORT" --admin-addr "127.0.0.1:$WEIR_ADMIN_PORT")
    args+=(--https-addr "127.0.0.1:$WEIR_TLS_PORT" --default-certificate "$TLS_CERT" --default-key "$TLS_KEY")
    taskset -c "$PROXY_CPUS" "$WEIR" "${args[@]}" >"$PROXY_LOG" 2>&1 &
    PROXY_PID=$!
    track_pid "$PROXY_PID"
    wait_http_ok "http://127.0.0.1:$WEIR_ADMIN_PORT/readyz" "$PROXY_PID"
}

# ---- load ---------------------------------------------------------------------------------------

# Runs the scenario's load generator against URL for SECONDS on the load core, output to OUT.
# Bounded twice: by the tool's own duration and by `timeout`; run in the background and waited
# for, so the exit trap can stop it by PID.
run_load() {
    local url=$1 seconds=$2 out=$3 log_file=${4:-} cmd pid rc=0
    case $S_TOOL in
        wrk)
            cmd=(wrk -t1 "-c$S_CONNS" "-d${seconds}s" --timeout 2s --latency
                -s "$BENCH_DIR/lib/wrk-report.lua" "$url") ;;
        h2load)
            cmd=(h2load -t1 -c "$S_CONNS" -m "$H2_STREAMS" -D "$seconds")
            [[ -n $log_file ]] && cmd+=(--log-file "$log_file")
            cmd+=("$url") ;;
    esac
    timeout --kill-after=5 $((seconds + 30)) taskset -c "$LOAD_CORE" "${cmd[@]}" >"$out" 2>&1 &
    pid=$!
    track_pid "$pid"
    wait "$pid" || rc=$?
    untrack_pid "$pid"
    return "$rc"
}

# Waits until the machine is quiet: others' processes plus hypervisor steal at most
# NOISE_MAX_PCT of a core, sampled over 1 s (ours are idle then). Tries NOISE_RETRIES times;
# sets BUSY_BEFORE_PCT (processes + steal) and NOISY_BEFORE (1 if it never got quiet).
wait_for_quiet() {
    local attempt busy steal
    NOISY_BEFORE=1
    for ((attempt = 1; attempt <= NOISE_RETRIES; attempt++)); do
        read -r busy steal < <(machine_busy_pct 1)
        BUSY_BEFORE_PCT=$((busy + steal))
        if ((BUSY_BEFORE_PCT <= NOISE_MAX_PCT)); then NOISY_BEFORE=0; return 0; fi
        ((attempt < NOISE_RETRIES)) || break
        log "machine busy: others use ${busy}% of a core, hypervisor steal ${steal}%; waiting ${NOISE_WAIT}s"
        sleep "$NOISE_WAIT"
    done
    log "still busy (${busy}% + steal ${steal}%): running anyway, the row is flagged noisy"
}

# Counts warning/error lines a proxy logged (weir's tracing WARN/ERROR, nginx's [warn]/[error]...).
count_log_problems() {
    local file=$1
    [[ -f $file ]] || { echo 0; return; }
    # weir colours its log even into a file: strip the ANSI codes first.
    sed 's/\x1b\[[0-9;]*m//g' "$file" |
        grep -ciE '(^|[ [])(warn|error|crit|alert|emerg|panic|panicked)([] :]|$)' || true
}

# One measured run: quiet check, start, check, warm up, measure, stop; appends a JSON record.
run_one() {
    local workers=$1 rep=$2 scenario=$3 proxy=$4
    describe_scenario "$scenario"
    local common=(workers="$workers" rep="$rep" scenario="$scenario" proxy="$proxy" tool="$S_TOOL"
        conns="$S_CONNS" path="$S_PATH" proto="$S_PROTO" duration_s="$DURATION")
    local reason
    reason=$(unsupported_reason "$proxy")
    if [[ -n $reason ]]; then
        python3 "$BENCH_DIR/report.py" record --runs "$RUNS" "${common[@]}" status=na reason="$reason"
        return 0
    fi

    wait_for_quiet
    local url want_bytes=20 out=$TMP/out/$workers-$rep-$scenario-$proxy
    url=$(target_url "$proxy")
    [[ $S_PATH == /4k ]] && want_bytes=4096
    PROXY_PID="" PROXY_LOG=""
    if [[ $proxy != direct ]]; then
        if ! start_proxy "$proxy"; then
            log "$proxy did not start; its log:"
            tail -20 "$PROXY_LOG" >&2 || true
            [[ -n $PROXY_PID ]] && stop_pid "$PROXY_PID"
            RUN_PROBLEMS=1
            python3 "$BENCH_DIR/report.py" record --runs "$RUNS" "${common[@]}" status=failed \
                reason="did not start"
            return 0
        fi
    fi
    if ! check_response "$url" "$S_PROTO" "$want_bytes"; then
        [[ -n $PROXY_PID ]] && stop_pid "$PROXY_PID"
        RUN_PROBLEMS=1
        python3 "$BENCH_DIR/report.py" record --runs "$RUNS" "${common[@]}" status=failed \
            reason="wrong answer before the run"
        return 0
    fi

    run_load "$url" "$WARMUP" "$out.warmup" || log "warm-up of $proxy exited non-zero"

    # Snapshot everything whose CPU we account for, run, snapshot again.
    local tree=() up_tree=() cpu0 cpu1 up0 up1 gen0 gen1 stat0 stat1 load0 load1 t0 t1 rc=0
    [[ -n $PROXY_PID ]] && mapfile -t tree < <(process_tree "$PROXY_PID")
    mapfile -t up_tree < <(process_tree "$UPSTREAM_PID")
    read -r -a stat0 < <(cpu_line_sample cpu)
    read -r -a load0 < <(cpu_line_sample "cpu$LOAD_CORE")
    cpu0=$(cpu_ticks_of "${tree[@]+"${tree[@]}"}")
    up0=$(cpu_ticks_of "${up_tree[@]}")
    gen0=$(children_cpu_ticks)
    t0=$(now_ms)
    run_load "$url" "$DURATION" "$out" "$out.h2log" || rc=$?
    t1=$(now_ms)
    cpu1=$(cpu_ticks_of "${tree[@]+"${tree[@]}"}")
    up1=$(cpu_ticks_of "${up_tree[@]}")
    gen1=$(children_cpu_ticks)
    read -r -a stat1 < <(cpu_line_sample cpu)
    read -r -a load1 < <(cpu_line_sample "cpu$LOAD_CORE")

    local alive=1 rss=0 nprocs=0 problems=0
    if [[ -n $PROXY_PID ]]; then
        pid_alive "$PROXY_PID" || alive=0
        rss=$(peak_rss_kib_of "${tree[@]}")
        nprocs=${#tree[@]}
        stop_pid "$PROXY_PID"
        problems=$(count_log_problems "$PROXY_LOG")
        cp "$PROXY_LOG" "$out.proxy.log" 2>/dev/null || true
    fi
    # Keep the run dir (tool outputs, proxy logs) when something looks wrong.
    if ((!alive || problems || rc || STOP_KILLED)); then RUN_PROBLEMS=1; fi

    # Others' CPU during the run: all user+system time minus ours (proxy, upstreams, generator).
    local wall_ticks=$(((t1 - t0) * CLK_TCK / 1000))
    local ours=$(((cpu1 - cpu0) + (up1 - up0) + (gen1 - gen0)))
    local others_pct=0 steal_pct=0 load_core_pct=0
    if ((wall_ticks > 0)); then
        others_pct=$(((stat1[0] - stat0[0] - ours) * 100 / wall_ticks))
        steal_pct=$(((stat1[1] - stat0[1]) * 100 / wall_ticks))
    fi
    (((load1[2] - load0[2]) > 0)) && load_core_pct=$(((load1[0] - load0[0]) * 100 / (load1[2] - load0[2])))

    python3 "$BENCH_DIR/report.py" record --runs "$RUNS" "${common[@]}" \
        output="$out" h2log="$out.h2log" tool_rc="$rc" alive="$alive" \
        wall_ms=$((t1 - t0)) clk_tck="$CLK_TCK" cpu_ticks=$((cpu1 - cpu0)) \
        upstream_ticks=$((up1 - up0)) gen_ticks=$((gen1 - gen0)) \
        rss_kib="$rss" nprocs="$nprocs" stop_ms="${STOP_MS:-0}" killed="${STOP_KILLED:-0}" \
        log_problems="$problems" busy_before_pct="$BUSY_BEFORE_PCT" noisy_before="$NOISY_BEFORE" \
        others_pct="$others_pct" steal_pct="$steal_pct" load_core_pct="$load_core_pct" \
        noise_max_pct="$NOISE_MAX_PCT"
    STOP_MS=0 STOP_KILLED=0
}

# ---- report metadata ----------------------------------------------------------------------------

first_line() { "$@" 2>&1 | head -1 || true; }

# Writes key=value lines describing the machine, the tools and the method.
write_meta() {
    local git_rev
    git_rev=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    [[ -n $(git -C "$REPO_ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] &&
        git_rev+=" (+ uncommitted changes in src/)"
    {
        echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "kernel=$(uname -r)"
        echo "cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
        echo "ncpu=$NCPU"
        echo "mem=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
        echo "nginx=$(first_line nginx -v | sed 's/^nginx version: //')"
        echo "haproxy=$(first_line haproxy -v | awk '{ print "HAProxy " $3 }')"
        echo "wrk=$(first_line wrk -v | awk '{ print $1 " " $2 }')"
        echo "h2load=$(first_line h2load --version)"
        echo "openssl=$(first_line openssl version | awk '{ print $1 " " $2 }')"
        echo "weir=$(if [[ -n ${WEIR:-} ]]; then first_line "$WEIR" --version; else echo "not run"; fi)"
        echo "weir_binary=${WEIR:-}"
        echo "weir_built=$(if [[ -n ${WEIR:-} ]]; then date -u -r "$WEIR" '+%Y-%m-%d %H:%M UTC'; fi)"
        echo "repo_rev=$git_rev"
        echo "reps=$REPS"
        echo "duration=$DURATION"
        echo "warmup=$WARMUP"
        echo "quick=$QUICK"
        echo "workers=$WORKERS"
        echo "proxy_core=$PROXY_CORE"
        echo "load_core=$LOAD_CORE"
        echo "h2_streams=$H2_STREAMS"
        echo "noise_max_pct=$NOISE_MAX_PCT"
        echo "proxies=${PROXIES[*]}"
        echo "scenarios=${SCENARIO_LIST[*]}"
    } >"$TMP/meta.txt"
}

# ---- main ---------------------------------------------------------------------------------------

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if ((${#STARTED_PIDS[@]})); then
        log "stopping ${#STARTED_PIDS[@]} process(es) we started: ${STARTED_PIDS[*]}"
        stop_all_tracked
    fi
    if [[ -n ${TMP:-} && -d $TMP ]]; then
        # Kept for debugging when asked, when a run went wrong, or on an error; not on Ctrl-C.
        if ((KEEP_TMP || RUN_PROBLEMS)) || ((rc != 0 && rc != 130 && rc != 143)); then
            log "kept the run dir (tool outputs and proxy logs): $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}

main() {
    ensure_tools
    select_matrix
    [[ " ${PROXIES[*]} " == *" weir "* ]] && ensure_weir
    ((NCPU >= 2)) || log "warning: one CPU only; proxy and load generator share it"
    check_ports_free

    TMP=$(mktemp -d "${TMPDIR:-/tmp}/weir-bench.XXXXXX")
    chmod 711 "$TMP" # nginx workers run as another user and must reach their files in here
    mkdir -p "$TMP/out"
    RUNS=$TMP/runs.jsonl
    : >"$RUNS"
    # 256 connections in and 256 out per proxy, plus headroom.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

    write_tls_cert
    TLS_CERT=$TMP/tls/cert.pem TLS_KEY=$TMP/tls/key.pem TLS_PEM=$TMP/tls/combined.pem
    write_meta
    start_upstreams

    local runs_per_rep=$((${#SCENARIO_LIST[@]} * ${#PROXIES[@]}))
    log "matrix: ${#WORKER_COUNTS[@]} worker setting(s) × $REPS rep(s) × ${#SCENARIO_LIST[@]} scenario(s) × ${#PROXIES[@]} target(s); ${DURATION}s runs, ${WARMUP}s warm-up"
    local workers rep scenario proxy n=0
    for workers in "${WORKER_COUNTS[@]}"; do
        PROXY_WORKERS=$workers
        # One worker: the proxy owns PROXY_CORE. Two: it may use both cores, sharing the load core.
        if ((workers == 1)); then PROXY_CPUS=$PROXY_CORE; else PROXY_CPUS=$PROXY_CORE,$LOAD_CORE; fi
        for ((rep = 1; rep <= REPS; rep++)); do
            # A B C D A B C D ...: each rep runs every scenario on every target in turn, so slow
            # drift (thermal, neighbours) spreads over all targets instead of one.
            for scenario in "${SCENARIO_LIST[@]}"; do
                for proxy in "${PROXIES[@]}"; do
                    n=$((n + 1))
                    log "[$n/$((runs_per_rep * REPS * ${#WORKER_COUNTS[@]}))] workers=$workers rep $rep/$REPS $scenario → $proxy"
                    run_one "$workers" "$rep" "$scenario" "$proxy"
                done
            done
        done
    done

    mkdir -p "$RESULTS_DIR"
    python3 "$BENCH_DIR/report.py" render --runs "$RUNS" --meta "$TMP/meta.txt" --out-dir "$RESULTS_DIR"
    log "wrote $RESULTS_DIR/latest.md, latest.csv, latest.json"
}

# Only when executed: sourcing this file (to reuse a function) must not start a benchmark.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    main "$@"
fi
