#!/usr/bin/env bash
# A Ray cluster for CI: LAUNCHER_RAY_NODES nodes (default 2), 8 GPUs declared on each (no hardware needed:
# Ray only counts them). With 2 or more, the head runs in network namespace lxci-r1 as host lxci-r1
# (address 10.250.77.21) and each worker in its own (lxci-r2 at .22, ...), as on a real cluster (netns.sh);
# the Jobs API is on http://10.250.77.21:8265. With LAUNCHER_RAY_NODES=1 it is one head on
# http://127.0.0.1:${LAUNCHER_RAY_DASHBOARD_PORT:-8265} in the root namespace, every port on loopback.
#
#   .ci/services/ray.sh start    start it (or find it already answering); prints, for `eval` by .ci/run,
#                                export LAUNCHER_RAY_ADDRESS=http://...:8265   (messages go to stderr)
#   .ci/services/ray.sh status   the same line and exit 0 when the Jobs API answers, else exit 1
#   .ci/services/ray.sh stop     stop the nodes this script started (their process groups, then everything
#                                left in their namespaces), the namespaces and the bridge
#   .ci/services/ray.sh kill-node NODE   a worker node dies (SIGKILL to everything in its namespace);
#                                `start` brings it back
#
# Works as root on a 2-core machine without network, on a fresh machine and when run twice:
#  * RAY_TMPDIR (sessions, sockets, logs) lives under the state dir, so nothing is shared with another
#    Ray on the machine and a rerun starts clean; its path is kept short because Ray puts unix sockets
#    in it (108-byte limit).
#  * RAY_AUTH_MODE=disabled and usage stats off: no token to distribute, nothing phones home.  So every
#    server of the head listens on 127.0.0.1 only: --node-ip-address=127.0.0.1 and single-machine mode
#    (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, without which Ray 2.60 swaps 127.0.0.1 for the host's routable
#    address); tests/test_ray_head.py checks every listening socket with `ss`.  A real cluster's head is
#    secured differently: docs/cluster.md.
#  * The dashboard is on: the Jobs API is served by it.
#  * `ray start --block` runs under setsid and its process group is what `stop` signals, so stop ends
#    exactly the processes this script started (never `ray stop`, which kills every Ray process on
#    the machine by name, other users' heads and the launcher's embedded heads included).
#  * Several nodes: each node's RAY_TMPDIR is its own (a shared one would share `session_latest`); the
#    servers listen on the node's namespace address, reachable from this machine only (the bridge has no
#    uplink); RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER stays unset there (its single-machine mode refuses workers).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
state="${LAUNCHER_CI_STATE:-$repo/.ci/state}/ray"
port="${LAUNCHER_RAY_DASHBOARD_PORT:-8265}"
gcs_port="${LAUNCHER_RAY_GCS_PORT:-6380}"
client_port="${LAUNCHER_RAY_CLIENT_PORT:-10001}"        # Ray's defaults; a second head (a test) moves them
agent_port="${LAUNCHER_RAY_AGENT_PORT:-52365}"
num_gpus="${LAUNCHER_RAY_GPUS:-8}"
# enough for three small rows at once plus a pair of 8-GPU rows; Ray only counts them
num_cpus="${LAUNCHER_RAY_CPUS:-16}"
num_nodes="${LAUNCHER_RAY_NODES:-2}"
(( num_nodes >= 1 && num_nodes <= 9 )) || { echo "ray.sh: LAUNCHER_RAY_NODES=$num_nodes: 1 to 9" >&2; exit 2; }
# shellcheck source=netns.sh
. "$here/netns.sh"
node_addr() { echo "$netns_prefix.2${1#lxci-r}"; }
nodes=(); if (( num_nodes > 1 )); then for ((i = 1; i <= num_nodes; i++)); do nodes+=("lxci-r$i"); done; fi
head_ip=127.0.0.1
(( num_nodes > 1 )) && head_ip="$(node_addr lxci-r1)"
address="http://$head_ip:$port"
pidfile="$state/head.pid"
log="$state/head.log"

python="${PYTHON:-python3}"
ray_bin="$(command -v ray || true)"
if [[ -z "$ray_bin" ]]; then
    ray_bin="$("$python" -c 'import os, sys; print(os.path.join(os.path.dirname(sys.executable), "ray"))')"
