#!/usr/bin/env bash
# Runs every nc2dd test: formatting, lints (host and bare-metal), host unit and integration tests,
# the QEMU boot tests, the nested-Xen test bed, and the long-mode property runs.
# Installs what is missing first (scripts/setup.sh). Logs of every QEMU run land in target/.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

step() { printf '\n=== %s\n' "$*"; }

step "format"
cargo fmt --all -- --check

step "clippy (host)"
cargo clippy --workspace --all-targets -- -D warnings

step "clippy (x86_64-unknown-none: kernel, runtime, servers, the nc2 guest)"
CARGO_ENCODED_RUSTFLAGS="-Crelocation-model=static" \
    cargo clippy --target x86_64-unknown-none --target-dir target/clippy-none \
    -p kernel -p userland -p netback -p nic-ixgbe -p test-tasks -p nc2-guest -- -D warnings

step "tests (host, QEMU, nested Xen)"
cargo test --workspace

step "long mode: property and fuzz runs, 10M-packet protocol runs (release)"
NC2DD_LONG_TESTS=1 cargo test --release -p libnc2 -p nic-ixgbe -p qpair

echo
echo "all nc2dd tests passed"
