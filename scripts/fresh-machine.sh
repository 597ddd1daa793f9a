#!/usr/bin/env bash
# Runs the README's two commands on a fresh Debian 12 machine, as a new user would: a
# minimal root made by Debian's mmdebstrap (--variant=minbase bookworm), this checkout's
# committed HEAD cloned into it, then, inside the root (chroot, as root, /proc mounted),
# the README's first command exactly as written (install the packages, build, demo),
# then its test command. It proves that those commands need nothing this machine
# already had: a package that is only *recommended* (and so not installed by
# install-deps' --no-install-recommends), a tool or a file outside the checkout.
#
# Usage: scripts/fresh-machine.sh [--keep] [--only-first]
#   --keep        leave the root in place afterwards (its path is printed)
#   --only-first  run the README's first command only (install, build, demo)
# Needs root (mmdebstrap, mount, chroot); installs mmdebstrap when it is missing.
#
# What comes along from this machine, because it belongs to the machine and not to the
# project: the local CA certificates (update-ca-certificates' folder), npm's
# configuration, the certificate variables of the environment, /etc/resolv.conf and
# /etc/hosts, and the third-party reference data beside the checkout (../shared/data,
# read-only) when it exists. Shared with the root to save time, never to pre-install
# anything: ccache's folder and apt's archive of downloaded .deb files.
# The root tarball is made once and reused (COE_FRESH_CACHE, default
# ~/.cache/coe-fresh-machine; it is remade when older than 30 days).
#
# Safety: every mount is made inside a private mount and PID namespace (unshare), so the
# mounts vanish with it, and no process started in the root outlives the run; the root is
# deleted from this (the host's) namespace, where nothing is mounted under it.
set -euo pipefail
cd "$(dirname "$0")/.."
src="$(pwd)"
keep=0
only_first=0
for a in "$@"; do
  case "$a" in
    --keep) keep=1 ;;
    --only-first) only_first=1 ;;
    *) echo "usage: scripts/fresh-machine.sh [--keep] [--only-first]" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" -ne 0 ]; then echo "fresh-machine.sh: needs root (mmdebstrap, mount, chroot)" >&2; exit 2; fi
start=$SECONDS
phase() { echo "== fresh machine: $*"; }

if ! command -v mmdebstrap >/dev/null; then
  phase "installing mmdebstrap on this machine"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
fi
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "fresh-machine.sh: note: uncommitted changes are not tested; the root gets HEAD ($(git rev-parse --short HEAD))"
fi

# The README's first two ```sh blocks: the install-build-demo command and the test command.
readme_block() {
  awk -v want="$1" '/^```sh$/ {n++; inside = (n == want); next} /^```$/ {inside = 0; next} inside {print}' README.md
}
first_cmd="$(readme_block 1)"
test_cmd="$(readme_block 2)"
if [ -z "$first_cmd" ] || [ -z "$test_cmd" ]; then
  echo "fresh-machine.sh: README.md must start with two \`\`\`sh blocks (install+build+demo, tests)" >&2
  exit 2
fi

cache="${COE_FRESH_CACHE:-$HOME/.cache/coe-fresh-machine}"
mkdir -p "$cache"
tarball="$cache/bookworm-minbase.tar"
if [ -f "$tarball" ] && [ -n "$(find "$tarball" -mtime +30)" ]; then rm -f "$tarball"; fi
if [ ! -f "$tarball" ]; then
  phase "making a minimal Debian 12 root (mmdebstrap --variant=minbase bookworm)"
  t=$SECONDS
  mmdebstrap --quiet --format=tar --variant=minbase --components=main bookworm "$tarball.part" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main"
  mv "$tarball.part" "$tarball"
  echo "== took $((SECONDS - t)) s"
fi

root="$(mktemp -d /var/tmp/coe-fresh.XXXXXX)"
cleanup() {
  # Nothing is mounted under $root in this namespace (the mounts lived in the unshared
  # one), so this removes the root's own files only.
  if [ "$keep" -eq 1 ]; then echo "== the root is kept at $root"; else rm -rf --one-file-system "$root"; fi
}
trap cleanup EXIT
tar -xf "$tarball" -C "$root"
mkdir -p "$root/work"
git clone --quiet --no-hardlinks "$src" "$root/work/coe"

