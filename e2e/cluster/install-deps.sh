#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and run the local cluster: openssl (certificates),
# make, Python's venv module, Lua (Argo CD health checks), and Go (Debian's golang-go is older than the pin; Go then fetches the
# toolchain named in e2e/*/go.mod from the module proxy, GOTOOLCHAIN=auto). Does nothing when all are there.
set -euo pipefail
need=()
command -v openssl >/dev/null || need+=(openssl)
command -v make >/dev/null || need+=(make)
command -v git >/dev/null || need+=(git)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v go >/dev/null || need+=(golang-go)
command -v lua5.4 >/dev/null || need+=(lua5.4)  # runs the Argo CD health checks in e2e/test_gitops.py
ldconfig -p 2>/dev/null | grep -q 'libcairo.so.2 ' || need+=(libcairo2)  # cairosvg renders the SVG card map
if ((${#need[@]})); then
  echo "installing Debian packages: ${need[*]}" >&2
  sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
