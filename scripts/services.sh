#!/usr/bin/env bash
# Installs, starts, stops and reports the two services the integration tests
# need, both on loopback only:
#   rabbitmq   Debian's rabbitmq-server (AMQP 127.0.0.1:5672, management
#              127.0.0.1:15672, plugins rabbitmq_management and
#              rabbitmq_consistent_hash_exchange, guest/guest)
#   cassandra  one Cassandra 5.0 node (CQL 127.0.0.1:9042), cassandra-all's
#              runtime closure from Maven Central, run on Debian's JDK 17
#
#   scripts/services.sh start|stop|status|restart [rabbitmq|cassandra|all]
#
# The service defaults to all. `start` and `stop` are idempotent (exit 0 when
# already in the wanted state). `status` prints one line per service on
# stdout and exits 0 when every requested service is running, 3 otherwise.
# Progress goes to stderr, prefixed with "services:". Needs root and
# Debian (apt-get); uses neither systemd nor Docker.
#
# Environment:
#   SLUICE_SERVICES_DIR       state and cache outside the repo (default
#                             /var/cache/sluice); Cassandra's jars, config,
#                             data and log live in $SLUICE_SERVICES_DIR/cassandra
#   SLUICE_CASSANDRA_VERSION  pin a cassandra-all version (default: the newest
#                             5.0.x on Maven Central, at first resolution)
#   SLUICE_CASSANDRA_HEAP     Cassandra's heap, -Xms = -Xmx (default 768m)
#   SLUICE_JAVA               the java binary (default Debian's JDK 17;
#                             Cassandra 5.0 refuses Java > 17)
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

STATE_DIR="${SLUICE_SERVICES_DIR:-/var/cache/sluice}"
C_DIR="$STATE_DIR/cassandra"
C_LIB="$C_DIR/lib"
C_CONF="$C_DIR/conf"
C_DATA="$C_DIR/data"
C_PIDFILE="$C_DIR/cassandra.pid"
C_LOG="$C_DIR/cassandra.log"
C_MARKER="$C_LIB/.complete"
C_HEAP="${SLUICE_CASSANDRA_HEAP:-768m}"
C_START_TIMEOUT=180
JAVA="${SLUICE_JAVA:-/usr/lib/jvm/java-17-openjdk-amd64/bin/java}"

RMQ_NODE=rabbit@localhost
RMQ_PIDFILE="/var/lib/rabbitmq/mnesia/$RMQ_NODE.pid"
RMQ_LOG="/var/log/rabbitmq/$RMQ_NODE.log"
RMQ_PLUGINS="rabbitmq_management rabbitmq_consistent_hash_exchange"

log() { echo "services: $*" >&2; }
die() { log "error: $*"; exit 1; }
usage() {
    echo "usage: $0 start|stop|status|restart [rabbitmq|cassandra|all]" >&2
    exit 2
}

now_ms() { date +%s%3N; }
since() { # prints the seconds elapsed since $1 (from now_ms), e.g. "12.3 s"
    local ms=$(($(now_ms) - $1))
    printf '%d.%d s' $((ms / 1000)) $((ms % 1000 / 100))
}

listening() { # port: true when something listens on that TCP port
    [ -n "$(ss -Hltn "( sport = :$1 )" 2>/dev/null)" ]
}

alive() { # pid [cmdline pattern]: true when the process exists (and matches)
    if [ -z "$1" ] || ! kill -0 "$1" 2>/dev/null; then return 1; fi
    [ -z "${2:-}" ] || tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q -- "$2"
}

rss() { # pid: resident set size in MiB
    awk '/^VmRSS:/ { printf "%d MiB", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"
}

write_if_changed() { # path: replaces the file with stdin only when it differs
    local tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if cmp -s "$tmp" "$1"; then
        rm -f "$tmp"
    else
        chmod 644 "$tmp"
        mv "$tmp" "$1"
        log "wrote $1"
    fi
}

apt_install() { # packages...: installs what is missing, refreshing lists only when needed
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    export DEBIAN_FRONTEND=noninteractive
    local t0
    t0=$(now_ms)
    log "installing ${missing[*]} from apt"
    for p in "${missing[@]}"; do
        if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
            apt-get update -q >&2
            break
        fi
    done
    # A stale package list can name files the mirror no longer has: refresh once.
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
        apt-get update -q >&2
        apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
    fi
    log "installed ${missing[*]} in $(since "$t0")"
}

# ---------------------------------------------------------------- rabbitmq

