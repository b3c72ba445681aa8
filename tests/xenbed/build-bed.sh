#!/usr/bin/env bash
# Assembles the nested Xen test bed from Debian packages only and caches it outside the source tree.
#
#   tests/xenbed/build-bed.sh [--hvm]
#
# Output (stdout, last line): the bed directory, holding
#   xen                 Xen 4.17 hypervisor, plain ELF (QEMU's multiboot loader wants it gunzipped)
#   vmlinuz             Debian's full amd64 kernel (the -cloud- flavour has CONFIG_XEN_DOM0 off)
#   initramfs.cpio.gz   busybox + xl toolstack + xenstored + the kernel's Xen modules, /init = dom0-init.sh
#   manifest.txt        the exact package versions it was built from
# Everything else goes to stderr.
#
# The bed lives in ${NC2DD_CACHE:-/var/cache/nc2dd}/xenbed/<key>, where <key> hashes the package
# versions, the flavour and this folder's scripts: a rerun with nothing changed only resolves versions
# and prints the path. --hvm adds qemu-system-xen (device model) and SeaBIOS for HVM guests.
# Runs as root on Debian 12; installs the few host tools it needs, and runs `apt-get update` once
# when apt has no package lists yet.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${NC2DD_CACHE:-/var/cache/nc2dd}/xenbed
flavour=pvh
case "${1:-}" in
    "") ;;
    --hvm) flavour=hvm ;;
    *) echo "usage: $0 [--hvm]" >&2; exit 2 ;;
esac

log() { echo "build-bed: $*" >&2; }
die() { echo "build-bed: error: $*" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_update_once() {
    if [ "$apt_updated" = 0 ]; then
        [ "$(id -u)" = 0 ] || die "apt has no package lists and updating them needs root"
        log "apt-get update"
        apt-get update -qq >&2 || die "apt-get update failed"
        apt_updated=1
    fi
}

# --- host tools -------------------------------------------------------------------------------
need_tools=()
command -v cpio >/dev/null || need_tools+=(cpio)
command -v readelf >/dev/null || need_tools+=(binutils)
command -v flock >/dev/null || need_tools+=(util-linux)
command -v gzip >/dev/null || need_tools+=(gzip)
if [ "${#need_tools[@]}" -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing host tools (${need_tools[*]}) and not root to install them"
    log "installing host tools: ${need_tools[*]}"
    apt-get install -y -qq "${need_tools[@]}" >&2 || { apt_update_once; apt-get install -y -qq "${need_tools[@]}" >&2; }
fi

# --- which packages, which versions -----------------------------------------------------------
kernel_pkg=${NC2DD_XENBED_KERNEL_PKG:-}
if [ -z "$kernel_pkg" ]; then
    resolve_kernel() {
        apt-cache depends linux-image-amd64 2>/dev/null |
            awk '/Depends: linux-image-[0-9.]+-[0-9]+-amd64$/ { print $2; exit }'
    }
    kernel_pkg=$(resolve_kernel)
    if [ -z "$kernel_pkg" ]; then apt_update_once; kernel_pkg=$(resolve_kernel); fi
    [ -n "$kernel_pkg" ] || die "cannot resolve Debian's amd64 kernel package (linux-image-amd64)"
fi
case "$kernel_pkg" in
    *-cloud-*) die "$kernel_pkg is the cloud flavour, which has CONFIG_XEN_DOM0 off" ;;
esac

# The dom0 root: the toolstack, its libraries, and the system libraries that `ld.so --list` names
# for the binaries checked below (the check fails the build if one is missing from this list).
pkgs=(
    xen-hypervisor-4.17-amd64 "$kernel_pkg" busybox-static
    xen-utils-4.17 xen-utils-common xenstore-utils
    libxenmisc4.17 libxencall1 libxendevicemodel1 libxenevtchn1 libxenforeignmemory1
    libxengnttab1 libxenhypfs1 libxenstore4 libxentoolcore1 libxentoollog1 libyajl2
    libc6 libgcc-s1 liblzma5 libncurses6 libncursesw6 libtinfo6 libuuid1 zlib1g libzstd1
)
hvm_pkgs=(
    qemu-system-xen seabios
    libfdt1 libglib2.0-0 libjpeg62-turbo libpixman-1-0 libspice-server1 libusb-1.0-0
    libffi8 libpcre2-8-0 libudev1 libopus0 libssl3 libsasl2-2 liblz4-1 libgstreamer1.0-0
    libgstreamer-plugins-base1.0-0 liborc-0.4-0 libunwind8 libdw1 libelf1 libbz2-1.0 libstdc++6
)
if [ "$flavour" = hvm ]; then pkgs+=("${hvm_pkgs[@]}"); fi

# One apt-cache call for all packages: per-package calls cost half a second each, and a cached
# rerun should be instant.
candidates() {
    apt-cache policy "${pkgs[@]}" 2>/dev/null |
        awk '/^[^ ].*:$/ { p = substr($1, 1, length($1) - 1) } /Candidate:/ { print p "=" $2 }'
}
versions=$(candidates)
if grep -q '=(none)$' <<<"$versions" || [ "$(grep -c = <<<"$versions")" -ne "${#pkgs[@]}" ]; then
    apt_update_once
    versions=$(candidates)
fi
manifest=""
for p in "${pkgs[@]}"; do
    v=$(awk -F= -v p="$p" '$1 == p { print substr($0, length(p) + 2); exit }' <<<"$versions")
    [ -n "$v" ] && [ "$v" != "(none)" ] || die "Debian package $p has no installable version"
    manifest+="$p=$v"$'\n'
done
if [ "$flavour" = hvm ]; then
    # qemu-system-data must match the device model's version exactly, whatever the host has installed.
    # It is arch: all, so it carries the source version, without a binNMU's "+bN" suffix.
    qv=$(printf '%s' "$manifest" | awk -F= '$1 == "qemu-system-xen" { print substr($0, length($1) + 2) }')
    sv=$(apt-cache show "qemu-system-xen=$qv" 2>/dev/null |
        sed -n 's/^Source: [^ ]* (\(.*\))$/\1/p' | head -n1)
    manifest+="qemu-system-data=${sv:-$qv}"$'\n'
fi

key=$( {
    printf 'flavour=%s\n%s' "$flavour" "$manifest"
    cat "$here/build-bed.sh" "$here/dom0-init.sh"
} | sha256sum | cut -c1-16)
bed="$cache/$flavour-$key"

if [ -f "$bed/READY" ]; then
    log "cached: $bed"
    echo "$bed"
    exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ -f "$bed/READY" ]; then
    echo "$bed"
    exit 0
