#!/usr/bin/env bash
# A multi-node Slurm 22.05 cluster for CI on this one machine: LAUNCHER_SLURM_NODES compute nodes (default 2),
# each a slurmd in its own network namespace with its own hostname (lxci-s1, lxci-s2, ...) and address, 8 GPUs
# declared per node, and real accounting (slurmdbd + MariaDB); slurmctld, slurmdbd, MariaDB and munge run in the
# root namespace.
#
#   .ci/services/slurm.sh start    install (first time), configure, start; wait until every node is idle
#                                  and accounting answers; print the environment the tests need
#   .ci/services/slurm.sh status   print daemons and node states; exit 0 when jobs can be submitted
#   .ci/services/slurm.sh stop     stop the daemons this script started (by their pid files), every process
#                                  left in the nodes' namespaces, the namespaces and the bridge
#   .ci/services/slurm.sh kill-node NODE    a node dies: SIGKILL to everything in its namespace (slurmd, the
#                                  job steps and the row's processes on it); `start` brings it back
#
# Runs as root, without systemd, on a fresh Debian 12 machine and when run twice. Why it is built so:
#  * Everything (configs, spool, the database, logs, sockets) lives in one state dir, so nothing in
#    /etc is touched and the clients find the cluster through SLURM_CONF alone (printed by `start`).
#  * No GPU hardware: gres.conf points at character devices made with `mknod c 1 3` (Slurm rejects
#    file-less GPUs and plain files); Slurm then sets CUDA_VISIBLE_DEVICES per job as on a real node.
#  * The node advertises more CPUs and memory than the machine has (SlurmdParameters=config_overrides)
#    so eight small rows, or one row with a real 8-GPU node's CPU and memory request, can be scheduled.
#  * Real accounting: submitit (and our job states) read sacct; without it a cancelled job's state is
#    unknowable. MariaDB runs on its own port and socket under the state dir, started with setsid.
#  * slurmctld keeps its state dir across restarts (never `-c`): otherwise job ids restart at 1 and
#    collide with the jobs already in the accounting database.
#  * batch_sched_delay=0 removes a ~3 s wait per sbatch; KillWait=10 ends killed jobs promptly.
#  * Nodes (netns.sh): slurmd -N <node> per namespace with %n in its spool, pid and log paths, NodeAddr= per
#    node; proctrack/linuxproc and task/none let several slurmd share the host's cgroup filesystem although
#    Debian's build has no multiple-slurmd. slurmctld and slurmdbd listen in the root namespace and are reached
#    at the bridge's address. SlurmdTimeout=60: a node that dies is DOWN (its jobs end NODE_FAIL) within ~60 s,
#    after the launcher's own heartbeat has ended a multi-node row that lost it (30 s; launcher/span.py), as
#    on a real cluster (default 300 s).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
state="${LAUNCHER_CI_STATE:-$repo/.ci/state}/slurm"
ports_base="${LAUNCHER_SLURM_PORT_BASE:-17810}"    # ctld +7, slurmd +8, dbd +9, mariadb +6
ctld_port=$((ports_base + 7)); slurmd_port=$((ports_base + 8)); dbd_port=$((ports_base + 9))
db_port=$((ports_base + 6))
num_gpus="${LAUNCHER_SLURM_GPUS:-8}"
num_cpus="${LAUNCHER_SLURM_CPUS:-96}"               # a v100x8 row asks for 80
mem_mb="${LAUNCHER_SLURM_MEM_MB:-1048576}"          # a v100x8 row asks for 480 GB
cluster="launcherci"
ctl_host="$(hostname -s)"   # slurmctld refuses to start unless SlurmctldHost is this host's name
num_nodes="${LAUNCHER_SLURM_NODES:-2}"
(( num_nodes >= 1 && num_nodes <= 9 )) || { echo "slurm.sh: LAUNCHER_SLURM_NODES=$num_nodes: 1 to 9" >&2; exit 2; }
nodes=(); for ((i = 1; i <= num_nodes; i++)); do nodes+=("lxci-s$i"); done
node_list="lxci-s[1-$num_nodes]"
# shellcheck source=netns.sh
. "$here/netns.sh"
ctl_addr="$netns_prefix.1"
node_addr() { echo "$netns_prefix.1${1#lxci-s}"; }