rmq_pid() {
    local pid=""
    [ -r "$RMQ_PIDFILE" ] && pid=$(tr -dc '0-9' <"$RMQ_PIDFILE")
    if alive "$pid" beam; then echo "$pid"; fi
}

rmq_running() {
    [ -n "$(rmq_pid)" ] && listening 5672
}

rmq_configure() {
    mkdir -p /etc/rabbitmq
    # Sourced by the rabbitmq-* scripts: NODENAME keeps the node name (and so
    # the data directory) independent of the machine's hostname, and
    # ERL_EPMD_ADDRESS keeps epmd on loopback. The file-handle limit is
    # raised here because the broker runs via `su rabbitmq`, which resets
    # limits: it needs a handle per durable queue while it recovers them at
    # boot, and with 1024 it stalled for good past ~930 queues (seen on a
    # machine where test runs had left 961).
    write_if_changed /etc/rabbitmq/rabbitmq-env.conf <<'CONF'
# Written by sluice scripts/services.sh; rewritten on every start.
NODENAME=rabbit@localhost
export ERL_EPMD_ADDRESS=127.0.0.1
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
CONF
    write_if_changed /etc/rabbitmq/rabbitmq.conf <<'CONF'
# Written by sluice scripts/services.sh; rewritten on every start.
listeners.tcp.default = 127.0.0.1:5672
management.tcp.ip = 127.0.0.1
management.tcp.port = 15672
distribution.listener.interface = 127.0.0.1
CONF
    local p missing=""
    for p in $RMQ_PLUGINS; do
        grep -qw "$p" /etc/rabbitmq/enabled_plugins 2>/dev/null || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        # shellcheck disable=SC2086 # word splitting intended
        rabbitmq-plugins -q enable --offline $RMQ_PLUGINS >&2
    fi
}

rmq_start() {
    if rmq_running; then
        log "rabbitmq already running (pid $(rmq_pid))"
        return 0
    fi
    apt_install rabbitmq-server
    export ERL_EPMD_ADDRESS=127.0.0.1
    local t0 i
    t0=$(now_ms)
    if [ -z "$(rmq_pid)" ]; then
        if listening 5672 || listening 15672; then
            die "port 5672 or 15672 is taken by a process this script did not start: $(ss -Hltnp '( sport = :5672 or sport = :15672 )' | tr -s ' ' | cut -d' ' -f4,6 | tr '\n' ' ')"
        fi
        rmq_configure
        log "starting rabbitmq"
        rabbitmq-server -detached >/dev/null 2>&1 9>&- || rmq_fail "rabbitmq-server -detached failed"
    else
        log "rabbitmq process $(rmq_pid) exists but is not listening yet: waiting for it"
    fi
    # ping answers before the broker has booted, and await_startup returns at
    # once when the Erlang node is not up yet: so ping first, then await.
    for i in $(seq 60); do
        rabbitmq-diagnostics -q ping >/dev/null 2>&1 && break
        [ "$i" -lt 60 ] || { rmq_fail "rabbitmq did not answer ping within 60 s"; }
        sleep 1
    done
    rabbitmqctl -q await_startup --timeout 120 >&2 || rmq_fail "rabbitmq did not finish booting"
    rmq_running || rmq_fail "rabbitmq booted but nothing listens on 5672"
    local pid
    pid=$(rmq_pid)
    log "rabbitmq started in $(since "$t0") (pid $pid, $(rss "$pid"))"
    rmq_check_loopback
}

rmq_fail() {
    log "error: $1; last 40 lines of $RMQ_LOG:"
    tail -n 40 "$RMQ_LOG" >&2 2>/dev/null || true
    exit 1
}

rmq_check_loopback() { # warns about any RabbitMQ/epmd port bound beyond loopback
    local open
    open=$(ss -Hltnp 2>/dev/null | awk '/"(beam\.smp|epmd)"/ && $4 !~ /^(127\.0\.0\.1|\[::1\]):/ { print $4 }' | tr '\n' ' ')
    if [ -n "$open" ]; then
        log "warning: rabbitmq/epmd listen beyond loopback on: $open"
    fi
}

