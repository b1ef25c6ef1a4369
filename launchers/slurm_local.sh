#!/usr/bin/env bash
# A single-node SLURM cluster on loopback, for tests and for trying a sweep before a real cluster:
#   launchers/slurm_local.sh start DIR     # munge, MariaDB, slurmdbd, slurmctld, slurmd; state under DIR
#   . DIR/env                              # exports SLURM_CONF (every slurm command needs it)
#   launchers/slurm_local.sh stop DIR
#   launchers/slurm_local.sh install       # the Debian packages, if missing (root, apt-get)
#   launchers/slurm_local.sh with CMD...   # start a cluster in a temp dir, run CMD with SLURM_CONF set, stop it;
#                                          # if the cluster cannot start: say why, exit 0 without running CMD
# Runs as root (SlurmUser=root), without cgroups (proctrack/linuxproc, task/none). Accounting (slurmdbd +
# MariaDB) is what lets submitit see a job that died before writing its result (sacct), instead of waiting.
# Every wait is bounded; a failure prints which daemon did not come up and the tail of its log.
set -uo pipefail

CMD=${1:-}
DIR=${2:-}
PACKAGES="slurm-wlm slurmdbd munge mariadb-server"

die() { echo "slurm_local: $*" >&2; exit 1; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds
wait_for() {
    local limit=$1 what=$2; shift 2
    local end=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -ge $end ] && return 1
        sleep 0.3
    done
    echo "slurm_local: $what up"
}

