#!/usr/bin/env bash
# The full-kernel lane: builds the test binaries on the host, boots Debian's stock kernel
# (tests/kernel/run-in-vm.sh) and runs the chosen suites in it as root with CI=true (no test may
# skip), each suite's libtest output passed through to the log. Fails when a test fails or the
# VM does not finish. What runs here, and why, is in ARCHITECTURE.md ("The full-kernel lane").
#
#   tests/kernel/lane.sh [SUITE...]      # SUITE: a test source path, e.g. backends/tests/netlink.rs
#
# Environment: KERNEL_LANE_OUT (default target/kernel-lane), LANE_TEST_ARGS (extra libtest
# arguments for every suite, e.g. a name filter), and those of run-in-vm.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${KERNEL_LANE_OUT:-$ROOT/target/kernel-lane}
mkdir -p "$OUT"

# Suites that need a real distribution kernel: every apply of every example, the four
# incidents with their traffic (library and CLI), and the netlink backend's own apply tests.
SUITES=("$@")
if [ ${#SUITES[@]} -eq 0 ]; then
    SUITES=(backends/tests/netlink.rs backends/tests/incidents.rs tests/incidents_cli.rs backends/tests/kernel_modules.rs
        backends/tests/nft_traffic.rs backends/tests/nat_traffic.rs)
fi

start=$(date +%s)
cargo test --workspace --no-run --message-format=json > "$OUT/build.json"

failed=""
for suite in "${SUITES[@]}"; do
    src=$ROOT/$suite
    # The compiler-artifact line of this test target (its src_path), and its executable.
    exe=$(grep -F "\"src_path\":\"$src\"" "$OUT/build.json" | grep -F '"kind":["test"]' \
        | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | head -n 1)
    if [ -z "$exe" ]; then
        echo "kernel lane: no test binary for $suite" >&2
        exit 2
    fi
    # One boot per suite: each starts from a kernel with nothing loaded but what reaches the
    # root filesystem. Run from the crate's directory, as `cargo test` does.
    crate=$(dirname "$(dirname "$src")")
    dir=$OUT/$(basename "$suite" .rs)
    mkdir -p "$dir"
    cat > "$dir/suite.sh" <<SUITE
export CI=true RUST_BACKTRACE=1 NETCFG_KERNEL_LANE=1
echo "kernel \$(uname -r); modules loaded: \$(cut -d' ' -f1 /proc/modules | sort | tr '\\n' ' ')"
echo "===== $suite"
cd "$crate" && "$exe" ${LANE_TEST_ARGS:-}
rc=\$?
echo "modules loaded after the suite: \$(cut -d' ' -f1 /proc/modules | sort | tr '\\n' ' ')"
exit \$rc
SUITE
    t=$(date +%s)
    rc=0
    tests/kernel/run-in-vm.sh "$dir" "$dir/suite.sh" || rc=$?
    echo "===== $suite: $([ "$rc" = 0 ] && echo ok || echo "FAILED (exit status $rc)") in $(($(date +%s) - t)) s"
    [ "$rc" = 0 ] || failed="$failed $suite"
done

echo "kernel lane: ${#SUITES[@]} suites in $(($(date +%s) - start)) s (build included)"
if [ -n "$failed" ]; then
    echo "kernel lane: failed:$failed" >&2
    exit 1
fi