fi
log "assembling $flavour bed $key"
start=$(date +%s)

# --- download (each package=version once, kept across keys) ----------------------------------
debs="$cache/debs"
mkdir -p "$debs"
deb_of() {
    local d="$debs/$1"
    ls "$d"/*.deb 2>/dev/null | head -n1
}
while IFS= read -r pv; do
    [ -n "$pv" ] || continue
    if [ -z "$(deb_of "$pv")" ]; then
        mkdir -p "$debs/$pv.tmp"
        (cd "$debs/$pv.tmp" && apt-get download -q -o APT::Sandbox::User=root "$pv" >&2) ||
            die "apt-get download $pv failed"
        rm -rf "${debs:?}/$pv" && mv "$debs/$pv.tmp" "$debs/$pv"
    fi
done <<<"$manifest"

# --- extract ----------------------------------------------------------------------------------
work="$cache/tmp-$flavour-$key"
rm -rf "$work"
mkdir -p "$work/root" "$work/kernel" "$work/out"
root="$work/root"
while IFS= read -r pv; do
    [ -n "$pv" ] || continue
    p=${pv%%=*}
    if [ "$p" = "$kernel_pkg" ]; then
        dpkg-deb -x "$(deb_of "$pv")" "$work/kernel"
    else
        dpkg-deb -x "$(deb_of "$pv")" "$root"
    fi
done <<<"$manifest"

gunzip -c "$root"/boot/xen-4.17-amd64.gz >"$work/out/xen" || die "no Xen image in the hypervisor package"
rm -rf "$root/boot"
cp "$work"/kernel/boot/vmlinuz-* "$work/out/vmlinuz" || die "no vmlinuz in $kernel_pkg"
kver=$(basename "$(ls -d "$work"/kernel/lib/modules/*)")

# Only the Xen modules dom0 uses: the backends (netback, pciback), the devices the toolstack opens,
# and netfront for Linux guests booted from the same tree. None of them depends on another module
# outside this list (checked below from .modinfo), so dom0-init.sh loads them with plain insmod.
mods=(
    drivers/xen/xen-privcmd.ko drivers/xen/xen-evtchn.ko drivers/xen/xen-gntdev.ko
    drivers/xen/xen-gntalloc.ko drivers/xen/xenfs/xenfs.ko drivers/xen/xen-pciback/xen-pciback.ko
    drivers/net/xen-netback/xen-netback.ko drivers/net/xen-netfront.ko
)
kmods="$work/kernel/lib/modules/$kver/kernel"
for m in "${mods[@]}"; do
    [ -f "$kmods/$m" ] || die "$kernel_pkg lacks module $m"
    deps=$(readelf -p .modinfo "$kmods/$m" | sed -n 's/.*depends=\(.*\)$/\1/p' | tr -d ' ')
    for d in ${deps//,/ }; do
        case " ${mods[*]} " in
            *"/$d.ko "*) ;;
            *) die "module $m depends on $d, which the bed does not carry" ;;
        esac
    done
    mkdir -p "$root/lib/modules/$kver/kernel/$(dirname "$m")"
    cp "$kmods/$m" "$root/lib/modules/$kver/kernel/$m"
done

rm -rf "$root"/usr/share/{doc,man,info,locale,lintian,bug,bash-completion,initramfs-tools}
# pygrub and the xenfsimage plugins serve PV guests booted from disk images; the bed boots kernels
# directly.
rm -rf "$root"/usr/lib/xen-4.17/bin/pygrub "$root"/usr/lib/python3
# qemu-system-data also carries firmware for other architectures.
rm -rf "$root"/usr/share/qemu/{openbios-*,slof.bin,skiboot.lid,s390-*,opensbi-*,hppa-*,palcode-*} \
    "$root"/usr/share/qemu/{*.dtb,u-boot*,npcm7xx_bootrom.bin} \
    "$root/usr/share/qemu/QEMU,cgthree.bin" "$root/usr/share/qemu/QEMU,tcx.bin"
mkdir -p "$root"/{proc,sys,dev,tmp,run,etc,root,mnt,sbin,usr/sbin} \
    "$root"/var/{run/xen,run/xenstored,lib/xen,lib/xenstored,log/xen/console}

# busybox applets as links, without shadowing anything a package installed.
[ -x "$root/bin/busybox" ] || die "busybox-static did not provide /bin/busybox"
for a in $("$root/bin/busybox" --list); do
    [ -e "$root/bin/$a" ] || [ -e "$root/sbin/$a" ] || [ -e "$root/usr/bin/$a" ] || ln -s busybox "$root/bin/$a"
done

# Dynamic loader configuration, then prove every binary dom0 runs resolves all its libraries
# inside the root (the host's own libraries must not mask a gap).
printf '%s\n' /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /usr/lib/xen-4.17/lib/x86_64-linux-gnu \
    >"$root/etc/ld.so.conf"
ldconfig -r "$root"
check=(
    usr/lib/xen-4.17/bin/xl usr/lib/xen-4.17/bin/xenstored usr/lib/xen-4.17/bin/xenconsoled
    usr/lib/xen-4.17/bin/xen-init-dom0 usr/lib/xen-4.17/bin/libxl-save-helper usr/bin/xenstore
)
if [ "$flavour" = hvm ]; then
    check+=(usr/libexec/xen-qemu-system-i386)
    [ -f "$root/usr/lib/xen-4.17/boot/hvmloader" ] || die "no hvmloader in xen-utils-4.17"
fi
libpath="$root/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu:$root/usr/lib/xen-4.17/lib/x86_64-linux-gnu"
loader="$root/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
[ -x "$loader" ] || die "libc6 did not provide the dynamic loader"
for b in "${check[@]}"; do
    [ -f "$root/$b" ] || die "missing binary /$b"
    listing=$("$loader" --inhibit-cache --library-path "$libpath" --list "$root/$b" 2>&1) ||
        die "cannot list libraries of /$b: $listing"
    if grep -q 'not found' <<<"$listing"; then
        die "/$b needs libraries that no listed package provides: $(grep 'not found' <<<"$listing" | tr -s ' \t\n' ' ')"
    fi
    outside=$(awk '/=>/ { print $3 }' <<<"$listing" | grep -v "^$root/" || true)
    [ -z "$outside" ] || die "/$b resolved libraries outside the bed: $outside"
done

install -m 0755 "$here/dom0-init.sh" "$root/init"
echo "$kver" >"$root/etc/nc2dd-kernel-release"

(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
    gzip -6 >"$work/out/initramfs.cpio.gz"
printf 'flavour=%s\nkernel=%s\n%s' "$flavour" "$kver" "$manifest" >"$work/out/manifest.txt"
touch "$work/out/READY"

rm -rf "$bed"
mv "$work/out" "$bed"
rm -rf "$work"
# Older beds of this flavour (other package versions or scripts) are not used any more.
for old in "$cache/$flavour"-*; do
    [ "$old" = "$bed" ] || rm -rf "$old"
done
log "assembled $bed in $(($(date +%s) - start)) s ($(du -h "$bed/initramfs.cpio.gz" | cut -f1) initramfs)"
echo "$bed"
