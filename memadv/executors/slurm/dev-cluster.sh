#!/usr/bin/env bash
# Start or stop a real single-node Slurm cluster (with accounting, so `sacct` works) for memadv's
# tests and for trying sweeps locally.
#
# Usage (as root, on Debian 12; no systemd needed):
#   bash memadv/executors/slurm/dev-cluster.sh [start]   # install if needed, start everything, wait until ready
#   bash memadv/executors/slurm/dev-cluster.sh stop      # stop the daemons started by `start`
#   bash memadv/executors/slurm/dev-cluster.sh status    # print daemon and node state
#
# What `start` does (each step is skipped when already done, so running it twice is fine):
#   1. installs the Debian packages slurm-wlm munge slurmdbd mariadb-server if any is missing;
#   2. starts munged (system key /etc/munge/munge.key, socket /run/munge/munge.socket.2);
#   3. starts a private MariaDB server (data under $DIR/mysql, TCP 127.0.0.1:$MEMADV_SLURM_DB_PORT)
#      and creates the accounting database and its user;
#   4. starts slurmdbd, registers the cluster with sacctmgr, starts slurmctld and slurmd;
#   5. waits (at most $MEMADV_SLURM_WAIT_S seconds) until `sinfo` shows the node usable and
#      `sacct` answers; on failure prints the tails of the logs and exits non-zero.
#
# Everything it writes lives under $DIR (env MEMADV_SLURM_DIR, default /tmp/memadv-slurm):
#   $DIR/etc   slurm.conf, slurmdbd.conf (mode 600), the database password
#   $DIR/state controller and slurmd state, $DIR/run pid files, $DIR/log all logs, $DIR/mysql database.
# The one file outside it is the symlink /etc/slurm/slurm.conf -> $DIR/etc/slurm.conf, so that
# sbatch/sinfo/sacct work without SLURM_CONF; an existing /etc/slurm/slurm.conf that is not ours is
# never overwritten (start fails and says so).
#
# Environment:
#   MEMADV_SLURM_DIR            folder for configs, state and logs        [/tmp/memadv-slurm]
#   MEMADV_SLURM_CLUSTER        cluster name                             [memadv]
#   MEMADV_SLURM_CPUS           CPUs of the node                          [nproc]
#   MEMADV_SLURM_MEM_HEADROOM   MiB of memory kept out of RealMemory     [1024]
#   MEMADV_SLURM_DB_PORT        TCP port of the private MariaDB           [16819]
#   MEMADV_SLURM_WAIT_S         seconds to wait for each daemon / the node [90]
set -Eeuo pipefail

DIR=${MEMADV_SLURM_DIR:-/tmp/memadv-slurm}
CLUSTER=${MEMADV_SLURM_CLUSTER:-memadv}
HEADROOM=${MEMADV_SLURM_MEM_HEADROOM:-1024}
DB_PORT=${MEMADV_SLURM_DB_PORT:-16819}
WAIT_S=${MEMADV_SLURM_WAIT_S:-90}
PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)
NODE=$(hostname -s)
# The marker of the files this script writes; it keeps the script's first path (memadv/slurm/) so that
# files written before the script moved into executors/ are still recognised as its own.
MARKER="# written by memadv/slurm/dev-cluster.sh"
DB_NAME=slurm_acct_db
DB_USER=slurm
SYS_CONF=/etc/slurm/slurm.conf
CONF_CHANGED=0      # slurm.conf rewritten: running slurmctld/slurmd are restarted
DBD_CONF_CHANGED=0  # slurmdbd.conf rewritten: a running slurmdbd is restarted

ETC=$DIR/etc
STATE=$DIR/state
RUN=$DIR/run
LOG=$DIR/log
MYSQL=$DIR/mysql
SOCK=$MYSQL/mysqld.sock
export SLURM_CONF=$ETC/slurm.conf   # slurmdbd reads slurmdbd.conf from the same folder

say() { echo "dev-cluster: $*"; }
die() { echo "dev-cluster: error: $*" >&2; exit 1; }

