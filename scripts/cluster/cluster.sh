#!/usr/bin/env bash
# A throwaway Prefect cluster on loopback: PostgreSQL, a Prefect server, a
# process work pool and N workers. Every piece keeps its files (data, logs, pid
# files, PREFECT_HOME) in one state directory; every command is idempotent.
#
#   cluster.sh up STATE_DIR [--workers N] [--pool NAME]   all of the below, in order
#   cluster.sh postgres STATE_DIR        install (apt) if missing, init, start; prints the database URL
#   cluster.sh server STATE_DIR          prefect server on a free port (its old one when started again), waits for /api/health
#   cluster.sh pool STATE_DIR [--pool NAME]   also the automation that runs again the flow runs
#                                        whose heartbeats stop: see docs/scaling.md
#   cluster.sh workers STATE_DIR [--workers N] [--pool NAME] [--limit RUNS_PER_WORKER]
#   cluster.sh env STATE_DIR             prints `export PREFECT_API_URL=...` lines for a shell
#   cluster.sh status STATE_DIR
#   cluster.sh down STATE_DIR            stops everything it started (workers, server, postgres)
#
# Environment: DESTATIC_PYTHON (default: the checkout's .venv, else python3),
# DESTATIC_ZOMBIE_AFTER_SECONDS (90): silence after which a running flow run counts as crashed;
# PREFECT_FLOWS_HEARTBEAT_FREQUENCY (30, at least 30) is given to the workers' flow runs;
# PREFECT_WORKER_QUERY_SECONDS and other PREFECT_* settings pass through to workers.
set -euo pipefail

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "cluster.sh: $*" >&2; exit 1; }
log() { echo "cluster.sh: $*" >&2; }

[[ $# -ge 2 ]] || usage
COMMAND=$1
STATE=$2
shift 2
WORKERS=2
POOL=destatic
LIMIT=
while [[ $# -gt 0 ]]; do
    case $1 in
        --workers) WORKERS=${2:?--workers needs a number}; shift 2 ;;
        --pool) POOL=${2:?--pool needs a name}; shift 2 ;;
        --limit) LIMIT=${2:?--limit needs a number}; shift 2 ;;
        *) die "unknown option '$1' (allowed: --workers N, --pool NAME, --limit N)" ;;
    esac
