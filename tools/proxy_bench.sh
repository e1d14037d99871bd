#!/bin/sh
# `redis-discovery proxy` against nginx and HAProxy (issue #16), see
# benches/proxy_peers.rs. Installs what the bench needs (Debian packages;
# root or sudo), builds the CLI and the bench in release, and runs it:
#
#   tools/proxy_bench.sh                  # 10 s runs, 64 connections, 5 rounds, all three
#   tools/proxy_bench.sh 10 64 7 rr       # 7 rounds, round robin everywhere
#   tools/proxy_bench.sh 5 64 3 nginx haproxy
#
# Everything it starts listens on free loopback ports and is stopped at
# the end; it never touches a Redis on 127.0.0.1:6379.
set -eu
cd "$(dirname "$0")/.."

missing=""
for tool in nginx haproxy wrk redis-server; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing:$missing" >&2
    # shellcheck disable=SC2086 # one word per package
    $sudo apt-get install -y $missing >&2 || {
        $sudo apt-get update >&2
        $sudo apt-get install -y $missing >&2
    }
fi

# nginx and haproxy live in /usr/sbin, not on every user's PATH.
export PATH="$PATH:/usr/sbin:/sbin"
exec cargo bench --features cli --bench proxy_peers -- "$@"
