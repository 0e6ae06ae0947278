#!/usr/bin/env bash
# A single-node Slurm 22.05 cluster for CI, with 8 GPUs declared and real accounting (slurmdbd + MariaDB).
#
#   .ci/services/slurm.sh start    install (first time), configure, start; wait until the node is idle
#                                  and accounting answers; print the environment the tests need
#   .ci/services/slurm.sh status   print daemons and node state; exit 0 when jobs can be submitted
#   .ci/services/slurm.sh stop     stop the daemons this script started (by their pid files)
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
node="$(hostname -s)"

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
# Written by .ci/services/slurm.sh: a single-node CI cluster. Edits are overwritten on start.
ClusterName=$cluster
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$munge_sock
StateSaveLocation=$spool/ctld
SlurmdSpoolDir=$spool/d
SlurmctldPidFile=$run/slurmctld.pid
SlurmdPidFile=$run/slurmd.pid
SlurmctldLogFile=$log/slurmctld.log
SlurmdLogFile=$log/slurmd.log
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
MinJobAge=300
InactiveLimit=0
Waittime=0
# accounting: slurmctld and the clients reach slurmdbd's munge socket through AccountingStoragePass
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$dbd_port
AccountingStoragePass=$munge_sock
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=$node NodeAddr=127.0.0.1 CPUs=$num_cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$num_cpus ThreadsPerCore=1 RealMemory=$mem_mb Gres=gpu:$num_gpus State=UNKNOWN
PartitionName=ci Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    cat >"$etc/gres.conf" <<EOF
NodeName=$node Name=gpu File=$devdir/nvidia[0-$((num_gpus - 1))]
EOF
    cat >"$etc/cgroup.conf" <<EOF
CgroupPlugin=autodetect
IgnoreSystemd=yes
EOF
    (umask 077; cat >"$dbd_conf" <<EOF
# Written by .ci/services/slurm.sh. slurmdbd insists on mode 600 and on sitting beside slurm.conf.
AuthType=auth/munge
AuthInfo=socket=$munge_sock
DbdAddr=127.0.0.1
DbdHost=$node
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
    pid_alive "$run/slurmctld.pid" || slurmctld   # never -c: keep job ids growing (see the header)
    wait_for 30 slurmctld scontrol ping
}

start_slurmd() {
    pid_alive "$run/slurmd.pid" || slurmd
}

node_state() { sinfo -h -n "$node" -o '%T' 2>/dev/null | head -1; }

node_idle() { [[ "$(node_state)" =~ ^(idle|mixed|allocated)$ ]]; }

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
    start_munge
    start_mariadb
    start_slurmdbd
    start_slurmctld
    ensure_accounts
    start_slurmd
    if ! wait_for 30 "the node" node_idle; then
        # a node left down/drained by an earlier crash: give it back to the scheduler
        scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
        wait_for 15 "the node" node_idle || { sinfo >&2; die "node $node is $(node_state); see $log/slurmd.log"; }
    fi
    say "up: node $node $(node_state), $num_gpus GPUs, $num_cpus CPUs; accounting cluster $cluster"
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
    stop_pidfile slurmd "$run/slurmd.pid"
    stop_pidfile slurmctld "$run/slurmctld.pid"
    stop_pidfile slurmdbd "$run/slurmdbd.pid"
    stop_pidfile mariadbd "$run/mariadb.pid"
    stop_pidfile munged "$run/munged.pid"
    say "stopped"
}

cmd_status() {
    local ok=0 d
    for d in munged mariadb slurmdbd slurmctld slurmd; do
        if pid_alive "$run/$d.pid"; then echo "$d: running (pid $(cat "$run/$d.pid"))"
        else echo "$d: stopped"; ok=1; fi
    done
    if [[ -f "$conf" ]] && node_idle; then
        sinfo -o '%P %a %D %T %G %c %m'
        print_env
    else
        echo "node: ${node} $(node_state || true)"; ok=1
    fi
    return $ok
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
