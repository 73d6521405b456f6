#!/usr/bin/env bash
# Builds the libFuzzer targets in build-fuzz and runs each for SECONDS (default 10) on a scratch
# copy of its seed corpus; exits non-zero if any target crashes or breaks the round trip.
set -euo pipefail

seconds="${1:-10}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS]" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
build=build-fuzz
# Every target in this folder (tests/fuzz/fuzz_*.cpp), so a new one cannot be left out.
targets=()
for source in tests/fuzz/fuzz_*.cpp; do
    target="$(basename "$source" .cpp)"
    if [[ ! -d "tests/fuzz/corpus/$target" ]]; then
        echo "$source has no seed corpus tests/fuzz/corpus/$target" >&2
        exit 2
    fi
    targets+=("$target")
done

if [[ ! -f "$build/build.ninja" ]]; then
    CXX=clang++ CC=clang meson setup "$build" -Dfuzzing=enabled -Dtests=disabled \
        -Dtools=disabled -Dbench=disabled -Dwerror=true
fi
# Only the fuzz targets: they compile the parser sources themselves, not the whole library.
ninja -C "$build" -j2 "${targets[@]/#/tests/fuzz/}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$build/fuzz-artifacts"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

failed=()
for target in "${targets[@]}"; do
    corpus="$scratch/$target"
    mkdir -p "$corpus"
    cp -R "tests/fuzz/corpus/$target/." "$corpus/"
    echo "== $target: ${seconds}s"
    if ! "$build/tests/fuzz/$target" -max_total_time="$seconds" -timeout=10 \
        -artifact_prefix="$build/fuzz-artifacts/$target-" "$corpus"; then
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "FAILED: ${failed[*]} (reproducers in $root/$build/fuzz-artifacts/)" >&2
    exit 1
fi
echo "all fuzz targets passed (${seconds}s each)"
