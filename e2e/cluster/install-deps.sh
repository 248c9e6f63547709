#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and run the local cluster: openssl (certificates),
# make, Python's venv module, and Go (Debian's golang-go is older than the pin; Go then fetches the
# toolchain named in e2e/*/go.mod from the module proxy, GOTOOLCHAIN=auto). Does nothing when all are there.
set -euo pipefail
need=()
command -v openssl >/dev/null || need+=(openssl)
command -v make >/dev/null || need+=(make)
command -v git >/dev/null || need+=(git)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v go >/dev/null || need+=(golang-go)
if ((${#need[@]})); then
  echo "installing Debian packages: ${need[*]}" >&2
  sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
