#!/usr/bin/env bash
# Build (once) and cache the test hosts' Debian bookworm image: an ext4 root filesystem in qcow2,
# plus the kernel and initramfs QEMU boots directly (no boot loader). Made with debootstrap from
# Debian's mirror and `mkfs.ext4 -d` (no loop devices, no image download).
#
# Two flavours of node:
#   docker      (default) docker.io 20.10 from bookworm, kwok as the kubelet (guest/)
#   containerd  a real node stack: kubelet, containerd 2.x, crictl (build-node-binaries.sh), runc
#               and the CNI plugins (Debian), the test bed's pause and app images imported into
#               containerd (build-node-images.sh); guest-containerd/ laid over guest/
#
# The cache key is a hash of the recipe (package lists, masked units, RECIPE) and of guest/ (the
# files laid over the root) -- for containerd also of guest-containerd/ and of the names of the
# node binaries' and images' cache directories (they carry versions and keys) -- so a change to
# either builds a new image; else the cached one serves.
# The build runs in a temporary directory renamed into place only when complete.
#
# Usage: build-image.sh [--flavour docker|containerd]         prints the image directory on stdout
#        build-image.sh [--flavour docker|containerd] --key   prints the cache key only
# Env:   KUBEOPS_CACHE (default ~/.cache/kubeops-node-maintenance), DEBIAN_MIRROR
#
# Needs root (debootstrap, chroot) and: debootstrap, e2fsprogs (mkfs.ext4 >= 1.43), qemu-utils.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../versions.sh"
HOSTS_CACHE="$TESTBED_CACHE/hosts"
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ROOT_SIZE=${ROOT_SIZE:-6G}
# debootstrap installs these (minbase + what a node needs); apt in the chroot adds the rest.
BASE_PACKAGES=systemd,systemd-sysv,udev,dbus,kmod,iproute2,iputils-ping,procps,openssh-server,python3,e2fsprogs,util-linux,mount,less,ca-certificates
FLAVOUR=docker
want_key=
while [[ $# -gt 0 ]]; do
  case $1 in
    --key) want_key=1 ;;
    --flavour) FLAVOUR=${2:?--flavour needs docker or containerd}; shift ;;
    --flavour=*) FLAVOUR=${1#--flavour=} ;;
    *) echo "build-image.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
case $FLAVOUR in
  docker) CHROOT_PACKAGES="linux-image-cloud-amd64 docker.io" ;;
  containerd) CHROOT_PACKAGES="linux-image-cloud-amd64 runc containernetworking-plugins iptables" ;;
  *) echo "build-image.sh: unknown flavour $FLAVOUR (docker or containerd)" >&2; exit 2 ;;
esac
# Units that cost boot time under emulation and do nothing useful on a test host.
MASK_UNITS="apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer
  systemd-networkd-wait-online.service man-db.timer dpkg-db-backup.timer getty@tty1.service
  modprobe@efi_pstore.service modprobe@fuse.service modprobe@dm_mod.service"