done
[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "--workers '$WORKERS' must be a positive integer"
[[ $POOL =~ ^[A-Za-z0-9_-]+$ ]] || die "--pool '$POOL' may hold only letters, digits, '-' and '_'"
[[ -z $LIMIT || $LIMIT =~ ^[1-9][0-9]*$ ]] || die "--limit '$LIMIT' must be a positive integer"
ZOMBIE_AFTER=${DESTATIC_ZOMBIE_AFTER_SECONDS:-90}
HEARTBEAT=${PREFECT_FLOWS_HEARTBEAT_FREQUENCY:-30}
[[ $ZOMBIE_AFTER =~ ^[0-9]+$ && $ZOMBIE_AFTER -ge 10 ]] ||
    die "DESTATIC_ZOMBIE_AFTER_SECONDS='$ZOMBIE_AFTER' must be a whole number of seconds >= 10"
[[ $HEARTBEAT =~ ^[0-9]+$ && $HEARTBEAT -ge 30 && $HEARTBEAT -lt $ZOMBIE_AFTER ]] ||
    die "PREFECT_FLOWS_HEARTBEAT_FREQUENCY='$HEARTBEAT' must be >= 30 s and below DESTATIC_ZOMBIE_AFTER_SECONDS ($ZOMBIE_AFTER)"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if [[ -n ${DESTATIC_PYTHON:-} ]]; then PYTHON=$DESTATIC_PYTHON
elif [[ -x $REPO/.venv/bin/python ]]; then PYTHON=$REPO/.venv/bin/python
else PYTHON=$(command -v python3); fi
PREFECT_BIN=$(dirname "$PYTHON")/prefect
[[ -x $PREFECT_BIN ]] || PREFECT_BIN=$(command -v prefect || true)

mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
PG_DIR=$STATE/postgres
RUN_DIR=$STATE/run
LOG_DIR=$STATE/logs
export PREFECT_HOME=$STATE/prefect-home
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
mkdir -p "$RUN_DIR" "$LOG_DIR" "$PREFECT_HOME"

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Runs a command as the OS user that owns the database files (PostgreSQL refuses root).
as_pg_user() {
    if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_bin_dir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [[ -n $dir && -x $dir/initdb ]] && echo "$dir"
}

install_postgres() {
    pg_bin_dir >/dev/null && return 0
    [[ $(id -u) -eq 0 ]] || die "PostgreSQL is not installed; run as root or: sudo apt-get install -y postgresql"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-cache show postgresql >/dev/null 2>&1; then
        log "apt-get update (no package list yet)"
        apt-get update -qq </dev/null
    fi
    log "installing postgresql with apt"
    apt-get install -y -qq postgresql </dev/null >"$LOG_DIR/apt.log" 2>&1 || {
        tail -n 20 "$LOG_DIR/apt.log" >&2; die "apt-get install postgresql failed (log: $LOG_DIR/apt.log)"; }
    pg_bin_dir >/dev/null || die "postgresql installed but no initdb under /usr/lib/postgresql/*/bin"
}

database_url() {
    echo "postgresql+asyncpg://prefect:$(cat "$PG_DIR/password")@127.0.0.1:$(cat "$PG_DIR/port")/prefect"
}

pg_running() {
    local bin
    bin=$(pg_bin_dir) || return 1
    [[ -f $PG_DIR/data/PG_VERSION ]] && as_pg_user "$bin/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1
}

start_postgres() {
    install_postgres
    local bin
    bin=$(pg_bin_dir)
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- test -x "$STATE" ||
            die "the postgres user cannot reach $STATE: choose a state directory under a world-readable path (e.g. /tmp)"
    fi
    if [[ ! -f $PG_DIR/data/PG_VERSION ]]; then
        rm -rf "$PG_DIR"
        mkdir -p "$PG_DIR"
        "$PYTHON" -c 'import secrets; print(secrets.token_hex(16))' >"$PG_DIR/password"
        free_port >"$PG_DIR/port"
        [[ $(id -u) -eq 0 ]] && chown -R postgres: "$PG_DIR"
        chmod 700 "$PG_DIR"
        log "initdb in $PG_DIR/data"
        as_pg_user "$bin/initdb" -D "$PG_DIR/data" -U prefect --pwfile="$PG_DIR/password" \
            --auth=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >"$LOG_DIR/initdb.log" 2>&1 ||
            { tail -n 20 "$LOG_DIR/initdb.log" >&2; die "initdb failed"; }
        # Throwaway cluster: loopback only, no unix socket, durability traded for speed.
        as_pg_user tee -a "$PG_DIR/data/postgresql.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $(cat "$PG_DIR/port")
unix_socket_directories = ''
max_connections = 200
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    fi
    if ! pg_running; then
        log "starting postgres on 127.0.0.1:$(cat "$PG_DIR/port")"
        as_pg_user "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 start >/dev/null ||
            { tail -n 20 "$PG_DIR/postgres.log" >&2; die "postgres did not start"; }
    fi
    local port password
    port=$(cat "$PG_DIR/port")
    password=$(cat "$PG_DIR/password")
    if ! PGPASSWORD=$password "$bin/psql" -h 127.0.0.1 -p "$port" -U prefect -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'prefect'" | grep -q 1; then
        PGPASSWORD=$password "$bin/createdb" -h 127.0.0.1 -p "$port" -U prefect prefect
    fi
    database_url
}

stop_postgres() {
    local bin
    if pg_running; then
        bin=$(pg_bin_dir)
        log "stopping postgres"
        as_pg_user "$bin/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 60 stop >/dev/null
    fi
}

# Processes are started in their own session, so that stopping one stops its children too.
# Exited ones may linger as zombies until their adopted parent reaps them: they count as gone.
group_alive() { ps -eo pgid=,stat= | awk -v group="$1" '$1 == group && $2 !~ /^Z/ { found = 1 } END { exit !found }'; }
pid_alive() { [[ -f $1 ]] && ps -o stat= -p "$(cat "$1")" 2>/dev/null | grep -qv '^Z'; }

start_detached() {  # PIDFILE LOGFILE COMMAND...
    local pidfile=$1 logfile=$2
    shift 2
    setsid "$@" </dev/null >>"$logfile" 2>&1 &
    echo $! >"$pidfile"
}

stop_detached() {  # PIDFILE... : TERM every process group, wait up to 20 s, then KILL
    local pidfile pid pids=()
    for pidfile in "$@"; do
        [[ -f $pidfile ]] || continue
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then
            log "stopping $(basename "$pidfile" .pid) (pid $pid)"
            kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        fi
        pids+=("$pid")
    done
    for _ in $(seq 1 100); do
        local alive=0
        for pid in "${pids[@]}"; do group_alive "$pid" && alive=1; done
        [[ $alive -eq 0 ]] && break
        sleep 0.2
    done
    for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
    rm -f "$@"
}

api_url() { echo "http://127.0.0.1:$(cat "$RUN_DIR/server.port")/api"; }

start_server() {
    [[ -x $PREFECT_BIN ]] || die "no prefect command next to $PYTHON"
    local url
    url=$(start_postgres)
    if ! pid_alive "$RUN_DIR/server.pid"; then
        # Started again (after a crash), it takes the port it had: the workers know only that address.
        [[ -s $RUN_DIR/server.port ]] || free_port >"$RUN_DIR/server.port"
        local port
        port=$(cat "$RUN_DIR/server.port")
        log "starting prefect server on 127.0.0.1:$port"
        (
            unset PREFECT_API_URL
            export PREFECT_SERVER_DATABASE_CONNECTION_URL=$url
            # Concurrency leases on disk: the watcher's scan keeps its slot across a restart of the server.
            export PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=prefect.server.concurrency.lease_storage.filesystem
            export PREFECT_UI_API_URL=http://127.0.0.1:$port/api
            start_detached "$RUN_DIR/server.pid" "$LOG_DIR/server.log" \
                "$PREFECT_BIN" server start --host 127.0.0.1 --port "$port"
        )
    fi
    local health
    health="$(api_url)/health"
    for _ in $(seq 1 600); do
        if curl -fsS -o /dev/null "$health" 2>/dev/null; then
            api_url
            return 0
        fi
        pid_alive "$RUN_DIR/server.pid" || { tail -n 30 "$LOG_DIR/server.log" >&2; die "prefect server exited"; }
        sleep 0.5
    done
    tail -n 30 "$LOG_DIR/server.log" >&2
    die "prefect server did not answer $health within 300 s"
}

# A running flow run whose heartbeats stop (its worker or machine died), or a run left Pending
# (its process died before it started, during an outage of the API or its database), is put
# back in the queue (Scheduled, named AwaitingRetry) so that a live worker runs it again.
create_zombie_automation() {
    local url=$1 name=destatic-crashed-runs
    if PREFECT_API_URL=$url "$PREFECT_BIN" automation inspect "$name" >/dev/null 2>&1; then
        return 0
    fi
    log "creating automation '$name' (silence > ${ZOMBIE_AFTER} s)"
    PREFECT_API_URL=$url "$PREFECT_BIN" automation create --from-json "$(cat <<EOF
{"name": "$name",
 "description": "Run again the flow runs not started, or whose heartbeats stopped, for ${ZOMBIE_AFTER} s (their worker is gone)",
 "trigger": {"type": "event", "posture": "Proactive",
             "match": {"prefect.resource.id": "prefect.flow-run.*"},
             "after": ["prefect.flow-run.Pending", "prefect.flow-run.Running", "prefect.flow-run.heartbeat"],
             "expect": ["prefect.flow-run.heartbeat", "prefect.flow-run.Running", "prefect.flow-run.Completed",
                        "prefect.flow-run.Failed", "prefect.flow-run.Cancelled",
                        "prefect.flow-run.Crashed", "prefect.flow-run.Paused",
                        "prefect.flow-run.Suspended"],
             "for_each": ["prefect.resource.id"], "threshold": 1, "within": $ZOMBIE_AFTER},
 "actions": [{"type": "change-flow-run-state", "state": "SCHEDULED", "name": "AwaitingRetry",
              "message": "Not started or no heartbeat for ${ZOMBIE_AFTER} s: its worker is gone"}]}
EOF
)" >/dev/null
}