# What belongs to the machine.
cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
cp -L /etc/hosts "$root/etc/hosts" 2>/dev/null || true
if [ -d /usr/local/share/ca-certificates ]; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
fi
for f in "$HOME/.npmrc" /etc/npmrc /usr/etc/npmrc; do
  if [ -f "$f" ]; then
    dest="$root${f/#$HOME//root}"
    mkdir -p "$(dirname "$dest")" && cp -L "$f" "$dest"
  fi
done
# Certificate variables (NODE_EXTRA_CA_CERTS, SSL_CERT_FILE, *_CA_BUNDLE, ...).
envs=(HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 TERM=dumb)
while IFS='=' read -r name value; do
  case "$name" in
    *CA_CERT*|*CA_BUNDLE*|SSL_CERT_*|*SSL_CAINFO*|*SSL_ROOTS*|NODE_EXTRA_CA_CERTS|PIP_CERT|*CUSTOM_CA_CERTS*)
      envs+=("$name=$value") ;;
  esac
done < <(env)

# Shared to save time: ccache's folder and apt's downloaded packages.
ccache_dir="${CCACHE_DIR:-}"
if [ -z "$ccache_dir" ] && command -v ccache >/dev/null; then ccache_dir="$(ccache -k cache_dir 2>/dev/null || true)"; fi
if [ -z "$ccache_dir" ]; then ccache_dir="$HOME/.cache/ccache"; fi
mkdir -p "$ccache_dir" /var/cache/apt/archives/partial
shared_data=""
if [ -d "$src/../shared/data" ]; then shared_data="$(cd "$src/../shared/data" && pwd)"; fi

# Inside a private mount and PID namespace: the mounts and every process started in the
# root end with it.
inner=$(cat <<'EOF'
set -euo pipefail
mount -t proc proc "$ROOT/proc"
mount --rbind /sys "$ROOT/sys" && mount --make-rslave "$ROOT/sys"
mount --rbind /dev "$ROOT/dev" && mount --make-rslave "$ROOT/dev"
mkdir -p "$ROOT/root/.cache/ccache" && mount --bind "$CCACHE_HOST" "$ROOT/root/.cache/ccache"
mount --bind /var/cache/apt/archives "$ROOT/var/cache/apt/archives"
if [ -n "$SHARED_DATA" ]; then
  mkdir -p "$ROOT/work/shared/data"
  mount --bind "$SHARED_DATA" "$ROOT/work/shared/data" && mount -o remount,bind,ro "$ROOT/work/shared/data"
fi
run_in_root() {  # label, command
  local t=$SECONDS rc=0
  echo "== fresh machine: $1"
  printf '%s\n' "$2" | sed 's/^/   $ /'
  chroot "$ROOT" /usr/bin/env -i "${ENVS[@]}" /bin/bash -c "cd /work/coe && $2" || rc=$?
  echo "== $1: exit $rc after $((SECONDS - t)) s"
  return $rc
}
run_in_root "the README's first command" "$FIRST_CMD"
if [ "$ONLY_FIRST" -eq 0 ]; then run_in_root "the README's test command" "$TEST_CMD"; fi
EOF
)
phase "root at $root (HEAD $(git rev-parse --short HEAD)); ccache $ccache_dir; apt archives /var/cache/apt/archives"
rc=0
ROOT="$root" CCACHE_HOST="$ccache_dir" SHARED_DATA="$shared_data" FIRST_CMD="$first_cmd" TEST_CMD="$test_cmd" \
  ONLY_FIRST="$only_first" ENVS_TEXT="$(printf '%s\n' "${envs[@]}")" \
  unshare --mount --pid --fork --propagation private \
  bash -c 'mapfile -t ENVS <<<"$ENVS_TEXT"; '"$inner" || rc=$?
if [ "$rc" -eq 0 ]; then
  echo "== fresh machine: PASSED in $((SECONDS - start)) s"
else
  echo "== fresh machine: FAILED (exit $rc) after $((SECONDS - start)) s"
fi
exit "$rc"
