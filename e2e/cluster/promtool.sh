#!/usr/bin/env bash
# Prints the path of promtool, which checks and unit-tests release/build.py's alerting rules
# (e2e/test_release.py). It comes from Debian's prometheus package, extracted, not installed: installing it
# would start a Prometheus server. Cached outside the clone under $CARDPOOL_CACHE, keyed by the package's version.
set -euo pipefail
cache=${CARDPOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cardpool}
version=$(apt-cache policy prometheus | sed -n 's/^  Candidate: //p')
if [[ -z "$version" || "$version" == "(none)" ]]; then
  apt-get update -qq >&2
  version=$(apt-cache policy prometheus | sed -n 's/^  Candidate: //p')
fi
out="$cache/promtool-$version"
if [[ ! -x "$out/promtool" ]]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # apt's _apt user downloads into a folder it can write
  chmod 777 "$work"
  (cd "$work" && apt-get download -q "prometheus=$version" >&2)
  dpkg-deb -x "$work"/prometheus_*.deb "$work/x"
  mkdir -p "$out.tmp"
  cp "$work/x/usr/bin/promtool" "$out.tmp/"
  rm -rf "$out"
  mv "$out.tmp" "$out"
fi
echo "$out/promtool"