log_tail() { [ -f "$1" ] && tail -n 15 "$1" >&2; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

install() {
    local missing=()
    for exe in slurmctld slurmd slurmdbd munged mariadbd; do
        command -v "$exe" >/dev/null || [ -x "/usr/sbin/$exe" ] || missing+=("$exe")
    done
    [ ${#missing[@]} -eq 0 ] && { echo "slurm_local: packages present"; return 0; }
    [ "$(id -u)" = 0 ] || die "missing ${missing[*]}; installing $PACKAGES needs root (apt-get)"
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install $PACKAGES"
    echo "slurm_local: installing $PACKAGES"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq || die "apt-get update failed or timed out"
    timeout 600 apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null || die "apt-get install failed"
}

write_configs() {
    local host cpus mem
    host=$(hostname -s)
    cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc obeys OMP_NUM_THREADS; the node has all cores
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    local ctld_port slurmd_port dbd_port db_port
    ctld_port=$(free_port); slurmd_port=$(free_port); dbd_port=$(free_port); db_port=$(free_port)
    mkdir -p "$DIR"/{etc,state,spool,log,run,munge,db}
    chmod 700 "$DIR/munge"
    cat > "$DIR/etc/slurm.conf" <<EOF
ClusterName=dmflocal
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
# cred_expire: a requeued job may start again after that many seconds (default 120)
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$dbd_port
AccountingStoragePass=$DIR/munge/munge.socket
SchedulerParameters=batch_sched_delay=0
KillWait=5
MailProg=/bin/true
ReturnToService=2
MinJobAge=300
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    cat > "$DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$dbd_port
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=slurm
StoragePass=dmflocal
StorageLoc=slurm_acct_db
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
EOF
    chmod 600 "$DIR/etc/slurmdbd.conf"
    echo "$db_port" > "$DIR/run/mariadb.port"
    cat > "$DIR/env" <<EOF
export SLURM_CONF=$DIR/etc/slurm.conf
EOF
}

start() {
    [ -n "$DIR" ] || die "usage: $0 start DIR"
    for exe in slurmctld slurmd slurmdbd munged mariadbd mariadb-install-db; do
        command -v "$exe" >/dev/null || die "$exe not found (run: $0 install)"
    done
    [ "$(id -u)" = 0 ] || die "runs as root only (SlurmUser=root, no cgroups)"
    [ -e "$DIR/env" ] && die "$DIR already holds a cluster; stop it first"
    mkdir -p "$DIR" && DIR=$(cd "$DIR" && pwd)
    write_configs
    export SLURM_CONF=$DIR/etc/slurm.conf
    local sock=$DIR/munge/munge.socket db_port
    db_port=$(cat "$DIR/run/mariadb.port")

    timeout 20 mungekey -c -k "$DIR/munge/munge.key" -f >/dev/null 2>&1 ||
        dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 600 "$DIR/munge/munge.key"
    timeout 20 munged -f --key-file="$DIR/munge/munge.key" --socket="$sock" --pid-file="$DIR/run/munged.pid" \
        --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/seed" ||
        { log_tail "$DIR/log/munged.log"; die "munged did not start"; }
    wait_for 10 munge bash -c "munge -S '$sock' -n | unmunge -S '$sock'" || die "munge does not authenticate"

    timeout 120 mariadb-install-db --no-defaults --datadir="$DIR/db" --user=root \
        --auth-root-authentication-method=normal --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1 ||
        { log_tail "$DIR/log/mariadb-install.log"; die "mariadb-install-db failed"; }
    (mariadbd --no-defaults --datadir="$DIR/db" --user=root --bind-address=127.0.0.1 --port="$db_port" \
        --socket="$DIR/run/mariadb.sock" --pid-file="$DIR/run/mariadb.pid" --log-error="$DIR/log/mariadb.log" \
        --innodb-buffer-pool-size=64M --skip-name-resolve >/dev/null 2>&1 &)
    local sql=(mariadb --no-defaults --socket="$DIR/run/mariadb.sock" -uroot)
    wait_for 60 mariadb "${sql[@]}" -e "select 1" || { log_tail "$DIR/log/mariadb.log"; die "mariadb did not start"; }
    "${sql[@]}" -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'dmflocal';
                    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" || die "could not create the slurm db user"

    timeout 20 slurmdbd || { log_tail "$DIR/log/slurmdbd.log"; die "slurmdbd did not start"; }
    wait_for 30 slurmdbd timeout 5 sacctmgr -n list cluster ||
        { log_tail "$DIR/log/slurmdbd.log"; die "slurmdbd does not answer"; }
    timeout 10 sacctmgr -i add cluster dmflocal >/dev/null 2>&1

    timeout 20 slurmctld || { log_tail "$DIR/log/slurmctld.log"; die "slurmctld did not start"; }
    wait_for 30 slurmctld timeout 5 scontrol ping || { log_tail "$DIR/log/slurmctld.log"; die "slurmctld does not answer"; }
    timeout 20 slurmd -N "$(hostname -s)" || { log_tail "$DIR/log/slurmd.log"; die "slurmd did not start"; }
    wait_for 30 "node (idle)" bash -c "timeout 5 sinfo -h -o %t | grep -qx idle" ||
        { log_tail "$DIR/log/slurmd.log"; log_tail "$DIR/log/slurmctld.log"; die "the node did not become idle"; }
    echo "slurm_local: cluster up; . $DIR/env"
}

# kill_pidfile FILE SECONDS: SIGTERM, wait, SIGKILL
kill_pidfile() {
    local pid
    [ -f "$1" ] || return 0
    pid=$(cat "$1" 2>/dev/null) || return 0
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || return 0
    local end=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.3; done
    kill -9 "$pid" 2>/dev/null
    return 0
}

stop() {
    [ -n "$DIR" ] && [ -d "$DIR" ] || die "usage: $0 stop DIR (a directory given to start)"
    DIR=$(cd "$DIR" && pwd)
    export SLURM_CONF=$DIR/etc/slurm.conf
    # slurmd ignores SIGTERM once the controller is gone: shut both down through the controller first
    timeout 15 scancel --full --quiet --user=root >/dev/null 2>&1
    timeout 15 scontrol shutdown >/dev/null 2>&1
    kill_pidfile "$DIR/run/slurmd.pid" 10
    kill_pidfile "$DIR/run/slurmctld.pid" 10
    kill_pidfile "$DIR/run/slurmdbd.pid" 10
    timeout 20 mariadb-admin --no-defaults --socket="$DIR/run/mariadb.sock" -uroot shutdown >/dev/null 2>&1
    kill_pidfile "$DIR/run/mariadb.pid" 10
    timeout 10 munged --stop --socket="$DIR/munge/munge.socket" >/dev/null 2>&1
    kill_pidfile "$DIR/run/munged.pid" 5
    rm -f "$DIR/env"
    echo "slurm_local: stopped"
}

with() {
    local dir rc
    dir=$(mktemp -d /tmp/dmf-slurm.XXXXXX)
    if ! (DIR=$dir; start); then
        echo "slurm_local: no local cluster (see above); skipping: $*" >&2
        (DIR=$dir; stop) >/dev/null 2>&1
        rm -rf "$dir"
        return 0
    fi
    SLURM_CONF=$dir/etc/slurm.conf "$@"
    rc=$?
    (DIR=$dir; stop)
    rm -rf "$dir"
    return $rc
}

case "$CMD" in
    install) install ;;
    with) shift; with "$@" ;;
    start) start ;;
    stop) stop ;;
    *) die "usage: $0 install | start DIR | stop DIR | with CMD..." ;;
esac
