#!/usr/bin/env bash
# Runs a shell script as root inside a distribution kernel booted with qemu, with this machine's
# root filesystem shared read-only (9p) under a tmpfs overlay, so test binaries built on the host
# run unchanged against a stock kernel whose networking is modules (nothing loaded by hand).
#
#   tests/kernel/run-in-vm.sh OUTDIR SCRIPT
#
# SCRIPT runs with `sh` as root in the VM, working directory OUTDIR (the one folder written
# through to the host; /tmp and /run are fresh tmpfs). Its output is OUTDIR/log.txt (printed
# when the VM is done), the kernel console OUTDIR/console.txt. Exits with SCRIPT's status, or
# 99 when the VM ended without one (timeout, panic, boot failure): CI fails either way.
#
# Environment: KERNEL_PACKAGE (default: what linux-image-amd64 depends on, per the machine's apt
# sources), KERNEL_CACHE (default /var/cache/netcfg-kernel-lane: the package and its unpacked
# tree are kept there between runs), VM_TIMEOUT seconds (default 3600), VM_MEM MiB (3072),
# VM_CPUS (2). Needs qemu-system-x86, busybox-static, cpio and kmod (`.ci/run` installs them).
# Software emulation (TCG): nested KVM is not reliable on CI machines; everything runs ~10x
# slower than native.
set -euo pipefail
OUT=$(realpath "$1")
SCRIPT=$(realpath "$2")
CACHE=${KERNEL_CACHE:-/var/cache/netcfg-kernel-lane}
mkdir -p "$CACHE" "$OUT"
for tool in qemu-system-x86_64 busybox cpio depmod modprobe apt-get dpkg; do
    command -v "$tool" >/dev/null || { echo "run-in-vm: \`$tool\` is missing (apt-get install qemu-system-x86 busybox-static cpio kmod)" >&2; exit 2; }
done

# The kernel: downloaded once per package version, unpacked (not installed) into the cache.
pkg=${KERNEL_PACKAGE:-$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')}
if [ -z "$pkg" ]; then
    apt-get update -qq
    pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
fi
version=$(apt-cache policy "$pkg" | awk '/Candidate:/{print $2}')
K="$CACHE/$pkg-$version"
if [ ! -f "$K/.ready" ]; then
    echo "run-in-vm: fetching $pkg $version into $K"
    rm -rf "$K" && mkdir -p "$K"
    (cd "$K" && apt-get download "$pkg=$version" >/dev/null 2>&1 && dpkg -x ./*.deb root && rm -f ./*.deb)
    KV=$(ls "$K/root/lib/modules")
    depmod -b "$K/root" "$KV"
    touch "$K/.ready"
    # Older kernels of the cache are not needed any more.
    find "$CACHE" -mindepth 1 -maxdepth 1 -type d ! -path "$K" -exec rm -rf {} +
fi
KV=$(ls "$K/root/lib/modules")
MODDIR=$K/root/lib/modules/$KV
echo "run-in-vm: kernel $pkg $version ($KV), cached in $K"

# The initramfs: busybox, the modules that reach the shared root (virtio, 9p, overlay) in the
# order modprobe resolves them, and an init that mounts the root and runs the script.
INITRD=$(mktemp -d)
trap 'rm -rf "$INITRD"' EXIT
mkdir -p "$INITRD"/{bin,mod,proc,sys,dev,lower,rw,new}
cp "$(command -v busybox)" "$INITRD/bin/"
: > "$INITRD/mod/order"
for m in virtio_pci 9pnet_virtio 9p overlay; do
    modprobe -d "$K/root" -S "$KV" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
    cp "$ko" "$INITRD/mod/"
    basename "$ko" >> "$INITRD/mod/order"
done
cat > "$INITRD/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
while read -r ko; do insmod "/mod/$ko" || echo "init: insmod $ko failed"; done < /mod/order
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 hostroot /lower
mount -t tmpfs rw /rw; mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /new
mount -t proc proc /new/proc; mount -t sysfs sys /new/sys; mount -t devtmpfs dev /new/dev
mount -t tmpfs run /new/run; mount -t tmpfs tmp /new/tmp
mkdir -p /new/run/out /new/run/netns
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /new/run/out
exec switch_root /new /bin/sh /run/out/.vm-init
INIT
chmod +x "$INITRD/init"
(cd "$INITRD" && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$OUT/.initrd.gz"

# Inside: the kernel's modules where kmod looks for them, then the script, then power off.
cp "$SCRIPT" "$OUT/.script"
cat > "$OUT/.vm-init" <<VMINIT
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mkdir -p /lib/modules && ln -sfn "$MODDIR" /lib/modules/$KV
cd /run/out
sh /run/out/.script > /run/out/log.txt 2>&1
echo \$? > /run/out/rc
sync
echo o > /proc/sysrq-trigger
sleep 30
VMINIT

rm -f "$OUT/rc" "$OUT/log.txt"
start=$(date +%s)
timeout "${VM_TIMEOUT:-3600}" qemu-system-x86_64 -m "${VM_MEM:-3072}" \
    -smp "${VM_CPUS:-2}" -nographic -no-reboot \
    -kernel "$K/root/boot/vmlinuz-$KV" -initrd "$OUT/.initrd.gz" \
    -append "console=ttyS0 panic=-1 quiet" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
    -virtfs "local,path=$OUT,mount_tag=out,security_model=none" > "$OUT/console.txt" 2>&1 || true
echo "run-in-vm: the VM ran $(($(date +%s) - start)) s"
cat "$OUT/log.txt" 2>/dev/null || true
if [ ! -s "$OUT/rc" ]; then
    echo "run-in-vm: the VM ended without the script's exit status (timeout or crash); console tail:" >&2
    tail -n 40 "$OUT/console.txt" >&2
    exit 99
fi
exit "$(cat "$OUT/rc")"
