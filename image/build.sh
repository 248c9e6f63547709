#!/usr/bin/env bash
# `make image`: builds the operator image with no container registry and prints its name, archive, size and
# digest (stdout: one "key value" line each; progress on stderr).
#   1. base: a root filesystem holding bookworm's python3, made by mmdebstrap from Debian's own packages
#      (extracted as distroless images are: no maintainer scripts run, no shell) and imported into podman
#   2. wheels: `image/install.py wheels` on the host, from PyPI at constraints.txt's versions
#   3. the Containerfile, built with BASE = that root and the wheels handed in as a build context, offline
#   4. the image pushed to an OCI archive with gzip layers: $CARDPOOL_CACHE/image/cardpool-operator-*.oci.tar
# Each step is cached outside the clone and keyed by its inputs: the base by the Debian suites' InRelease files
# (the archive's state, so a Debian update rebuilds it), this script and mmdebstrap's version; the wheels by
# constraints.txt, pyproject.toml, README.md (the wheel's description), the package's sources and
# image/install.py; the image by both and the Containerfile. The image's tag carries the key.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${CARDPOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cardpool}/image
python=${CARDPOOL_IMAGE_PYTHON:-$here/.venv/bin/python}  # any Python with pip: it only fetches the wheels
mirror=http://deb.debian.org
suites=("debian bookworm" "debian bookworm-updates" "debian-security bookworm-security")
# Debian's podman runs containers with crun, which refuses this machine kind's hybrid cgroup layout (the
# unified hierarchy holds the hugetlb controller); runc does not
podman=(podman --runtime runc)
keep=3  # archives and tags of earlier keys kept

log() { printf '[image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
digest() { sha256sum | cut -c1-12; }

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9  # two builds at once (make image, an e2e session) would share temporary files

start=$SECONDS
sources=()
for entry in "${suites[@]}"; do
  read -r repo suite <<<"$entry"
  sources+=("deb $mirror/$repo $suite main")
done
release=$(for entry in "${suites[@]}"; do
  read -r repo suite <<<"$entry"
  curl -fsS --retry 3 "$mirror/$repo/dists/$suite/InRelease"
done | sha256sum)
base_key=$({ echo "$release"; cat "${BASH_SOURCE[0]}"; mmdebstrap --version; } | digest)
base=localhost/cardpool/base:bookworm-$base_key
if ! "${podman[@]}" image exists "$base"; then
  log "base $base: mmdebstrap (python3 and its dependencies from bookworm)"
  # The dpkg status lists what was extracted, so scanners see the packages and versions; docs, manuals and
  # translations go, each package's copyright stays.
  mmdebstrap --quiet --variant=extract --include=python3 \
    --extract-hook='for deb in "$1"/var/cache/apt/archives/*.deb; do
        dpkg-deb --field "$deb"; echo "Status: install ok installed"; echo; done >"$1/var/lib/dpkg/status"' \
    --extract-hook='find "$1"/usr/share/doc -mindepth 2 -not -name copyright -not -type d -delete;
        rm -rf "$1"/usr/share/man "$1"/usr/share/info "$1"/usr/share/locale "$1"/usr/share/lintian' \
    bookworm - "${sources[@]}" | "${podman[@]}" import --quiet - "$base" >/dev/null
fi

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/pyproject.toml")
wheels_key=$(cd "$here" && git ls-files -co --exclude-standard -- operator constraints.txt pyproject.toml README.md \
  image/install.py | sort | while read -r f; do [[ ! -f "$f" ]] || sha256sum "$f"; done | digest)
wheels=$cache/wheels-$wheels_key
if [[ ! -f "$wheels/.complete" ]]; then
  log "wheels $wheels_key: cardpool $version and its pinned dependencies"
  rm -rf "$wheels.tmp"
  "$python" "$here/image/install.py" wheels "$here" "$wheels.tmp" >&2
  touch "$wheels.tmp/.complete"
  rm -rf "$wheels"; mv "$wheels.tmp" "$wheels"
fi

key=$({ echo "$base_key $wheels_key"; cat "$here/Containerfile"; "${podman[@]}" --version; } | digest)
name=localhost/cardpool/operator:$version-$key
archive=$cache/cardpool-operator-$version-$key.oci.tar
if [[ ! -f "$archive.info" ]]; then
  log "image $name: podman build (no network)"
  # --no-cache: a cached RUN layer is keyed by its command, not by the wheels it mounts
  "${podman[@]}" build --quiet --no-cache --network none --build-arg BASE="$base" \
    --build-context wheels="$wheels" -t "$name" -f "$here/Containerfile" "$here" >/dev/null
  rm -f "$archive" "$archive.digest"
  "${podman[@]}" push --quiet --compression-format gzip --digestfile "$archive.digest" "$name" \
    "oci-archive:$archive:$name"
  unpacked=$("${podman[@]}" image inspect --format '{{.Size}}' "$name")
  {
    echo "image $name"
    echo "archive $archive"
    echo "size $(stat -c %s "$archive" | awk '{printf "%.1f", $1 / 1e6}') MB as gzip layers, $((unpacked / 1000000)) MB unpacked"
    echo "digest $(cat "$archive.digest")"
  } >"$archive.info"
  rm -f "$archive.digest"
  # the newest $keep builds stay
  ls -t "$cache"/cardpool-operator-*.oci.tar.info | tail -n +$((keep + 1)) | while read -r old; do
    "${podman[@]}" rmi --force "$(sed -n 's/^image //p' "$old")" >/dev/null 2>&1 || true
    rm -f "${old%.info}" "$old"
  done
  "${podman[@]}" image ls --format '{{.Repository}}:{{.Tag}}' localhost/cardpool/base | grep -vxF "$base" |
    xargs -r "${podman[@]}" rmi >/dev/null 2>&1 || true  # refused while an image kept above is built on it
  log "built in $((SECONDS - start)) s"
fi
cat "$archive.info"