step() { printf '[testbed-hosts %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
CURRENT_STEP=start
on_error() { printf '[testbed-hosts] FAILED at step: %s\n' "$CURRENT_STEP" >&2; }
trap on_error ERR

for tool in debootstrap mkfs.ext4 qemu-img chroot; do
  command -v "$tool" >/dev/null || { echo "build-image.sh: $tool not found (apt-get install debootstrap e2fsprogs qemu-utils)" >&2; exit 1; }
done

# The cache key: what goes into the image. Bump RECIPE when changing the build steps below
# (CONTAINERD_RECIPE for the containerd flavour's own steps).
RECIPE=2
CONTAINERD_RECIPE=1
overlay_files() {  # each file of the overlay directory $1 with its mode and content
  (cd "$1" && find . -type f | LC_ALL=C sort | while read -r f; do echo "$f $(stat -c %a "$f")"; cat "$f"; done)
}
if [[ $FLAVOUR == docker ]]; then
  key=$( (echo "$RECIPE $SUITE $ROOT_SIZE $BASE_PACKAGES $CHROOT_PACKAGES $MASK_UNITS"
          overlay_files "$HERE/guest") | sha256sum | cut -c1-16)
  image_dir="$HOSTS_CACHE/bookworm-$key"
else
  node_bin_dir=$(bash "$HERE/build-node-binaries.sh" --dir)
  node_images_dir=$(bash "$HERE/build-node-images.sh" --dir)
  key=$( (echo "$RECIPE $CONTAINERD_RECIPE $FLAVOUR $SUITE $ROOT_SIZE $BASE_PACKAGES $CHROOT_PACKAGES $MASK_UNITS"
          basename "$node_bin_dir"; basename "$node_images_dir"
          overlay_files "$HERE/guest"; echo "--- guest-containerd"; overlay_files "$HERE/guest-containerd") \
        | sha256sum | cut -c1-16)
  image_dir="$HOSTS_CACHE/bookworm-$FLAVOUR-$key"
fi
if [[ -n $want_key ]]; then echo "$key"; exit 0; fi  # e.g. for a CI cache key
if [[ -f "$image_dir/manifest.json" ]]; then
  step "cached: $image_dir"
  echo "$image_dir"
  exit 0
fi
# One build per flavour at a time: the bootstrap starts the containerd flavour's in the background,
# and the test that boots those hosts runs this script again, which waits here, then finds it built.
mkdir -p "$HOSTS_CACHE"
exec 8>"$HOSTS_CACHE/.build-$FLAVOUR.lock"
if ! flock -n 8; then
  step "waiting for another build of the $FLAVOUR image"
  flock 8
fi
if [[ -f "$image_dir/manifest.json" ]]; then
  step "cached: $image_dir (built meanwhile)"
  echo "$image_dir"
  exit 0
fi

[[ $(id -u) == 0 ]] || { echo "build-image.sh: must run as root (debootstrap, chroot)" >&2; exit 1; }
started=$SECONDS
if [[ $FLAVOUR == containerd ]]; then  # Go builds, each cached on its own (minutes when cold)
  CURRENT_STEP="node binaries (build-node-binaries.sh)"
  node_bin_dir=$(bash "$HERE/build-node-binaries.sh")
  CURRENT_STEP="node images (build-node-images.sh)"
  node_images_dir=$(bash "$HERE/build-node-images.sh")
fi
mkdir -p "$HOSTS_CACHE/debs"
work=$(mktemp -d "$HOSTS_CACHE/.build.XXXXXX")
rootfs="$work/rootfs"
import_pid=
cleanup() {
  if [[ -n $import_pid ]] && kill -0 "$import_pid" 2>/dev/null; then kill "$import_pid"; wait "$import_pid" || true; fi
  for m in proc sys dev/pts dev; do
    if mountpoint -q "$rootfs/$m" 2>/dev/null; then umount -l "$rootfs/$m" || true; fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

CURRENT_STEP="debootstrap $SUITE from $MIRROR"
step "$CURRENT_STEP"
debootstrap --variant=minbase --include="$BASE_PACKAGES" --cache-dir="$HOSTS_CACHE/debs" \
  "$SUITE" "$rootfs" "$MIRROR" > "$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; false; }

CURRENT_STEP="apt-get install $CHROOT_PACKAGES (in the chroot)"
step "$CURRENT_STEP"
mount -t proc proc "$rootfs/proc"
mount -t sysfs sys "$rootfs/sys"
mount --bind /dev "$rootfs/dev"
mount --bind /dev/pts "$rootfs/dev/pts"
# Keep services from starting inside the chroot.
printf '#!/bin/sh\nexit 101\n' > "$rootfs/usr/sbin/policy-rc.d"; chmod +x "$rootfs/usr/sbin/policy-rc.d"
# Before the kernel package: its postinst builds the initramfs from these (modules, hooks).
mkdir -p "$rootfs/etc/initramfs-tools"
cp -a "$HERE/guest/etc/initramfs-tools/." "$rootfs/etc/initramfs-tools/"
cat > "$rootfs/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
EOF
chroot_env=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C)
{
  "${chroot_env[@]}" chroot "$rootfs" apt-get update
  # shellcheck disable=SC2086
  "${chroot_env[@]}" chroot "$rootfs" apt-get install -y --no-install-recommends \
    -o Dpkg::Options::=--force-confold $CHROOT_PACKAGES
} > "$work/apt.log" 2>&1 || { tail -30 "$work/apt.log" >&2; false; }

CURRENT_STEP="configure the guest (guest/ files, units, fstab)"
step "$CURRENT_STEP"
cp -a "$HERE/guest/." "$rootfs/"
cat > "$rootfs/etc/fstab" <<'EOF'
# The data disk (/dev/vdb) is deliberately absent: putting it here is the product's job.
LABEL=kubeops-root  /  ext4  defaults,errors=remount-ro  0  1
EOF
echo testbed-host > "$rootfs/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$rootfs/etc/hosts"
: > "$rootfs/etc/machine-id"     # a new machine-id at first boot, as after a real (re)install
rm -f "$rootfs/var/lib/dbus/machine-id"
"${chroot_env[@]}" chroot "$rootfs" passwd -l root >/dev/null
runtime_unit=docker.service
if [[ $FLAVOUR == containerd ]]; then
  CURRENT_STEP="configure the guest: guest-containerd/ files, node binaries"
  cp -a "$HERE/guest-containerd/." "$rootfs/"
  # What only kwok and Docker needed.
  rm -rf "$rootfs/etc/docker" "$rootfs/usr/local/sbin/kubeops-register-node" "$rootfs/usr/local/sbin/kubeops-wait-runtime"
  install -m 0755 "$node_bin_dir"/bin/* "$rootfs/usr/local/bin/"
  "${chroot_env[@]}" chroot "$rootfs" sh -c 'command -v runc' >/dev/null || { echo "the image has no runc" >&2; false; }
  for plugin in bridge host-local loopback portmap; do  # where containerd's config.toml looks for them
    [[ -x $rootfs/usr/lib/cni/$plugin ]] || { echo "the image has no /usr/lib/cni/$plugin" >&2; false; }
  done
  runtime_unit=containerd.service
fi
"${chroot_env[@]}" chroot "$rootfs" systemctl enable systemd-networkd.service ssh.service $runtime_unit \
  kubeops-seed.service kubelet.service >/dev/null 2>&1
# shellcheck disable=SC2086
"${chroot_env[@]}" chroot "$rootfs" systemctl mask $MASK_UNITS >/dev/null 2>&1
kernel_version=$(find "$rootfs/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -1)
package_version() {
  # shellcheck disable=SC2016  # ${Version} is dpkg-query's format, not the shell's
  "${chroot_env[@]}" chroot "$rootfs" dpkg-query -W -f '${Version}' "$1"
}
if [[ $FLAVOUR == docker ]]; then
  versions="\"docker\": \"$(package_version docker.io)\""
else
  versions="\"node_binaries\": \"$(basename "$node_bin_dir")\", \"node_images\": \"$(basename "$node_images_dir")\""
  versions+=", \"runc\": \"$(package_version runc)\", \"cni_plugins\": \"$(package_version containernetworking-plugins)\""
fi
rm -f "$rootfs/usr/sbin/policy-rc.d"
"${chroot_env[@]}" chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log "$rootfs"/tmp/*
for m in dev/pts dev sys proc; do umount "$rootfs/$m"; done

if [[ $FLAVOUR == containerd ]]; then
  # The image's own containerd, run here on the image's /var/lib/containerd (its CRI plugins
  # off), imports the test bed's images as the node will find them: namespace k8s.io, unpacked
  # into the overlayfs snapshotter.
  CURRENT_STEP="import the pause and app images into the image's containerd"
  step "$CURRENT_STEP"
  ctrd="$work/ctrd"
  mkdir -p "$ctrd"
  cat > "$ctrd/config.toml" <<TOML
version = 3
root = "$rootfs/var/lib/containerd"
state = "$ctrd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images",
                    "io.containerd.nri.v1.nri"]
[grpc]
  address = "$ctrd/containerd.sock"
[ttrpc]
  address = "$ctrd/containerd.sock.ttrpc"
[plugins.'io.containerd.internal.v1.opt']
  path = "$ctrd/opt"
TOML
  "$rootfs/usr/local/bin/containerd" --config "$ctrd/config.toml" > "$ctrd/containerd.log" 2>&1 &
  import_pid=$!
  ctr=("$rootfs/usr/local/bin/ctr" --address "$ctrd/containerd.sock" -n k8s.io)
  for _ in $(seq 150); do "${ctr[@]}" version >/dev/null 2>&1 && break; sleep 0.2; done
  {
    for archive in "$node_images_dir"/*.tar; do "${ctr[@]}" images import --platform linux/amd64 "$archive"; done
    "${ctr[@]}" images ls
  } > "$ctrd/import.log" 2>&1 || { cat "$ctrd/import.log" "$ctrd/containerd.log" >&2; false; }
  for name in $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["pause"], d["app"])' \
                "$node_images_dir/images.json"); do
    grep -q "^$name " "$ctrd/import.log" || { echo "image $name missing after the import:" >&2
                                              cat "$ctrd/import.log" >&2; false; }
  done
  kill "$import_pid"; wait "$import_pid" || true; import_pid=
  rm -rf "$rootfs/var/lib/containerd/tmpmounts"
fi

CURRENT_STEP="extract kernel and initramfs ($kernel_version)"
step "$CURRENT_STEP"
mkdir -p "$work/out"
cp "$rootfs/boot/vmlinuz-$kernel_version" "$work/out/vmlinuz"
cp "$rootfs/boot/initrd.img-$kernel_version" "$work/out/initrd.img"

CURRENT_STEP="mkfs.ext4 -d (root filesystem, $ROOT_SIZE)"
step "$CURRENT_STEP"
mkfs.ext4 -q -F -L kubeops-root -d "$rootfs" "$work/root.raw" "$ROOT_SIZE"

CURRENT_STEP="qemu-img convert to qcow2"
step "$CURRENT_STEP"
qemu-img convert -O qcow2 "$work/root.raw" "$work/out/root.qcow2"
rm -f "$work/root.raw"

cat > "$work/out/manifest.json" <<EOF
{"key": "$key", "flavour": "$FLAVOUR", "suite": "$SUITE", "kernel": "$kernel_version", $versions,
 "root_size": "$ROOT_SIZE", "built": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "build_seconds": $((SECONDS - started))}
EOF

CURRENT_STEP="publish $image_dir"
rm -rf "$image_dir"
mv "$work/out" "$image_dir"
# Older images take 650 MB each: drop those of this flavour that no running QEMU uses (their
# overlays die with them). A docker image is bookworm-<key>, a containerd one bookworm-containerd-<key>.
for old in "$HOSTS_CACHE"/bookworm-*; do
  [[ $old != "$image_dir" ]] || continue
  if [[ $FLAVOUR == docker ]]; then
    [[ $(basename "$old") =~ ^bookworm-[0-9a-f]{16}$ ]] || continue
  else
    [[ $(basename "$old") == "bookworm-$FLAVOUR-"* ]] || continue
  fi
  if ! grep -qsF "$old/" /proc/[0-9]*/cmdline; then
    rm -rf "$old" && step "removed the older image $old"
  fi
done
step "built in $((SECONDS - started))s: $image_dir ($(du -sh "$image_dir/root.qcow2" | cut -f1) qcow2)"
echo "$image_dir"