show_logs() {
    local f
    for f in "$LOG"/*.log; do
        [[ -f $f ]] || continue
        echo "----- last lines of $f -----" >&2
        tail -n 25 "$f" >&2 || true
    done
}

fail() {  # fail MESSAGE: print the message and the log tails, exit 1
    echo "dev-cluster: error: $*" >&2
    show_logs
    exit 1
}

# wait_for SECONDS DESCRIPTION COMMAND...: run COMMAND every second until it succeeds; fail on timeout
wait_for() {
    local limit=$1 what=$2 start=$SECONDS
    shift 2
    until "$@" >/dev/null 2>&1; do
        if (( SECONDS - start >= limit )); then
            fail "timed out after ${limit}s waiting for $what"
        fi
        sleep 1
    done
}

pid_alive() {  # pid_alive PIDFILE: the process named in PIDFILE is running
    local pid
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

require_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (it starts system daemons); try: sudo bash $0 ${1:-start}"
}

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
        say "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${PACKAGES[@]}" >/dev/null
    fi
}

write_if_changed() {  # write_if_changed FILE MODE: stdin -> FILE, untouched when equal; returns 0 if changed
    local tmp
    tmp=$(mktemp "$1.XXXXXX")
    cat >"$tmp"
    chmod "$2" "$tmp"
    if [[ -f $1 ]] && cmp -s "$tmp" "$1"; then
        rm -f "$tmp"
        return 1
    fi
    mv -f "$tmp" "$1"
}

write_configs() {
    mkdir -p "$ETC" "$STATE/ctld" "$STATE/slurmd" "$RUN" "$LOG" "$MYSQL"
    local cpus mem_total real_mem
    cpus=${MEMADV_SLURM_CPUS:-$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)}  # nproc obeys OMP_*
    mem_total=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    real_mem=$((mem_total - HEADROOM))
    ((real_mem >= 256)) || real_mem=$((mem_total * 3 / 4))

    if [[ ! -s $ETC/db.pass ]]; then
        (umask 077 && head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$ETC/db.pass")
    fi

    write_if_changed "$ETC/slurm.conf" 644 <<EOF && CONF_CHANGED=1
$MARKER
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
MailProg=/bin/true
AuthType=auth/munge
# cred_expire is also how long a requeued job waits before it may start again (default 120 s)
AuthInfo=cred_expire=30
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# schedule every 5 s (defaults 60 s / 30 s) so requeued and released jobs start promptly
SchedulerParameters=sched_interval=5,bf_interval=5
SlurmdParameters=config_overrides
JobRequeue=1
MaxArraySize=10001
MaxJobCount=100000
MinJobAge=300
KillWait=10
InactiveLimit=0
SlurmdTimeout=300
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

    write_if_changed "$ETC/slurmdbd.conf" 600 <<EOF && DBD_CONF_CHANGED=1
$MARKER
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
DebugLevel=info
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=$DB_USER
StoragePass=$(<"$ETC/db.pass")
StorageLoc=$DB_NAME
EOF

    # Client commands (sbatch, sinfo, sacct, submitit) read /etc/slurm/slurm.conf.
    mkdir -p "$(dirname "$SYS_CONF")"
    if [[ -L $SYS_CONF ]]; then
        [[ $(readlink "$SYS_CONF") == "$ETC/slurm.conf" ]] || ln -sfn "$ETC/slurm.conf" "$SYS_CONF"
    elif [[ -e $SYS_CONF ]]; then
        grep -qF "$MARKER" "$SYS_CONF" \
            || die "$SYS_CONF exists and was not written by this script; move it away or set SLURM_CONF yourself"
        ln -sfn "$ETC/slurm.conf" "$SYS_CONF"
    else
        ln -s "$ETC/slurm.conf" "$SYS_CONF"
    fi
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    if munge_ok; then return; fi
    say "starting munged"
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/lib/munge 2>/dev/null || true
    if [[ ! -s /etc/munge/munge.key ]]; then
        mkdir -p /etc/munge
        mungekey -c -k /etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key 2>/dev/null || true
        chmod 600 /etc/munge/munge.key
    fi
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    munged --force --log-file="$LOG/munged.log" --pid-file="$RUN/munged.pid" \
        || fail "munged did not start"
    wait_for "$WAIT_S" "munge to answer" munge_ok
}

mysql_root() { mariadb --no-defaults --socket="$SOCK" -uroot "$@"; }
db_ok() { mysqladmin --no-defaults --socket="$SOCK" -uroot ping; }

start_mariadb() {
    if ! db_ok >/dev/null 2>&1; then
        if [[ ! -d $MYSQL/data/mysql ]]; then
            say "initialising the accounting database in $MYSQL/data"
            rm -rf "$MYSQL/data"
            mariadb-install-db --no-defaults --datadir="$MYSQL/data" --user=root \
                --auth-root-authentication-method=socket --skip-test-db \
                >"$LOG/mariadb-install.log" 2>&1 || fail "mariadb-install-db failed (see $LOG/mariadb-install.log)"
        fi
        say "starting MariaDB on 127.0.0.1:$DB_PORT"
        rm -f "$SOCK"
        setsid mariadbd --no-defaults --user=root --datadir="$MYSQL/data" --socket="$SOCK" \
            --pid-file="$RUN/mariadb.pid" --port="$DB_PORT" --bind-address=127.0.0.1 \
            --log-error="$LOG/mariadb.log" --innodb-buffer-pool-size=128M \
            --innodb-lock-wait-timeout=900 --max-connections=200 \
            </dev/null >>"$LOG/mariadb.log" 2>&1 &
        wait_for "$WAIT_S" "MariaDB to answer" db_ok
    fi
    local pass
    pass=$(<"$ETC/db.pass")
    mysql_root <<EOF || fail "could not create the accounting database or its user"
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$pass';
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$pass';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$pass';
ALTER USER '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$pass';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'127.0.0.1';
FLUSH PRIVILEGES;
EOF
}

dbd_ok() { sacctmgr -n -P show cluster format=cluster; }

start_slurmdbd() {
    if ((DBD_CONF_CHANGED)) && pid_alive "$RUN/slurmdbd.pid"; then
        say "slurmdbd.conf changed; restarting slurmdbd"
        stop_pidfile slurmdbd "$RUN/slurmdbd.pid"
    fi
    if ! pid_alive "$RUN/slurmdbd.pid"; then
        say "starting slurmdbd"
        slurmdbd || fail "slurmdbd did not start"
    fi
    wait_for "$WAIT_S" "slurmdbd to answer sacctmgr" dbd_ok
    if ! sacctmgr -n -P show cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"; then
        say "registering cluster $CLUSTER"
        sacctmgr -i add cluster "$CLUSTER" >/dev/null || fail "sacctmgr add cluster $CLUSTER failed"
    fi
}

start_slurm() {
    if ((CONF_CHANGED)) && { pid_alive "$RUN/slurmctld.pid" || pid_alive "$RUN/slurmd.pid"; }; then
        # A restart, not `scontrol reconfigure`: node changes and AuthInfo need one. Running jobs survive.
        say "slurm.conf changed; restarting slurmctld and slurmd"
        stop_pidfile slurmd "$RUN/slurmd.pid"
        stop_pidfile slurmctld "$RUN/slurmctld.pid"
    fi
    if ! pid_alive "$RUN/slurmctld.pid"; then
        say "starting slurmctld"
        slurmctld || fail "slurmctld did not start"
    fi
    wait_for "$WAIT_S" "slurmctld to answer scontrol ping" bash -c 'scontrol ping | grep -q UP'
    if ! pid_alive "$RUN/slurmd.pid"; then
        say "starting slurmd"
        slurmd -N "$NODE" || fail "slurmd did not start"
    fi
}

node_state() { sinfo -h -N -n "$NODE" -o '%t' 2>/dev/null | head -n1; }

wait_ready() {
    local start=$SECONDS state resumed=0
    while :; do
        state=$(node_state || true)
        case $state in
            idle | mix | alloc | comp | idle~ | mix~ | alloc~) break ;;
            down* | drain* | drng* | fail*)
                if ((resumed == 0)); then
                    say "node $NODE is $state; resuming it"
                    scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
                    resumed=1
                fi ;;
        esac
        if ((SECONDS - start >= WAIT_S)); then
            scontrol show node "$NODE" >&2 2>/dev/null || true
            fail "timed out after ${WAIT_S}s waiting for node $NODE to be idle (state: '${state:-none}')"
        fi
        sleep 1
    done
    wait_for "$WAIT_S" "sacct to answer" sacct -n -X
    say "ready: cluster $CLUSTER, node $NODE ($state), partition debug; configs, state and logs in $DIR"
}

start() {
    require_root start
    install_packages
    write_configs
    start_munge
    start_mariadb
    start_slurmdbd
    start_slurm
    wait_ready
}

stop_pidfile() {  # stop_pidfile NAME PIDFILE: SIGTERM, wait up to 20 s, then SIGKILL
    local pid i
    pid_alive "$2" || { rm -f "$2"; return 0; }
    pid=$(<"$2")
    say "stopping $1 (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
    rm -f "$2"
}

stop() {
    require_root stop
    stop_pidfile slurmd "$RUN/slurmd.pid"
    stop_pidfile slurmctld "$RUN/slurmctld.pid"
    stop_pidfile slurmdbd "$RUN/slurmdbd.pid"
    stop_pidfile MariaDB "$RUN/mariadb.pid"
    stop_pidfile munged "$RUN/munged.pid"   # only a munged that `start` launched
    if [[ -L $SYS_CONF && $(readlink "$SYS_CONF") == "$ETC/slurm.conf" ]]; then
        rm -f "$SYS_CONF"
    fi
    say "stopped (state and logs kept in $DIR)"
}

status() {
    local name
    for name in munged mariadb slurmdbd slurmctld slurmd; do
        if pid_alive "$RUN/$name.pid"; then echo "$name: running (pid $(<"$RUN/$name.pid"))"; else echo "$name: not running"; fi
    done
    sinfo 2>&1 || true
}

main() {
    case ${1:-start} in
        start) start ;;
        stop) stop ;;
        status) status ;;
        -h | --help | help) sed -n '2,/^set -E/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' ;;
        *) die "unknown command '${1}'; use start, stop or status" ;;
    esac
}

# Run unless sourced (tests source the script to check its helpers).
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
