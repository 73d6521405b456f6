#!/usr/bin/env bash
# The shared library's ABI as a user's linker sees it: soname libicepunch.so.0, the public API
# exported, nothing of lib/impl (icepunch::impl, icepunch::detail, Agent::Impl, EventLoop::Impl).
set -euo pipefail
lib="$1"

soname="$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\]$/\1/p')"
if [[ "$soname" != libicepunch.so.0 ]]; then
    echo "FAIL: soname of $lib is '$soname', want libicepunch.so.0"
    exit 1
fi

symbols="$(nm -D --defined-only -C "$lib")"
leaked="$(grep -E 'icepunch::(impl|detail)::|icepunch::(Agent|EventLoop)::Impl|CallbackGate' \
    <<<"$symbols" || true)"
if [[ -n "$leaked" ]]; then
    echo "FAIL: internal symbols exported by $lib:"
    echo "$leaked"
    exit 1
fi

# Without these the check above would also pass for a library that exports nothing.
for public in 'icepunch::Agent::create(' 'icepunch::Agent::~Agent()' \
    'icepunch::EventLoop::create(' 'icepunch::Candidate::parse(' 'icepunch::ServerUri::parse(' \
    'icepunch::SessionDescription::parse(' 'icepunch::makeRestCredentials(' \
    'icepunch::toString(icepunch::ComponentState)'; do
    if ! grep -qF " $public" <<<"$symbols"; then
        echo "FAIL: $public is not exported by $lib"
        exit 1
    fi
done
echo "soname $soname; $(wc -l <<<"$symbols") exported symbols, none internal"