rmq_stop() {
    local pid i
    pid=$(rmq_pid)
    if [ -z "$pid" ]; then
        log "rabbitmq already stopped"
    else
        local t0
        t0=$(now_ms)
        # With the pid file, stop waits until the process has gone.
        rabbitmqctl -q stop "$RMQ_PIDFILE" >/dev/null 9>&- || true
        for i in $(seq 30); do
            alive "$pid" || break
            [ "$i" -lt 30 ] || { log "rabbitmq pid $pid still alive: KILL"; kill -KILL "$pid" 2>/dev/null || true; }
            sleep 1
        done
        log "rabbitmq stopped in $(since "$t0")"
    fi
    # rabbitmqctl stop leaves epmd running; end it when no Erlang node is left.
    if command -v epmd >/dev/null && epmd -names >/dev/null 2>&1 \
        && ! epmd -names 2>/dev/null | grep -q '^name '; then
        epmd -kill >/dev/null 2>&1 || true
    fi
}

rmq_status() {
    local pid
    pid=$(rmq_pid)
    if [ -n "$pid" ] && listening 5672; then
        echo "services: rabbitmq running pid=$pid port=5672 management=15672 rss=$(rss "$pid")"
    elif [ -n "$pid" ]; then
        echo "services: rabbitmq starting pid=$pid (5672 not listening yet)"
        return 3
    else
        echo "services: rabbitmq stopped"
        return 3
    fi
}

# ---------------------------------------------------------------- cassandra

c_pid() {
    local pid=""
    [ -r "$C_PIDFILE" ] && pid=$(tr -dc '0-9' <"$C_PIDFILE")
    if alive "$pid" CassandraDaemon; then echo "$pid"; fi
}

c_version() { if [ -r "$C_MARKER" ]; then cat "$C_MARKER"; else echo "?"; fi; }

