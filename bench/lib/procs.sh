# shellcheck shell=bash
# bench/lib/procs.sh — starting, stopping and measuring processes by PID.
# Sourced by bench/run.sh. Nothing here ever signals a process by name: every process the
# harness starts is remembered in STARTED_PIDS and stopped through that PID (and the children
# it had, e.g. nginx's workers).

STARTED_PIDS=()
# shellcheck disable=SC2034  # STOP_MS and STOP_KILLED are read by run.sh
STOP_MS=0      # set by stop_pid: how long the last stop took
STOP_KILLED=0  # set by stop_pid: 1 if the last stop needed SIGKILL

# Remembers a PID so the exit trap can stop it if the run is interrupted.
track_pid() {
    STARTED_PIDS+=("$1")
}

# Forgets a PID once it has been stopped and reaped.
untrack_pid() {
    local pid=$1 kept=() p
    for p in "${STARTED_PIDS[@]}"; do
        [[ $p == "$pid" ]] || kept+=("$p")
    done
    STARTED_PIDS=("${kept[@]+"${kept[@]}"}")
}

# True while PID runs (a zombie counts as gone: it does nothing and is only waiting to be reaped).
pid_alive() {
    local pid=$1 stat
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# Prints PID and all its descendants, one per line (nginx master → workers).
process_tree() {
    local root=$1
    ps -e -o pid=,ppid= | awk -v root="$root" '
        { kids[$2] = kids[$2] " " $1 }
        END {
            queue = root
            while (queue != "") {
                n = split(queue, q, " "); queue = ""
                for (i = 1; i <= n; i++) { print q[i]; if (q[i] in kids) queue = queue kids[q[i]] }
            }
        }'
}

# Stops PID (TERM, then KILL for it and its children after STOP_TIMEOUT seconds), reaps it,
# and sets STOP_MS (time from TERM to exit) and STOP_KILLED (1 if KILL was needed).
# shellcheck disable=SC2034  # STOP_MS and STOP_KILLED are read by run.sh
stop_pid() {
    local pid=$1 tree t0 deadline
    STOP_MS=0
    STOP_KILLED=0
    # Collect the children first: once the parent is gone they are re-parented and
    # could no longer be found from it.
    mapfile -t tree < <(process_tree "$pid")
    t0=$(now_ms)
    if pid_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((t0 + ${STOP_TIMEOUT:-5} * 1000))
        while pid_alive "$pid" && (($(now_ms) < deadline)); do
            sleep 0.05
        done
        if pid_alive "$pid"; then
            STOP_KILLED=1
            local p
            for p in "${tree[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
        fi
    fi
    STOP_MS=$(($(now_ms) - t0))
    wait "$pid" 2>/dev/null || true
    # Children that outlived their parent (should not happen, but never leave one behind).
    local p
    for p in "${tree[@]}"; do
        if [[ $p != "$pid" ]] && pid_alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
    done
    untrack_pid "$pid"
}

# Stops every PID still tracked, newest first. Used by the exit trap.
stop_all_tracked() {
    local i
    for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${STARTED_PIDS[i]}"
    done
}

now_ms() {
    local ns
    ns=$(date +%s%N)
    echo $((ns / 1000000))
}

# Sum of utime+stime (clock ticks) over the given PIDs. /proc/PID/stat covers every thread
# of the process, including threads that have already exited.
cpu_ticks_of() {
    local total=0 pid stat f
    for pid in "$@"; do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        read -r -a f <<<"${stat##*) }"
        # After the ")" the fields start at field 3 (state): utime is field 14, stime 15.
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

# CPU ticks of this shell's reaped children (cutime+cstime): the load generator's cost once
# it has been waited for, since wrk/h2load run as (grand)children of this script.
children_cpu_ticks() {
    local stat f
    stat=$(cat "/proc/$$/stat")
    read -r -a f <<<"${stat##*) }"
    echo $((f[13] + f[14]))
}

# Sum of VmHWM (peak resident set, KiB) over the given PIDs.
peak_rss_kib_of() {
    local total=0 pid kib
    for pid in "$@"; do
        kib=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || continue
        total=$((total + ${kib:-0}))
    done
    echo "$total"
}

# Prints "busy steal total" jiffies for a /proc/stat line ("cpu" for all cores, "cpu1", ...).
# busy = user+nice+system+irq+softirq: softirq work (loopback packet processing) done while one
# of our processes runs is also charged to that process's stime, so it must be in the machine
# total we subtract our processes from. Fields: user nice system idle iowait irq softirq steal.
cpu_line_sample() {
    awk -v name="$1" '$1 == name {
        total = 0; for (i = 2; i <= 9; i++) total += $i
        print $2 + $3 + $4 + $7 + $8, $9, total; exit }' /proc/stat
}

# Prints "busy steal" over SECONDS seconds, each in percent of one core: the CPU used by all
# processes, and the time the hypervisor gave our virtual CPUs to someone else (steal).
machine_busy_pct() {
    local seconds=$1 a b
    read -r -a a < <(cpu_line_sample cpu)
    sleep "$seconds"
    read -r -a b < <(cpu_line_sample cpu)
    local d_total=$((b[2] - a[2]))
    ((d_total > 0)) || { echo 0 0; return; }
    echo $(((b[0] - a[0]) * 100 * NCPU / d_total)) $(((b[1] - a[1]) * 100 * NCPU / d_total))
}
