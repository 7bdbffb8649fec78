#!/usr/bin/env bash
# Installs and starts what `make run` and `make test` need on a fresh Debian
# machine. Idempotent and quiet when everything is already there.
set -euo pipefail

need_pkgs=()
# pkg-config finds libzmq for github.com/pebbe/zmq4 (cgo).
command -v pkg-config >/dev/null || need_pkgs+=(pkg-config)
pkg-config --exists libzmq 2>/dev/null || need_pkgs+=(libzmq3-dev)

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
