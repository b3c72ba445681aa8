#!/usr/bin/env bash
# The main job: build nc2dd and boot it in QEMU, serial console on this terminal.
# Extra arguments go to QEMU (after the image tool's own). Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo run --quiet -p image -- run -- "$@"
