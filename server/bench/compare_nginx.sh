#!/bin/sh
# Benchmarks deploy-server against nginx (1 worker, same-size response) with wrk on loopback:
# keep-alive GET of a 3-byte body, median requests/s of RUNS runs each, and the ratio.
# usage: server/bench/compare_nginx.sh path/to/deploy-server [RUNS] [DURATION]
# Needs wrk and nginx (apt-get install wrk nginx-light). Stops both servers by PID on exit.
set -eu
BIN=${1:?usage: compare_nginx.sh path/to/deploy-server [RUNS] [DURATION]}
RUNS=${2:-3}
DURATION=${3:-5s}
OURS_PORT=${OURS_PORT:-18180}
NGINX_PORT=${NGINX_PORT:-18181}
WORK=$(mktemp -d)
OURS_PID=
NGINX_PID=
cleanup() {
  [ -n "$OURS_PID" ] && kill "$OURS_PID" 2>/dev/null && wait "$OURS_PID" 2>/dev/null
  [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

mkdir -p "$WORK/logs"
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location = /healthz { default_type "text/plain; charset=utf-8"; return 200 "ok\n"; }
  }
}
CONF

"$BIN" --listen "127.0.0.1:$OURS_PORT" 2>"$WORK/ours.log" &
OURS_PID=$!
nginx -p "$WORK" -c "$WORK/nginx.conf" &
NGINX_PID=$!
for port in "$OURS_PORT" "$NGINX_PORT"; do  # wait (bounded) until both answer
  tries=0
  until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do
    tries=$((tries + 1)); [ "$tries" -lt 100 ] || { echo "port $port never answered" >&2; exit 1; }
    sleep 0.05
  done
done

rate() {  # requests/s of one wrk run
  wrk -t2 -c32 -d"$DURATION" "http://127.0.0.1:$1/healthz" | awk '/Requests\/sec/ {print $2}'
}
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

: > "$WORK/ours" ; : > "$WORK/nginx"
i=0
while [ "$i" -lt "$RUNS" ]; do  # interleaved, so drift in machine load hits both alike
  rate "$OURS_PORT" >> "$WORK/ours"
  rate "$NGINX_PORT" >> "$WORK/nginx"
  i=$((i + 1))
done
ours=$(median < "$WORK/ours")
theirs=$(median < "$WORK/nginx")
echo "deploy-server runs: $(tr '\n' ' ' < "$WORK/ours")"
echo "nginx runs:         $(tr '\n' ' ' < "$WORK/nginx")"
echo "median requests/s: deploy-server $ours, nginx $theirs"
awk -v a="$ours" -v b="$theirs" 'BEGIN {printf "ratio deploy-server/nginx: %.2f\n", a / b}'
