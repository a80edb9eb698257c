#!/usr/bin/env bash
# Build (once) and cache the test hosts' Debian bookworm image: an ext4 root filesystem in qcow2,
# plus the kernel and initramfs QEMU boots directly (no boot loader). Made with debootstrap from
# Debian's mirror and `mkfs.ext4 -d` (no loop devices, no image download).
#
# The cache key is a hash of the recipe (package lists, masked units, RECIPE) and of guest/ (the
# files laid over the root), so a change to either builds a new image; else the cached one serves.
# The build runs in a temporary directory renamed into place only when complete.
#
# Usage: build-image.sh            prints the image directory on stdout (progress on stderr)
#        build-image.sh --key      prints the cache key only
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
CHROOT_PACKAGES="linux-image-cloud-amd64 docker.io"
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

# The cache key: what goes into the image. Bump RECIPE when changing the build steps below.
RECIPE=2
key=$( (echo "$RECIPE $SUITE $ROOT_SIZE $BASE_PACKAGES $CHROOT_PACKAGES $MASK_UNITS"
        cd "$HERE/guest" && find . -type f | LC_ALL=C sort | while read -r f; do
          echo "$f $(stat -c %a "$f")"; cat "$f"; done) | sha256sum | cut -c1-16)
image_dir="$HOSTS_CACHE/bookworm-$key"
if [[ ${1:-} == --key ]]; then echo "$key"; exit 0; fi  # e.g. for a CI cache key
if [[ -f "$image_dir/manifest.json" ]]; then
  step "cached: $image_dir"
  echo "$image_dir"
  exit 0
fi

[[ $(id -u) == 0 ]] || { echo "build-image.sh: must run as root (debootstrap, chroot)" >&2; exit 1; }
mkdir -p "$HOSTS_CACHE/debs"
work=$(mktemp -d "$HOSTS_CACHE/.build.XXXXXX")
rootfs="$work/rootfs"
cleanup() {
  for m in proc sys dev/pts dev; do
    if mountpoint -q "$rootfs/$m" 2>/dev/null; then umount -l "$rootfs/$m" || true; fi
  done
  rm -rf "$work"
}
trap cleanup EXIT
started=$SECONDS

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
"${chroot_env[@]}" chroot "$rootfs" systemctl enable systemd-networkd.service ssh.service docker.service \
  kubeops-seed.service kubelet.service >/dev/null 2>&1
# shellcheck disable=SC2086
"${chroot_env[@]}" chroot "$rootfs" systemctl mask $MASK_UNITS >/dev/null 2>&1
kernel_version=$(find "$rootfs/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -1)
# shellcheck disable=SC2016  # ${Version} is dpkg-query's format, not the shell's
docker_version=$("${chroot_env[@]}" chroot "$rootfs" dpkg-query -W -f '${Version}' docker.io)
rm -f "$rootfs/usr/sbin/policy-rc.d"
"${chroot_env[@]}" chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log "$rootfs"/tmp/*
for m in dev/pts dev sys proc; do umount "$rootfs/$m"; done

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
{"key": "$key", "suite": "$SUITE", "kernel": "$kernel_version", "docker": "$docker_version",
 "root_size": "$ROOT_SIZE", "built": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "build_seconds": $((SECONDS - started))}
EOF

CURRENT_STEP="publish $image_dir"
rm -rf "$image_dir"
mv "$work/out" "$image_dir"
# Older images take 650 MB each: drop those no running QEMU uses (their overlays die with them).
for old in "$HOSTS_CACHE"/bookworm-*; do
  [[ $old != "$image_dir" ]] || continue
  if ! grep -qsF "$old/" /proc/[0-9]*/cmdline; then
    rm -rf "$old" && step "removed the older image $old"
  fi
done
step "built in $((SECONDS - started))s: $image_dir ($(du -sh "$image_dir/root.qcow2" | cut -f1) qcow2)"
echo "$image_dir"