fi

# Ray's unix socket paths must stay under 108 bytes: use the state dir when its path is short, else /tmp
tmpdir="$state/tmp"
if (( ${#tmpdir} > 60 )); then
    tmpdir="/tmp/launcher-ray-$(id -u)-$(printf '%s' "$state" | md5sum | cut -c1-8)"
fi

export RAY_TMPDIR="$tmpdir"
export RAY_AUTH_MODE=disabled
(( num_nodes > 1 )) || export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
export RAY_USAGE_STATS_ENABLED=0
export RAY_DISABLE_DOCKER_CPU_WARNING=1

jobs_api_answers() {
    # the Jobs API (not just the dashboard's root page) must answer: GET /api/jobs/ lists the jobs
    "$python" - "$address" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/api/jobs/", timeout=3) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

head_pid() {
    [[ -f "$pidfile" ]] || return 1
    local pid
    pid="$(cat "$pidfile")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    # a stale pid file (after a reboot) may name someone else's process: only ours has our temp dir
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--temp-dir=$tmpdir" || return 1
    echo "$pid"
}

alive_nodes() {  # how many nodes the head reports ALIVE
    "$python" - "$address" <<'EOF' 2>/dev/null || echo 0
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/api/v0/nodes?limit=100", timeout=5) as r:
    nodes = json.load(r)["data"]["result"]["result"]
print(sum(1 for n in nodes if n.get("state") == "ALIVE"))
EOF
}

worker_pid() {  # worker_pid NODE: the pid of our `ray start --block` of that worker, when it runs
    local f="$state/worker-$1.pid" pid
    [[ -s "$f" ]] || return 1
    pid="$(cat "$f")"
    kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--temp-dir=$tmpdir-$1" \
        && echo "$pid"
}

start_workers() {  # every worker node not running yet; wait until the head sees all nodes
    local n ip
    for n in "${nodes[@]:1}"; do
        worker_pid "$n" >/dev/null && continue
        netns_up "$n" "$(node_addr "$n")"
        ip="$(node_addr "$n")"
        mkdir -p "$tmpdir-$n"
        echo "starting ray worker $n ($ip), $num_gpus GPUs, $num_cpus CPUs declared" >&2
        ( cd "$state" && RAY_TMPDIR="$tmpdir-$n" exec setsid bash -c '. "$1"; shift; netns_exec "$@"' _ "$here/netns.sh" \
            "$n" "$n" "$ray_bin" start --block --address="$head_ip:$gcs_port" --node-ip-address="$ip" \
            --num-gpus="$num_gpus" --num-cpus="$num_cpus" --object-store-memory=$((256 * 1024 * 1024)) \
            --temp-dir="$tmpdir-$n" --disable-usage-stats >"$state/worker-$n.log" 2>&1 </dev/null ) &
        echo $! >"$state/worker-$n.pid"
    done
    local deadline=$((SECONDS + ${LAUNCHER_RAY_START_TIMEOUT:-90}))
    until (( $(alive_nodes) >= num_nodes )); do
        if (( SECONDS > deadline )); then
            echo "the Ray cluster has $(alive_nodes) of $num_nodes nodes after ${LAUNCHER_RAY_START_TIMEOUT:-90}s; see $state/worker-*.log" >&2
            return 1
        fi
        sleep 0.5
    done
}

cmd_start() {
    mkdir -p "$state" "$tmpdir"
    if jobs_api_answers; then
        (( num_nodes > 1 )) && { start_workers || return 1; }
        if head_pid >/dev/null; then
            echo "ray head already running (pid $(head_pid)); Jobs API at $address" >&2
        else
            echo "a Ray Jobs API already answers at $address (not started by this script); using it" >&2
        fi
        echo "export LAUNCHER_RAY_ADDRESS=$address"
        return 0
    fi
    if pid="$(head_pid)"; then
        echo "ray head (pid $pid) runs but its Jobs API does not answer; restarting it" >&2
    fi
    cmd_stop 2>/dev/null  # a half-dead head or its leftovers would hold the ports
    echo "starting ray head: $num_gpus GPUs, $num_cpus CPUs declared, Jobs API at $address (log: $log)" >&2
    # --block keeps `ray start` as the parent of the head's processes (they die with it: Ray sets
    # PR_SET_PDEATHSIG on Linux), setsid makes it the leader of a process group that stop signals
    # run from the state dir: jobs inherit the head's cwd, which must not hold a launcher checkout
    cd "$state"
    local enter=()
    if (( num_nodes > 1 )); then
        netns_up lxci-r1 "$head_ip"
        enter=(bash -c '. "$1"; shift; netns_exec "$@"' _ "$here/netns.sh" lxci-r1 lxci-r1)
    fi
    setsid "${enter[@]}" "$ray_bin" start --head --block \
        --node-ip-address="$head_ip" \
        --port="$gcs_port" --ray-client-server-port="$client_port" --dashboard-agent-listen-port="$agent_port" \
        --num-gpus="$num_gpus" --num-cpus="$num_cpus" \
        --object-store-memory=$((256 * 1024 * 1024)) \
        --include-dashboard=true --dashboard-host="$head_ip" --dashboard-port="$port" \
        --temp-dir="$tmpdir" --disable-usage-stats \
        >"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    local deadline=$((SECONDS + ${LAUNCHER_RAY_START_TIMEOUT:-90}))
    until jobs_api_answers; do
        if ! head_pid >/dev/null; then
            echo "ray head exited while starting; last lines of $log:" >&2
            tail -n 30 "$log" >&2 || true
            return 1
        fi
        if (( SECONDS > deadline )); then
            echo "ray head did not answer at $address within ${LAUNCHER_RAY_START_TIMEOUT:-90}s; see $log" >&2
            cmd_stop >/dev/null || true
            return 1
        fi
        sleep 0.5
    done
    (( num_nodes > 1 )) && { start_workers || { cmd_stop >/dev/null 2>&1; return 1; }; }
    echo "export LAUNCHER_RAY_ADDRESS=$address"
}

# members of process group $1 that are ours (their command lines name our temp dir)
our_group_members() {
    local p
    for p in $(pgrep -g "$1" 2>/dev/null); do
        tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$tmpdir" && echo "$p"
    done
    return 0
}

stop_workers() {
    local n pid
    for n in "${nodes[@]:1}"; do
        if pid="$(worker_pid "$n")"; then
            kill -TERM -- "-$pid" 2>/dev/null || true
            sleep 1
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
        rm -f "$state/worker-$n.pid"
        netns_down "$n"   # whatever is left in the node's namespace (its jobs' processes), then the namespace
        rm -rf "$tmpdir-$n"
    done
}

cmd_stop() {
    stop_workers
    cmd_stop_head
    (( num_nodes > 1 )) && netns_down lxci-r1
    return 0
}

cmd_stop_head() {
    local pid
    if ! pid="$(head_pid)"; then
        # the leader died (killed, crashed): end what is left of its group, checked one by one
        if [[ -f "$pidfile" ]]; then
            local left
            left="$(our_group_members "$(cat "$pidfile")")"
            if [[ -n "$left" ]]; then
                echo "ray head's leader is gone; killing its leftover processes: $(echo $left)" >&2
                kill -KILL $left 2>/dev/null || true
            fi
        fi
        rm -f "$pidfile"
        echo "ray head not running (nothing started by this script)" >&2
        return 0
    fi
    # SIGTERM to the group, then SIGKILL what is left after 3 s, as `ray stop --force` would: `ray start
    # --block` ignores SIGTERM, and its GCS and raylet take ~10 s to act on it
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 12); do
        pgrep -g "$pid" >/dev/null 2>&1 || break
        sleep 0.25
    done
    if pgrep -g "$pid" >/dev/null 2>&1; then
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    echo "ray head stopped" >&2
}

cmd_status() {
    if jobs_api_answers; then
        echo "export LAUNCHER_RAY_ADDRESS=$address"
        return 0
    fi
    echo "no Ray Jobs API at $address" >&2
    return 1
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    kill-node)
        [[ -n "${2:-}" && " ${nodes[*]:1} " == *" $2 "* ]] || { echo "kill-node NODE: one of the workers ${nodes[*]:1}" >&2; exit 2; }
        netns_kill "$2" KILL
        rm -f "$state/worker-$2.pid"
        echo "ray node $2: every process in its namespace killed (SIGKILL)" >&2 ;;
    *) echo "usage: $0 start|stop|status|kill-node NODE" >&2; exit 2 ;;
esac
