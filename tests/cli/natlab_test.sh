#!/bin/sh
# icepunch nat inside the NAT lab: every router kind must be named right. Root only (skips: 77).
# usage: natlab_test.sh <icepunch binary> <lab.sh>
set -u
cli=$1
lab=$2
[ "$(id -u)" = 0 ] || { echo "natlab: not root, skipped"; exit 77; }
prefix=cli$$
prefix=$(echo "$prefix" | cut -c1-10)
tmp=$(mktemp -d)
status=0

up() { # kindA kindB
    out=$("$lab" up "$1" "$2" --prefix "$prefix" 2>&1)
    rc=$?
    if [ $rc = 77 ]; then echo "natlab: $out"; exit 77; fi
    if [ $rc != 0 ]; then echo "natlab up $1 $2 failed: $out"; status=1; return 1; fi
}
down() { "$lab" down --prefix "$prefix" >/dev/null 2>&1; }
nat() { # icepunch nat from host a
    "$lab" exec a --prefix "$prefix" -- "$cli" nat --json --timeout 1 \
        --server stun:203.0.113.10:3478 2>&1
}
natdiscovery_f() { # host local-port: coturn's RFC 5780 filtering test on a fresh mapping
    ip=10.0.1.2
    [ "$1" = b ] && ip=10.0.2.2
    "$lab" exec "$1" --prefix "$prefix" -- timeout 20 turnutils_natdiscovery -f -L "$ip" \
        -l "$2" 203.0.113.10 2>&1 | grep 'NAT with' || echo "no verdict from natdiscovery"
}
expect() { # what got wanted-substrings...
    what=$1
    got=$2
    shift 2
    for want in "$@"; do
        case $got in
        *"$want"*) ;;
        *) echo "MISMATCH $what wants $want: $got"; status=1; return 1 ;;
        esac
    done
    echo "ok $what: $got"
}
check() { # kind expected-substrings...
    kind=$1
    shift
    up "$kind" port || return
    got=$(nat)
    down
    expect "kind=$kind" "$got" "$@"
}
trap 'down; rm -rf "$tmp"' EXIT

check full '"behind_nat":true' '"mapping":"endpoint-independent"' \
    '"filtering":"endpoint-independent"' '"nat_type":"full cone"'
check port '"mapping":"endpoint-independent"' '"filtering":"address-and-port-dependent"' \
    '"nat_type":"port-restricted cone"'
check symmetric '"mapping":"address-and-port-dependent"' '"nat_type":"symmetric"'
check udpblock '"udp_blocked":true' '"nat_type":"UDP blocked"'

# The two address-restricted routers. natdiscovery -f on b (which never contacted the second
# address) proves the kind; natdiscovery -f on a fresh mapping of a, after icepunch nat's
# mapping tests reached 203.0.113.11 from a, shows how they differ: restricted keys its
# filter by mapping (still closed), restricted2 by host (open). So restricted2 is named right
# only because the filtering tests run first, each on a fresh socket.
for kind in restricted restricted2; do
    up "$kind" "$kind" || continue
    natdiscovery_f b 40200 >"$tmp/b" &
    got=$(nat)
    wait
    after=$(natdiscovery_f a 40300)
    down
    expect "kind=$kind" "$got" '"mapping":"endpoint-independent"' \
        '"filtering":"address-dependent"' '"nat_type":"restricted cone"'
    expect "kind=$kind natdiscovery -f, fresh host" "$(cat "$tmp/b")" \
        'NAT with Address Dependent Filtering'
    if [ "$kind" = restricted ]; then
        want='NAT with Address Dependent Filtering'
    else
        want='NAT with Endpoint Independent Filtering'
    fi
    expect "kind=$kind natdiscovery -f, fresh mapping after icepunch nat" "$after" "$want"
done

# An answer from the wrong source: ra rewrites the source of new inbound flows from
# 203.0.113.11 (the change IP+port answer to a fresh filtering socket) to 203.0.113.10.
# The answer gets in but must not count: filtering unknown, not a full cone.
if up full port; then
    "$lab" exec ra --prefix "$prefix" -- nft add rule ip natlab c_post oifname lan \
        ip saddr 203.0.113.11 snat to 203.0.113.10
    got=$(nat)
    down
    expect "wrong source" "$got" '"filtering":"unknown"' '"nat_type":null' \
        'came from 203.0.113.10:3479, not from OTHER-ADDRESS 203.0.113.11:3479: not counted'
fi
exit $status
