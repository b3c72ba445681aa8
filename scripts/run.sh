#!/usr/bin/env bash
# The main job: build nc2dd and boot it in QEMU with an igb NIC whose wire ends in a peer on this
# machine (UDP on 127.0.0.1), stream the serial console here, and show packets moving: the peer
# ARPs for nc2dd's address, pings it, probes the second VMDq pool, then ends the run.
# Exit status 0 only if every ping was answered and nc2dd shut down cleanly.
# Arguments go to the demo (`--count N` pings, default 5). Installs what is missing first.
# A plain boot without the NIC: cargo run -p image -- run
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo run --quiet -p nc2dd-tests --bin demo -- "$@" </dev/null