create_pool() {
    local url
    url=$(start_server)
    if PREFECT_API_URL=$url "$PREFECT_BIN" work-pool inspect "$POOL" >/dev/null 2>&1; then
        log "work pool '$POOL' exists"
    else
        log "creating process work pool '$POOL'"
        PREFECT_API_URL=$url "$PREFECT_BIN" work-pool create "$POOL" --type process >/dev/null
    fi
    create_zombie_automation "$url"
}

start_workers() {
    create_pool
    local url index
    url=$(api_url)
    for index in $(seq 1 "$WORKERS"); do
        pid_alive "$RUN_DIR/worker-$index.pid" && continue
        log "starting worker $index on pool '$POOL'"
        PREFECT_API_URL=$url PREFECT_FLOWS_HEARTBEAT_FREQUENCY=$HEARTBEAT \
            start_detached "$RUN_DIR/worker-$index.pid" "$LOG_DIR/worker-$index.log" \
            "$PREFECT_BIN" worker start --pool "$POOL" --name "worker-$index" --type process ${LIMIT:+--limit "$LIMIT"}
    done
    for index in $(seq 1 "$WORKERS"); do
        for _ in $(seq 1 600); do
            grep -q "Worker 'worker-$index' started" "$LOG_DIR/worker-$index.log" 2>/dev/null && break
            pid_alive "$RUN_DIR/worker-$index.pid" ||
                { tail -n 30 "$LOG_DIR/worker-$index.log" >&2; die "worker $index exited"; }
            sleep 0.2
        done
        grep -q "Worker 'worker-$index' started" "$LOG_DIR/worker-$index.log" ||
            die "worker $index did not start within 120 s (log: $LOG_DIR/worker-$index.log)"
    done
}