c_resolve() { # the runtime closure of cassandra-all into $C_LIB, once
    if [ -r "$C_MARKER" ] && { [ -z "${SLUICE_CASSANDRA_VERSION:-}" ] || [ "$(cat "$C_MARKER")" = "$SLUICE_CASSANDRA_VERSION" ]; }; then
        return 0
    fi
    command -v mvn >/dev/null || apt_install maven
    local work="$C_DIR/resolve" t0 v jar
    mkdir -p "$work"
    t0=$(now_ms)
    # Without a pin: the newest 5.0.x (a range, which Maven resolves from the
    # repository's metadata; pre-releases sort below 5.0.0), then fixed ones.
    local candidates=("${SLUICE_CASSANDRA_VERSION:-}")
    [ -n "${SLUICE_CASSANDRA_VERSION:-}" ] || candidates=("[5.0.0,5.0.999]" 5.0.8 5.0.7 5.0.6 5.0.5)
    for v in "${candidates[@]}"; do
        log "resolving org.apache.cassandra:cassandra-all:$v with Maven"
        cat >"$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
 <groupId>local.sluice</groupId><artifactId>cassandra-runtime</artifactId><version>1</version><packaging>pom</packaging>
 <dependencies><dependency><groupId>org.apache.cassandra</groupId>
  <artifactId>cassandra-all</artifactId><version>$v</version></dependency></dependencies></project>
POM
        rm -rf "$C_LIB.tmp"
        if mvn -B -q -f "$work/pom.xml" \
            org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$C_LIB.tmp" >"$work/mvn.log" 2>&1 \
            && jar=$(find "$C_LIB.tmp" -maxdepth 1 -name 'cassandra-all-5.0.*.jar' | head -n1) \
            && [ -n "$jar" ]; then
            jar=${jar##*/cassandra-all-}
            rm -rf "$C_LIB"
            mv "$C_LIB.tmp" "$C_LIB"
            echo "${jar%.jar}" >"$C_MARKER"
            log "resolved cassandra-all $(c_version) ($(find "$C_LIB" -name '*.jar' | wc -l) jars) in $(since "$t0")"
            return 0
        fi
        log "cassandra-all $v did not resolve; last lines of $work/mvn.log:"
        grep -v 'jmc5.path' "$work/mvn.log" | tail -n 10 >&2 || true
    done
    die "no cassandra-all 5.0.x resolved"
}

c_configure() {
    mkdir -p "$C_CONF/triggers" "$C_DATA"/{data,commitlog,saved_caches,hints,cdc_raw,logs}
    write_if_changed "$C_CONF/cassandra.yaml" <<YAML
# Written by sluice scripts/services.sh; rewritten on every start.
# A single test node on loopback, sized for a 2-core box (5.0 key names;
# Cassandra 5.0 rejects unknown keys).
cluster_name: sluice-dev
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: 7000
native_transport_port: 9042
start_native_transport: true
data_file_directories:
  - $C_DATA/data
commitlog_directory: $C_DATA/commitlog
saved_caches_directory: $C_DATA/saved_caches
hints_directory: $C_DATA/hints
cdc_raw_directory: $C_DATA/cdc_raw
cdc_enabled: false
commitlog_sync: periodic
commitlog_sync_period: 10s
commitlog_segment_size: 32MiB
auto_snapshot: false
incremental_backups: false
memtable_allocation_type: heap_buffers
concurrent_compactors: 1
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 8
key_cache_size: 16MiB
counter_cache_size: 0MiB
YAML
    write_if_changed "$C_CONF/logback.xml" <<'XML'
<configuration scan="false">
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
XML
    local jamm
    jamm=$(find "$C_LIB" -maxdepth 1 -name 'jamm-*.jar' | head -n1)
    [ -n "$jamm" ] || die "no jamm jar in $C_LIB"
    # One argument a line, read by java from the file (java @file).
    write_if_changed "$C_CONF/jvm.args" <<ARGS
-Xms$C_HEAP
-Xmx$C_HEAP
-Xss256k
-XX:+UseG1GC
-XX:+ParallelRefProcEnabled
-XX:MaxTenuringThreshold=1
-XX:G1HeapRegionSize=16m
-XX:ActiveProcessorCount=2
-XX:+ExitOnOutOfMemoryError
-ea
-da:net.openhft...
-XX:+UseThreadPriorities
-XX:+PerfDisableSharedMem
-Djava.net.preferIPv4Stack=true
"-javaagent:$jamm"
-Djdk.attach.allowAttachSelf=true
-Dio.netty.tryReflectionSetAccessible=true
-Dio.netty.allocator.useCacheForAllThreads=true
-Dio.netty.allocator.maxOrder=11
--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED
--add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
--add-exports=java.management/com.sun.jmx.remote.security=ALL-UNNAMED
--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED
--add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED
--add-exports=java.sql/java.sql=ALL-UNNAMED
--add-exports=java.base/java.lang.ref=ALL-UNNAMED
--add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED
--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
--add-exports=jdk.attach/sun.tools.attach=ALL-UNNAMED
--add-opens=java.base/java.lang.module=ALL-UNNAMED
--add-opens=java.base/jdk.internal.loader=ALL-UNNAMED
--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED
--add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED
--add-opens=java.base/jdk.internal.math=ALL-UNNAMED
--add-opens=java.base/jdk.internal.module=ALL-UNNAMED
--add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED
--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED
--add-opens=java.base/sun.nio.ch=ALL-UNNAMED
--add-opens=java.base/java.io=ALL-UNNAMED
--add-opens=java.base/java.lang.reflect=ALL-UNNAMED
--add-opens=java.base/java.lang=ALL-UNNAMED
--add-opens=java.base/java.util=ALL-UNNAMED
--add-opens=java.base/java.nio=ALL-UNNAMED
--add-opens=jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
"-Dcassandra.config=file://$C_CONF/cassandra.yaml"
"-Dcassandra.storagedir=$C_DATA"
"-Dcassandra.logdir=$C_DATA/logs"
-Dcassandra-foreground=yes
-Dcassandra.jmx.local.port=7199
"-Dcassandra.triggers_dir=$C_CONF/triggers"
"-Dlogback.configurationFile=$C_CONF/logback.xml"
-Dcassandra.skip_wait_for_gossip_to_settle=0
-Dcassandra.load_ring_state=false
-Dcassandra.unsafesystem=true
-cp
"$C_LIB/*"
ARGS
}

c_cql_ready() { # true when 127.0.0.1:9042 answers a CQL v4 OPTIONS with SUPPORTED
    if python3 -c '' >/dev/null 2>&1; then
        python3 - <<'PY' 2>/dev/null
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", 9042), timeout=5)
s.sendall(struct.pack(">BBhBI", 0x04, 0, 1, 0x05, 0))  # v4 request, OPTIONS
head = b""
while len(head) < 9:
    chunk = s.recv(9 - len(head))
    if not chunk:
        sys.exit(1)
    head += chunk
version, _, _, opcode, _ = struct.unpack(">BBhBI", head)
sys.exit(0 if version == 0x84 and opcode == 0x06 else 1)  # v4 response, SUPPORTED
PY
    else
        grep -q 'Startup complete' "$C_LOG"
    fi
}

c_fail() {
    log "error: $1; last 40 lines of $C_LOG:"
    tail -n 40 "$C_LOG" >&2 || true
    exit 1
}

c_start() {
    local pid t0
    pid=$(c_pid)
    if [ -n "$pid" ] && listening 9042 && c_cql_ready; then
        log "cassandra already running (pid $pid)"
        return 0
    fi
    [ -x "$JAVA" ] || apt_install openjdk-17-jre-headless
    [ -x "$JAVA" ] || die "no Java 17 at $JAVA"
    c_resolve
    t0=$(now_ms)
    if [ -z "$pid" ]; then
        if listening 9042 || listening 7000; then
            die "port 9042 or 7000 is taken by a process this script did not start: $(ss -Hltnp '( sport = :9042 or sport = :7000 )' | tr -s ' ' | cut -d' ' -f4,6 | tr '\n' ' ')"
        fi
        c_configure
        [ ! -f "$C_LOG" ] || mv -f "$C_LOG" "$C_LOG.1"
        log "starting cassandra $(c_version) (heap $C_HEAP, data in $C_DATA)"
        # setsid: its own session, so it outlives the shell that started it.
        (cd "$C_DIR" && exec setsid nohup "$JAVA" @"$C_CONF/jvm.args" \
            org.apache.cassandra.service.CassandraDaemon </dev/null >"$C_LOG" 2>&1 9>&-) &
        pid=$!
        echo "$pid" >"$C_PIDFILE"
    else
        log "cassandra pid $pid exists but CQL does not answer yet: waiting for it"
    fi
    local deadline=$((SECONDS + C_START_TIMEOUT))
    while :; do
        alive "$pid" || { rm -f "$C_PIDFILE"; c_fail "cassandra (pid $pid) exited during startup"; }
        if listening 9042 && c_cql_ready; then break; fi
        [ "$SECONDS" -lt "$deadline" ] || c_fail "cassandra did not answer CQL on 127.0.0.1:9042 within ${C_START_TIMEOUT} s"
        sleep 1
    done
    log "cassandra started in $(since "$t0") (pid $pid, $(rss "$pid"))"
}

c_stop() {
    local pid t0 i
    pid=$(c_pid)
    if [ -z "$pid" ]; then
        rm -f "$C_PIDFILE"
        log "cassandra already stopped"
        return 0
    fi
    t0=$(now_ms)
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 30); do
        alive "$pid" || break
        sleep 1
    done
    if alive "$pid"; then
        log "cassandra pid $pid still alive after 30 s: KILL"
        kill -KILL "$pid" 2>/dev/null || true
        for i in $(seq 10); do alive "$pid" || break; sleep 1; done
    fi
    rm -f "$C_PIDFILE"
    log "cassandra stopped in $(since "$t0")"
}

