#!/bin/sh
# icepunch nat inside the NAT lab: every router kind must be named right. Root only (skips: 77).
# usage: natlab_test.sh <icepunch binary> <lab.sh>
set -u
cli=$1
lab=$2
[ "$(id -u)" = 0 ] || { echo "natlab: not root, skipped"; exit 77; }
prefix=cli$$
prefix=$(echo "$prefix" | cut -c1-10)
status=0
check() { # kind expected-substrings...
    kind=$1; shift
    out=$("$lab" up "$kind" port --prefix "$prefix" 2>&1)
    rc=$?
    if [ $rc = 77 ]; then echo "natlab: $out"; exit 77; fi
    if [ $rc != 0 ]; then echo "natlab up $kind failed: $out"; status=1; return; fi
    got=$("$lab" exec a --prefix "$prefix" -- "$cli" nat --json --timeout 1 \
          --server stun:203.0.113.10:3478 2>&1)
    "$lab" down --prefix "$prefix" >/dev/null 2>&1
    for want in "$@"; do
        case $got in
        *"$want"*) ;;
        *) echo "MISMATCH kind=$kind wants $want: $got"; status=1; return ;;
        esac
    done
    echo "ok kind=$kind: $got"
}
trap '"$lab" down --prefix "$prefix" >/dev/null 2>&1' EXIT
check full '"behind_nat":true' '"mapping":"endpoint-independent"' \
    '"filtering":"endpoint-independent"' '"nat_type":"full cone"'
check restricted '"mapping":"endpoint-independent"' '"filtering":"address-dependent"' \
    '"nat_type":"restricted cone"'
check port '"mapping":"endpoint-independent"' '"filtering":"address-and-port-dependent"' \
    '"nat_type":"port-restricted cone"'
check symmetric '"mapping":"address-and-port-dependent"' '"nat_type":"symmetric"'
check udpblock '"udp_blocked":true' '"nat_type":"UDP blocked"'
exit $status
