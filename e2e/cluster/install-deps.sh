#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and run the local cluster: openssl (certificates),
# make, Python's venv module, Lua (Argo CD health checks), and Go (Debian's golang-go is older than the pin; Go then fetches the
# toolchain named in e2e/*/go.mod from the module proxy, GOTOOLCHAIN=auto), and what builds and runs the operator
# image (image/build.sh, e2e/test_image.py): mmdebstrap, podman and runc. Does nothing when all are there.
set -euo pipefail
need=()
command -v openssl >/dev/null || need+=(openssl)
command -v make >/dev/null || need+=(make)
command -v git >/dev/null || need+=(git)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v go >/dev/null || need+=(golang-go)
command -v lua5.4 >/dev/null || need+=(lua5.4)  # runs the Argo CD health checks in e2e/test_gitops.py
command -v curl >/dev/null || need+=(curl)  # image/build.sh reads Debian's InRelease files (its cache key)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)  # the image's root from Debian's packages
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)  # podman's crun refuses this machine kind's hybrid cgroup layout
ldconfig -p 2>/dev/null | grep -q 'libcairo.so.2 ' || need+=(libcairo2)  # cairosvg renders the SVG card map
if ((${#need[@]})); then
  echo "installing Debian packages: ${need[*]}" >&2
  sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