# Flow runs started by a worker live in sessions of their own: stop them along with it.
flow_run_groups() {
    local pidfile worker
    for pidfile in "$RUN_DIR"/worker-*.pid; do
        [[ -f $pidfile ]] || continue
        worker=$(cat "$pidfile")
        ps -eo pid=,ppid=,pgid= | awk -v parent="$worker" '$2 == parent { print $3 }'
    done | sort -u
}

# Flow runs of this cluster whose worker is already gone, or that a worker started while
# the workers were being stopped (still in Prefect's workspace supervisor, which becomes
# the engine): found by the PREFECT_HOME the workers gave them.
orphan_flow_run_groups() {
    local pid
    for pid in $(pgrep -f 'prefect[.](engine|runner[.]_workspace_supervisor)' || true); do
        tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "PREFECT_HOME=$PREFECT_HOME" &&
            ps -o pgid= -p "$pid"
    done | tr -d ' ' | sort -u
}

stop_all() {
    local group
    for group in $(flow_run_groups); do
        echo "$group" >"$RUN_DIR/flow-run-$group.pid"
    done
    stop_detached "$RUN_DIR"/worker-*.pid "$RUN_DIR"/flow-run-*.pid
    for group in $(orphan_flow_run_groups); do
        echo "$group" >"$RUN_DIR/flow-run-$group.pid"
    done
    stop_detached "$RUN_DIR"/flow-run-*.pid
    stop_detached "$RUN_DIR/server.pid"
    stop_postgres
}

show_status() {
    local pidfile
    if pg_running; then echo "postgres  running  127.0.0.1:$(cat "$PG_DIR/port")"; else echo "postgres  stopped"; fi
    if pid_alive "$RUN_DIR/server.pid"; then echo "server    running  $(api_url)"; else echo "server    stopped"; fi
    for pidfile in "$RUN_DIR"/worker-*.pid; do
        [[ -e $pidfile ]] || continue
        if pid_alive "$pidfile"; then echo "$(basename "$pidfile" .pid)  running  pid $(cat "$pidfile")"
        else echo "$(basename "$pidfile" .pid)  stopped"; fi
    done
}

case $COMMAND in
    postgres) start_postgres ;;
    server) start_server ;;
    pool) create_pool ;;
    workers) start_workers ;;
    up) start_workers; api_url ;;
    env) pid_alive "$RUN_DIR/server.pid" || die "no server running for $STATE"
         echo "export PREFECT_API_URL=$(api_url)" ;;
    status) show_status ;;
    down) stop_all ;;
    *) usage ;;
esac