c_status() {
    local pid
    pid=$(c_pid)
    if [ -n "$pid" ] && listening 9042; then
        echo "services: cassandra running pid=$pid port=9042 version=$(c_version) rss=$(rss "$pid")"
    elif [ -n "$pid" ]; then
        echo "services: cassandra starting pid=$pid (9042 not listening yet)"
        return 3
    else
        echo "services: cassandra stopped"
        return 3
    fi
}

# ---------------------------------------------------------------- main

if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
action=$1
case "${2:-all}" in
    rabbitmq) services=(rabbitmq) ;;
    cassandra) services=(cassandra) ;;
    all) services=(rabbitmq cassandra) ;;
    *) usage ;;
esac
prefix() { case $1 in rabbitmq) echo rmq ;; cassandra) echo c ;; esac; }

case "$action" in
    status)
        rc=0
        for s in "${services[@]}"; do "$(prefix "$s")_status" || rc=3; done
        exit "$rc"
        ;;
    start | stop | restart) ;;
    *) usage ;;
esac

[ "$(id -u)" -eq 0 ] || die "run as root (installs packages, writes /etc/rabbitmq)"
mkdir -p "$STATE_DIR"
# One start/stop at a time; fd 9 is closed for the services themselves.
exec 9>"$STATE_DIR/services.lock"
flock -w 600 9 || die "another services.sh holds $STATE_DIR/services.lock"

case "$action" in
    start) for s in "${services[@]}"; do "$(prefix "$s")_start"; done ;;
    stop) for s in "${services[@]}"; do "$(prefix "$s")_stop"; done ;;
    restart)
        for s in "${services[@]}"; do "$(prefix "$s")_stop"; done
        for s in "${services[@]}"; do "$(prefix "$s")_start"; done
        ;;
esac
