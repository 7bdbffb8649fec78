#!/usr/bin/env bash
# Installs and starts what `make run` and `make test` need on a fresh Debian
# machine. Idempotent and quiet when everything is already there.
set -euo pipefail

need_pkgs=()
# pkg-config finds libzmq for github.com/pebbe/zmq4 (cgo).
command -v pkg-config >/dev/null || need_pkgs+=(pkg-config)
pkg-config --exists libzmq 2>/dev/null || need_pkgs+=(libzmq3-dev)
# Compatibility tests drive the bus with the clients' own Python libraries,
# through Debian's interpreter (the first python3 on PATH may be another).
/usr/bin/python3 -c 'import zmq' 2>/dev/null || need_pkgs+=(python3-zmq)
/usr/bin/python3 -c 'import pika' 2>/dev/null || need_pkgs+=(python3-pika)
# The RabbitMQ backbone's tests run against a real broker.
command -v rabbitmq-server >/dev/null || need_pkgs+=(rabbitmq-server)
# The cluster backbone's tests start their own etcd and use network
# namespaces (ip netns; they need root).
command -v etcd >/dev/null || need_pkgs+=(etcd-server)
command -v ip >/dev/null || need_pkgs+=(iproute2)

if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages ${need_pkgs[*]}; run: sudo apt-get install -y ${need_pkgs[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${need_pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${need_pkgs[@]}" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q "${need_pkgs[@]}" >/dev/null
  }
fi

# With --test: start RabbitMQ when nothing listens on its port. The tests
# that need it fail (not skip) when it is unreachable, so here only warn.
[ "${1:-}" = "--test" ] || exit 0
port_open() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
if ! port_open; then
  echo "setup: starting rabbitmq-server" >&2
  rabbitmq-server -detached >/dev/null 2>&1 || true
  for _ in $(seq 1 60); do
    port_open && break
    sleep 1
  done
  port_open || echo "setup: warning: RabbitMQ is not listening on 127.0.0.1:5672" >&2
fi
exit 0