etc="$state/etc"; conf="$etc/slurm.conf"; dbd_conf="$etc/slurmdbd.conf"
log="$state/log"; spool="$state/spool"; devdir="$state/dev"; dbdir="$state/mariadb"
# unix socket paths must stay under 108 bytes: keep them in the state dir when its path is short
run="$state/run"
if (( ${#run} > 60 )); then
    run="/tmp/launcher-slurm-$(printf '%s' "$state" | md5sum | cut -c1-8)"
fi
munge_sock="$run/munge.sock"; db_sock="$run/mariadb.sock"

export SLURM_CONF="$conf"

say() { printf 'slurm.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

pid_alive() {  # pid_alive PIDFILE: the process named in the file is running
    [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...: poll until COMMAND succeeds
    local limit=$1 what=$2; shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if (( SECONDS >= deadline )); then
            say "$what did not come up within ${limit}s; logs under $log"
            return 1
        fi
        sleep 0.2
    done
}

install_packages() {
    local missing=()
    # mpirun (OpenMPI): the tests check that tensorpack's mpirun gets its ranks in a one-task allocation
    for b in slurmctld slurmd slurmdbd sbatch sacct munged mariadbd mariadb mariadb-install-db mpirun; do
        command -v "$b" >/dev/null 2>&1 || missing+=("$b")
    done
    (( ${#missing[@]} == 0 )) && return 0
    say "installing Slurm, munge, slurmdbd and MariaDB (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d keeps the packages' init scripts from starting daemons we start ourselves
    apt-get install -y -qq --no-install-recommends slurm-wlm slurmctld slurmd slurm-client munge \
        slurmdbd mariadb-server-core mariadb-client-core openmpi-bin >"$state/apt.log" 2>&1 \
        || { tail -20 "$state/apt.log" >&2; die "apt-get install failed (log: $state/apt.log)"; }
}

ensure_cgroup() {
    # slurmd 22.05 refuses to start without a mounted cgroup filesystem, even with proctrack/linuxproc
    if ! grep -q ' /sys/fs/cgroup' /proc/mounts; then
        say "mounting cgroup2 on /sys/fs/cgroup"
        mount -t cgroup2 none /sys/fs/cgroup || die "no cgroup filesystem and cannot mount one"
    fi
}

make_devices() {
    mkdir -p "$devdir"
    local i
    for ((i = 0; i < num_gpus; i++)); do
        [[ -c "$devdir/nvidia$i" ]] || { rm -f "$devdir/nvidia$i"; mknod "$devdir/nvidia$i" c 1 3; }
    done
}

write_configs() {
    mkdir -p "$etc" "$log" "$spool/ctld" "$spool/d" "$run" "$state/munge" "$dbdir"
    chmod 700 "$run"
    cat >"$conf" <<EOF
# Written by .ci/services/slurm.sh: a CI cluster of $num_nodes nodes in network namespaces. Edits are overwritten on start.
ClusterName=$cluster
SlurmctldHost=$ctl_host($ctl_addr)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$munge_sock
StateSaveLocation=$spool/ctld
SlurmdSpoolDir=$spool/d-%n
SlurmctldPidFile=$run/slurmctld.pid
SlurmdPidFile=$run/slurmd-%n.pid
SlurmctldLogFile=$log/slurmctld.log
SlurmdLogFile=$log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
KillWait=10
SlurmdTimeout=60
MinJobAge=300
InactiveLimit=0
Waittime=0
# accounting: slurmctld and the clients reach slurmdbd's munge socket through AccountingStoragePass
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$ctl_addr
AccountingStoragePort=$dbd_port
AccountingStoragePass=$munge_sock
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
$(for n in "${nodes[@]}"; do
    echo "NodeName=$n NodeAddr=$(node_addr "$n") CPUs=$num_cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$num_cpus ThreadsPerCore=1 RealMemory=$mem_mb Gres=gpu:$num_gpus State=UNKNOWN"
done)
PartitionName=ci Nodes=$node_list Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    cat >"$etc/gres.conf" <<EOF
NodeName=$node_list Name=gpu File=$devdir/nvidia[0-$((num_gpus - 1))]
EOF
    cat >"$etc/cgroup.conf" <<EOF
CgroupPlugin=autodetect
IgnoreSystemd=yes
EOF
    (umask 077; cat >"$dbd_conf" <<EOF
# Written by .ci/services/slurm.sh. slurmdbd insists on mode 600 and on sitting beside slurm.conf.
AuthType=auth/munge
AuthInfo=socket=$munge_sock
DbdAddr=$ctl_addr
DbdHost=$ctl_host
DbdPort=$dbd_port
SlurmUser=root
PidFile=$run/slurmdbd.pid
LogFile=$log/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=slurm
StoragePass=launcher-ci
StorageLoc=slurm_acct_db
EOF
)
    chmod 600 "$dbd_conf"
    cat >"$dbdir/my.cnf" <<EOF
[mysqld]
user=root
datadir=$dbdir/data
socket=$db_sock
port=$db_port
bind-address=127.0.0.1
pid-file=$run/mariadb.pid
log-error=$log/mariadb.log
skip-name-resolve
skip-log-bin
innodb_buffer_pool_size=64M
innodb_log_file_size=16M
innodb_lock_wait_timeout=900
[client]
socket=$db_sock
user=root
EOF
}

start_munge() {
    pid_alive "$run/munged.pid" && return 0
    if [[ ! -s "$state/munge/munge.key" ]]; then
        # a key of our own: the cluster is one machine, nothing else needs to share it
        dd if=/dev/urandom of="$state/munge/munge.key" bs=1024 count=1 status=none
    fi
    chmod 700 "$state/munge"; chmod 400 "$state/munge/munge.key"
    rm -f "$munge_sock" "$munge_sock.lock"
    munged --force --socket="$munge_sock" --key-file="$state/munge/munge.key" \
        --pid-file="$run/munged.pid" --log-file="$log/munged.log" --seed-file="$state/munge/munged.seed"
    wait_for 10 munged bash -c "munge -S '$munge_sock' -n | unmunge -S '$munge_sock'"
}

db_sql() { mariadb --defaults-file="$dbdir/my.cnf" "$@"; }

start_mariadb() {
    if ! pid_alive "$run/mariadb.pid"; then
        if [[ ! -d "$dbdir/data/mysql" ]]; then
            mariadb-install-db --defaults-file="$dbdir/my.cnf" --user=root --datadir="$dbdir/data" \
                --auth-root-authentication-method=socket --skip-test-db --force \
                >"$log/mariadb-install.log" 2>&1 || { tail -20 "$log/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
        fi
        rm -f "$db_sock"
        setsid mariadbd --defaults-file="$dbdir/my.cnf" >>"$log/mariadb.log" 2>&1 </dev/null &
    fi
    wait_for 30 mariadbd db_sql -e 'SELECT 1'
    db_sql <<'EOF'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'launcher-ci';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF
}

start_slurmdbd() {
    pid_alive "$run/slurmdbd.pid" || slurmdbd
    # sacctmgr answers only once slurmdbd has connected to the database
    wait_for 30 slurmdbd sacctmgr -n list cluster
}

start_slurmctld() {
    if pid_alive "$run/slurmctld.pid"; then
        scontrol reconfigure >/dev/null 2>&1 || true   # a running controller reads the config just written
    else
        slurmctld   # never -c: keep job ids growing (see the header)
    fi
    wait_for 30 slurmctld scontrol ping
}

start_network() {
    local n
    for n in "${nodes[@]}"; do netns_up "$n" "$(node_addr "$n")"; done
}

start_slurmd() {  # one slurmd per node, each in its namespace as that host (netns.sh)
    local n
    for n in "${nodes[@]}"; do
        pid_alive "$run/slurmd-$n.pid" && continue
        ( netns_exec "$n" "$n" slurmd -N "$n" ) >>"$log/slurmd-$n.start.log" 2>&1 </dev/null
    done
}

node_state() { sinfo -h -n "$1" -o '%T' 2>/dev/null | head -1; }

node_idle() { [[ "$(node_state "$1")" =~ ^(idle|mixed|allocated)$ ]]; }

nodes_idle() { local n; for n in "${nodes[@]}"; do node_idle "$n" || return 1; done; }

ensure_accounts() {
    # slurmctld registers the cluster itself; an account and root's association make `--account`
    # meaningful and let sacct show who ran what
    wait_for 30 "cluster registration" bash -c "sacctmgr -n -P list cluster format=cluster | grep -qx '$cluster'"
    sacctmgr -i -Q add account ci Description="launcher CI" Organization=ci >/dev/null 2>&1 || true
    sacctmgr -i -Q add user root DefaultAccount=ci Account=ci >/dev/null 2>&1 || true
}

print_env() {
    echo "export SLURM_CONF=$conf"
}

cmd_start() {
    [[ $(id -u) == 0 ]] || die "run as root (it starts munged, MariaDB and the Slurm daemons)"
    mkdir -p "$state"
    install_packages
    ensure_cgroup
    make_devices
    write_configs
    start_network
    start_munge
    start_mariadb
    start_slurmdbd
    start_slurmctld
    ensure_accounts
    start_slurmd
    if ! wait_for 30 "the nodes" nodes_idle; then
        # a node left down/drained by an earlier crash (or kill-node): give it back to the scheduler
        local n
        for n in "${nodes[@]}"; do
            node_idle "$n" || scontrol update nodename="$n" state=resume >/dev/null 2>&1 || true
        done
        wait_for 30 "the nodes" nodes_idle || { sinfo -N >&2; die "nodes not idle; see $log/slurmd-*.log"; }
    fi
    say "up: nodes ${nodes[*]} idle, $num_gpus GPUs and $num_cpus CPUs each; accounting cluster $cluster"
    print_env
}

stop_pidfile() {  # stop_pidfile NAME PIDFILE: TERM, wait up to 15 s, then KILL
    local name=$1 f=$2 pid i
    pid_alive "$f" || { rm -f "$f"; return 0; }
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 75; i++)); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$f"; return 0; }
        sleep 0.2
    done
    say "$name (pid $pid) ignored SIGTERM; killing it"
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
}

cmd_stop() {
    local n
    for n in "${nodes[@]}"; do stop_pidfile "slurmd $n" "$run/slurmd-$n.pid"; done
    stop_pidfile slurmd "$run/slurmd.pid"   # a single-node cluster of an earlier version of this script
    # job steps and rows left on the nodes, the namespaces, the bridge once nobody uses it
    for n in "${nodes[@]}"; do netns_down "$n"; done
    stop_pidfile slurmctld "$run/slurmctld.pid"
    stop_pidfile slurmdbd "$run/slurmdbd.pid"
    stop_pidfile mariadbd "$run/mariadb.pid"
    stop_pidfile munged "$run/munged.pid"
    say "stopped"
}

cmd_status() {
    local ok=0 d
    for d in munged mariadb slurmdbd slurmctld "${nodes[@]/#/slurmd-}"; do
        if pid_alive "$run/$d.pid"; then echo "$d: running (pid $(cat "$run/$d.pid"))"
        else echo "$d: stopped"; ok=1; fi
    done
    if [[ -f "$conf" ]] && nodes_idle; then
        sinfo -N -o '%N %P %a %T %G %c %m'
        print_env
    else
        local n
        for n in "${nodes[@]}"; do echo "node: $n $(node_state "$n" || true)"; done
        ok=1
    fi
    return $ok
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    kill-node)
        [[ -n "${2:-}" && " ${nodes[*]} " == *" $2 "* ]] || die "kill-node NODE: one of ${nodes[*]}"
        netns_kill "$2" KILL
        rm -f "$run/slurmd-$2.pid"
        say "node $2: every process in its namespace killed (SIGKILL); slurmctld marks it down within ~60 s" ;;
    *) echo "usage: $0 start|stop|status|kill-node NODE" >&2; exit 2 ;;
esac
