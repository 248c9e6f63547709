#!/usr/bin/env bash
# Builds the local cluster's binaries (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
# etcd, kwok), the kstatus checker and helm from the pinned Go modules under e2e/{k8s,etcd,kwok,kstatus,helm}
# and prints the folder that holds them.
#
# Each component is cached outside the clone under $CARDPOOL_CACHE (default ~/.cache/cardpool), keyed by
# its pinned version and a hash of its go.mod + go.sum + the Go version, so it is rebuilt only when a pin
# changes. Progress goes to stderr; stdout is only the bin folder.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${CARDPOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cardpool}
goversion=$(go env GOVERSION)
export CGO_ENABLED=0 GOFLAGS=-mod=readonly

log() { printf '[build-binaries %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# key MODULE_DIR VERSION LDFLAGS -> "<version>-<hash of the pins, our own Go sources (e2e/kstatus has
# some), the toolchain and the link flags>"
key() {
  local sum
  sum=$(cat "$here/$1/go.mod" "$here/$1/go.sum" $(find "$here/$1" -maxdepth 1 -name '*.go' | sort) \
    <(echo "$goversion $CGO_ENABLED $3") | sha256sum | cut -c1-12)
  echo "$2-$sum"
}

# pinned MODULE_DIR MODULE_PATH -> the version required in that go.mod
pinned() { (cd "$here/$1" && go list -m -f '{{.Version}}' "$2"); }

# build MODULE_DIR VERSION LDFLAGS PKG... ; sets $out to the component's cache folder
build() {
  local dir=$1 version=$2 ldflags=$3; shift 3
  out="$cache/build/$dir-$(key "$dir" "$version" "$ldflags")"
  if [[ -f "$out/.complete" ]]; then
    if [[ -n "${CARDPOOL_BUILD_VERBOSE:-}" ]]; then log "$dir $version: cached in $out"; fi
    return 0
  fi
  log "$dir $version: building $* (a cold build of all three took 9.5 min on 2 cores)"
  local start=$SECONDS
  rm -rf "$out.tmp"; mkdir -p "$out.tmp"
  (cd "$here/$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp/" "$@")
  touch "$out.tmp/.complete"
  rm -rf "$out"; mv "$out.tmp" "$out"
  log "$dir $version: built in $((SECONDS - start)) s"
}

k8s=$(pinned k8s k8s.io/kubernetes)
minor=${k8s#v1.}; minor=${minor%%.*}
vflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  vflags+=" -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
build k8s "$k8s" "$vflags" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
k8s_out=$out

etcd=$(pinned etcd go.etcd.io/etcd/server/v3)
build etcd "$etcd" "" go.etcd.io/etcd/server/v3
etcd_out=$out
[[ -e "$etcd_out/etcd" ]] || mv "$etcd_out/server" "$etcd_out/etcd"  # go names a /v3 main after "server"

kwok=$(pinned kwok sigs.k8s.io/kwok)
build kwok "$kwok" "-X sigs.k8s.io/kwok/pkg/consts.Version=$kwok -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$k8s" \
  sigs.k8s.io/kwok/cmd/kwok
kwok_out=$out

kstatus=$(pinned kstatus sigs.k8s.io/cli-utils)
build kstatus "$kstatus" "" .
kstatus_out=$out

# helm (e2e/test_helm.py), with its release flags: its version, and the Kubernetes version `helm template` and
# `helm lint` assume (that of its client-go, v0.N -> 1.N, as helm's Makefile derives it). Cold, with an empty
# Go build cache: 4.3 min on 2 cores shared with other work (2.5 min of CPU)
helm=$(pinned helm helm.sh/helm/v3)
helm_kube=$(pinned helm k8s.io/client-go); helm_kube=${helm_kube#v0.}; helm_kube=${helm_kube%%.*}
hflags="-X helm.sh/helm/v3/internal/version.version=$helm -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  hflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$helm_kube"
done
build helm "$helm" "$hflags" helm.sh/helm/v3/cmd/helm
helm_out=$out

# One folder with every binary, named after the component keys.
bin="$cache/bin/$(basename "$k8s_out")_$(basename "$etcd_out")_$(basename "$kwok_out")_$(basename "$kstatus_out")_$(basename "$helm_out")"
if [[ ! -d "$bin" ]]; then
  mkdir -p "$bin.tmp"
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do ln -sf "$k8s_out/$b" "$bin.tmp/$b"; done
  ln -sf "$etcd_out/etcd" "$bin.tmp/etcd"
  ln -sf "$kwok_out/kwok" "$bin.tmp/kwok"
  ln -sf "$kstatus_out/kstatus" "$bin.tmp/kstatus"
  ln -sf "$helm_out/helm" "$bin.tmp/helm"
  rm -rf "$bin"; mv "$bin.tmp" "$bin"
fi
echo "$bin"
