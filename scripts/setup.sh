#!/usr/bin/env bash
# Installs what nc2dd's build and tests need on Debian 12, only where it is missing:
#   - qemu-system-x86 from bookworm-backports (bookworm's own QEMU 7.2 has no igb model)
#   - the x86_64-unknown-none Rust target (kernel and servers)
# Safe to run repeatedly; does nothing when everything is present.
set -euo pipefail

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: installing $1 needs root (run as root or install it yourself)" >&2
        exit 1
    fi
}

qemu_has_igb() {
    command -v qemu-system-x86_64 >/dev/null 2>&1 &&
        qemu-system-x86_64 -device help 2>/dev/null | grep -q '"igb"'
}

if ! qemu_has_igb; then
    need_root "qemu-system-x86 (bookworm-backports)"
    src=/etc/apt/sources.list.d/nc2dd-backports.sources
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "setup: adding bookworm-backports to apt sources"
        cat >"$src" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    fi
    echo "setup: installing qemu-system-x86 from bookworm-backports"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq -t bookworm-backports qemu-system-x86 >/dev/null
    qemu_has_igb || { echo "setup: installed QEMU still has no igb device" >&2; exit 1; }
fi

if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed | grep -qx x86_64-unknown-none; then
        echo "setup: adding the x86_64-unknown-none Rust target"
        rustup target add x86_64-unknown-none
    fi
else
    echo "setup: rustup not found; install Rust stable with rustup first" >&2
    exit 1
fi
echo "setup: ok ($(qemu-system-x86_64 --version | head -n1))"
