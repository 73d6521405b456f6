#!/usr/bin/env bash
# icepunch NAT lab: builds NAT topologies in network namespaces, with coturn
# (RFC 5780, two addresses) as the public STUN/TURN server.
# See tests/natlab/README.md. Exit code 77 = skip (no namespaces available).
set -euo pipefail

STATE_ROOT=${NATLAB_STATE_ROOT:-/run/icepunch-natlab}
PUBNET=203.0.113
FAKE_GW=203.0.113.254            # unused address: default route of every public host
FAKE_GW_MAC=02:00:5e:00:71:fe    # permanent neighbour entry -> packets vanish silently
SRV_IP1=203.0.113.10
SRV_IP2=203.0.113.11
STUN_PORT=3478
ALT_PORT=3479
TLS_PORT=5349
TLS_ALT_PORT=443
TURN_USER=lab
TURN_PASS=labpass
TURN_REALM=lab.test
KINDS="full restricted port symmetric udpblock"   # the matrix's kinds
UP_KINDS="$KINDS restricted2"                      # restricted2: for `nat`, not in the matrix
NODES="a b srv ra rb cg pub"

die() { echo "natlab: $*" >&2; exit 1; }
skip() { echo "natlab: network namespaces unavailable: $*"; exit 77; }

usage() {
  cat >&2 <<'EOF'
usage: lab.sh up <kindA> <kindB> [--prefix P] [--loss N]
       lab.sh up double <kindB> [--prefix P] [--loss N]
       lab.sh up samenat [--prefix P] [--loss N]
       lab.sh verify [--prefix P] [--fast]   (--fast: mapping only, skips filtering)
       lab.sh down [--prefix P]
       lab.sh restart-coturn [--prefix P]   (every allocation is lost, as in a server restart)
       lab.sh exec <a|b|srv|ra|rb|cg|pub> [--prefix P] -- cmd...
kinds: full restricted port symmetric udpblock restricted2
EOF
  exit 2
}

# ---------------------------------------------------------------- helpers
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

st_get() {  # st_get key  -> value from the state file (empty if absent)
  local f="$STATE_DIR/state"
  [ -f "$f" ] || return 0
  sed -n "s/^$1=//p" "$f" | tail -n1
}
st_put() { printf '%s=%s\n' "$1" "$2" >>"$STATE_DIR/state"; }

mkns() {  # mkns name: namespace with lo up, IPv6 off
  local ns=$1 err
  if ! err=$(ip netns add "$ns" 2>&1); then
    if [ "${FIRST_NS:-1}" = 1 ]; then skip "ip netns add $ns: $err"; fi
    die "ip netns add $ns: $err"
  fi
  FIRST_NS=0
  ip -n "$ns" link set lo up
  # IPv6 off in every lab namespace: no link-local/ULA candidates, no v6 leaks.
  nsx "$ns" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 \
    net.ipv6.conf.default.disable_ipv6=1 "${@:2}" >/dev/null
}

# pub_port node ns: veth from the Internet bridge to "wan" in ns
pub_port() {
  ip -n "$NS_PUB" link add "$1" type veth peer name wan netns "$2"
  ip -n "$NS_PUB" link set "$1" master br0 up
  ip -n "$2" link set wan up
}

# public_host ns addr...: addresses on wan + default via the unused address
public_host() {
  local ns=$1 a; shift
  for a in "$@"; do ip -n "$ns" addr add "$a/24" dev wan; done
  ip -n "$ns" neigh replace "$FAKE_GW" lladdr "$FAKE_GW_MAC" dev wan nud permanent
  ip -n "$ns" route add default via "$FAKE_GW" dev wan
}

# lan_link rns rif hns hif: veth rif (router side) <-> hif (host side)
lan_link() {
  ip -n "$1" link add "$2" type veth peer name "$4" netns "$3"
  ip -n "$1" link set "$2" up
  ip -n "$3" link set "$4" up
}

# host_addr ns ip/len gw
host_addr() {
  ip -n "$1" addr add "$2" dev eth0
  ip -n "$1" route add default via "$3" dev eth0
}

# router_rules ns kind lanhost loss
router_rules() {
  local ns=$1 kind=$2 host=$3 loss=$4 masq="masquerade" pre="" postf="" fwd="" sets=""
  case $kind in
    port|udpblock) ;;
    symmetric) masq="masquerade fully-random" ;;
    full|restricted)
      # Linux masquerade keeps the source port when it can, so inbound packets are
      # dnat'ed to the LAN host on the same port. Sets are keyed by the external
      # (mapped) port = ct reply proto-dst, read after masquerade (srcnat + 10).
      if [ "$kind" = full ]; then
        # mapped: external UDP ports with a mapping (refreshed by outbound packets)
        sets+="set mapped { type inet_service; flags timeout; timeout 300s; }"$'\n'
        postf+="oifname \"wan\" ct direction original meta l4proto udp update @mapped { ct reply proto-dst timeout 300s }"$'\n'
        pre+="iifname \"wan\" udp dport @mapped dnat to $host"$'\n'
      else
        # contacted: (external port . remote address) pairs, i.e. ADF per mapping
        sets+="set contacted { type inet_service . ipv4_addr; flags timeout; timeout 300s; }"$'\n'
        postf+="oifname \"wan\" ct direction original meta l4proto udp update @contacted { ct reply proto-dst . ip daddr timeout 300s }"$'\n'
        pre+="iifname \"wan\" udp dport . ip saddr @contacted dnat to $host"$'\n'
      fi ;;
    restricted2) ;;  # rules below, after the loss rules of the forward chain
    *) die "unknown router kind '$kind'" ;;
  esac
  [ "$kind" = udpblock ] && fwd+="iifname \"lan\" meta l4proto udp drop"$'\n'
  if [ "${loss:-0}" -gt 0 ]; then
    fwd+="iifname \"wan\" numgen random mod 100 < $loss drop"$'\n'
    fwd+="oifname \"wan\" numgen random mod 100 < $loss drop"$'\n'
  fi
  if [ "$kind" = restricted2 ]; then
    # Address-restricted the other way round from `restricted`: every inbound UDP packet to a
    # mapped port is dnat'ed to the host that owns the mapping (a map learned from conntrack,
    # not one fixed host), and the forward chain filters it against the set of addresses the
    # host has contacted, from any of its ports: RFC 3489's restricted cone, keyed by host and
    # not by mapping. 120 s: conntrack's timeout for a UDP flow that saw replies.
    sets+="map mapped { type inet_service : ipv4_addr; flags timeout; timeout 120s; }"$'\n'
    sets+="set contacted { type ipv4_addr . ipv4_addr; flags timeout; timeout 120s; }"$'\n'
    postf+="oifname \"wan\" ct direction original meta l4proto udp update @mapped { ct reply proto-dst timeout 120s : ct original ip saddr }"$'\n'
    pre+="iifname \"wan\" meta l4proto udp dnat to udp dport map @mapped"$'\n'
    fwd+="oifname \"wan\" meta l4proto udp update @contacted { ip saddr . ip daddr timeout 120s }"$'\n'
    fwd+="iifname \"wan\" meta l4proto udp ct direction original ct status dnat ip daddr . ip saddr @contacted accept"$'\n'
    fwd+="iifname \"wan\" meta l4proto udp ct direction original ct status dnat drop"$'\n'
  fi
  nsx "$ns" nft -f - <<EOF
table ip natlab {
$sets
  chain c_pre { type nat hook prerouting priority dstnat; policy accept;
$pre  }
  chain c_post { type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" $masq
  }
  chain c_postf { type filter hook postrouting priority srcnat + 10; policy accept;
$postf  }
  chain c_in { type filter hook input priority filter; policy accept;
    iifname "wan" ct state new drop
  }
  chain c_fwd { type filter hook forward priority filter; policy accept;
$fwd  }
}
EOF
}

# ------------------------------------------------------------------- args
[ $# -ge 1 ] || usage
CMD=$1; shift
P=ipl; LOSS=0; FAST=0; POS=(); EXEC_ARGS=()
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) [ $# -ge 2 ] || usage; P=$2; shift 2 ;;
    --prefix=*) P=${1#*=}; shift ;;
    --loss) [ $# -ge 2 ] || usage; LOSS=$2; shift 2 ;;
    --loss=*) LOSS=${1#*=}; shift ;;
    --fast) FAST=1; shift ;;
    --) shift; EXEC_ARGS=("$@"); break ;;
    *) POS+=("$1"); shift ;;
  esac
done
[[ $P =~ ^[a-z][a-z0-9]{0,9}$ ]] || die "prefix must match [a-z][a-z0-9]{0,9}"
[[ $LOSS =~ ^[0-9]+$ ]] && [ "$LOSS" -le 100 ] || die "--loss must be 0..100"
STATE_DIR=$STATE_ROOT/$P
NS_PUB=$P-pub NS_SRV=$P-srv NS_RA=$P-ra NS_RB=$P-rb NS_A=$P-a NS_B=$P-b NS_CG=$P-cg

need_root() {
  [ "$(id -u)" -eq 0 ] || skip "not root (uid $(id -u))"
  command -v ip >/dev/null || skip "iproute2 (ip) not installed"
}

# ------------------------------------------------------------------- down
stop_coturn() {  # SIGKILL the lab's coturn (ours: its command line names our tmpdir)
  local pid tmp
  pid=$(st_get coturn_pid); tmp=$(st_get tmpdir)
  if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] &&
     tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "turnserver.*$tmp"; then
    # SIGKILL: coturn needs ~1.1 s for a graceful SIGTERM exit and its state
    # (db, log) is thrown away anyway. Wait until it is gone (or a zombie).
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      [ -d "/proc/$pid" ] || break
      grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && break
      sleep 0.01
    done
  fi
}

do_down() {
  local tmp ns
  tmp=$(st_get tmpdir)
  stop_coturn
  for ns in $NODES; do
    if [ -e "/run/netns/$P-$ns" ]; then ip netns del "$P-$ns" 2>/dev/null || true; fi
  done
  case $tmp in /tmp/natlab-"$P".*) rm -rf "$tmp" ;; esac
  rm -rf "$STATE_DIR"
}

# --------------------------------------------------------------------- up
make_certs() {
  local t=$1
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$t/ca.key" -out "$t/ca.pem" -days 30 -subj "/CN=icepunch natlab CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$t/server.key" -out "$t/server.csr" -subj "/CN=turn.lab.test" 2>/dev/null
  cat >"$t/server.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$SRV_IP1,IP:$SRV_IP2,DNS:turn.lab.test
EOF
  openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" \
    -CAcreateserial -out "$t/server.pem" -days 30 -extfile "$t/server.ext" 2>/dev/null
}

start_coturn() {
  local t=$1 pid i
  # setsid: own session, not killed with the caller's process group; same PID
  # (a background job of a non-interactive shell is not a group leader).
  setsid ip netns exec "$NS_SRV" turnserver -n --no-cli --log-file=stdout \
    --pidfile="$t/turnserver.pid" --db="$t/turndb" \
    -L "$SRV_IP1" -L "$SRV_IP2" --listening-port=$STUN_PORT --alt-listening-port=$ALT_PORT \
    --tls-listening-port=$TLS_PORT --alt-tls-listening-port=$TLS_ALT_PORT \
    --cert="$t/server.pem" --pkey="$t/server.key" --no-tlsv1 --no-tlsv1_1 \
    -a -u "$TURN_USER:$TURN_PASS" -r "$TURN_REALM" \
    --min-port=49152 --max-port=65535 \
    </dev/null >"$t/turnserver.log" 2>&1 &
  pid=$!
  st_put coturn_pid "$pid"
  # readiness: poll the listening sockets (every listener on both addresses)
  local want=(
    "tcp $SRV_IP1:$STUN_PORT" "tcp $SRV_IP2:$STUN_PORT" "tcp $SRV_IP1:$ALT_PORT"
    "tcp $SRV_IP1:$TLS_PORT" "tcp $SRV_IP2:$TLS_PORT" "tcp $SRV_IP1:$TLS_ALT_PORT"
    "udp $SRV_IP1:$STUN_PORT" "udp $SRV_IP2:$STUN_PORT" "udp $SRV_IP1:$ALT_PORT"
    "udp $SRV_IP2:$ALT_PORT")
  for i in $(seq 1 200); do           # up to ~10 s
    [ -d "/proc/$pid" ] || { sed 's/^/  coturn: /' "$t/turnserver.log" >&2; die "coturn exited during startup"; }
    local socks ok=1 w
    socks=$(nsx "$NS_SRV" ss -Hlntu 2>/dev/null | awk '{print $1, $5}')
    for w in "${want[@]}"; do
      grep -qxF "$w" <<<"$socks" || { ok=0; break; }
    done
    if [ $ok = 1 ]; then return 0; fi
    sleep 0.05
  done
  sed 's/^/  coturn: /' "$t/turnserver.log" >&2
  die "coturn not ready after 10 s"
}

do_up() {
  need_root
  local topo kindA kindB t
  case ${POS[0]:-} in
    double) [ ${#POS[@]} -eq 2 ] || usage; topo=double; kindA=port; kindB=${POS[1]} ;;
    samenat) [ ${#POS[@]} -eq 1 ] || usage; topo=samenat; kindA=port; kindB=port ;;
    *) [ ${#POS[@]} -eq 2 ] || usage; topo=pair; kindA=${POS[0]}; kindB=${POS[1]} ;;
  esac
  for k in $kindA $kindB; do
    [[ " $UP_KINDS " == *" $k "* ]] || die "unknown kind '$k' (kinds: $UP_KINDS)"
  done
  command -v nft >/dev/null || skip "nft not installed"
  command -v turnserver >/dev/null || die "turnserver (coturn) not installed"
  if [ -d "$STATE_DIR" ] || ls /run/netns/"$P"-* >/dev/null 2>&1; then
    die "prefix '$P' in use (run: lab.sh down --prefix $P)"
  fi
  mkdir -p "$STATE_DIR"
  trap 'rc=$?; if [ $rc -ne 0 ]; then do_down >/dev/null 2>&1 || true; fi; exit $rc' EXIT
  t=$(mktemp -d "/tmp/natlab-$P.XXXXXX")
  : >"$STATE_DIR/state"
  st_put prefix "$P"; st_put tmpdir "$t"; st_put topo "$topo"
  st_put kind_a "$kindA"; st_put kind_b "$kindB"; st_put loss "$LOSS"
  make_certs "$t" &           # runs while the namespaces are built
  local certs_pid=$!

  # the Internet: a bridge in its own namespace
  mkns "$NS_PUB"
  ip -n "$NS_PUB" link add br0 type bridge
  ip -n "$NS_PUB" link set br0 up
  # server with two addresses
  mkns "$NS_SRV"
  pub_port srv "$NS_SRV"
  public_host "$NS_SRV" "$SRV_IP1" "$SRV_IP2"

  local fwd=(net.ipv4.ip_forward=1)
  case $topo in
    pair|double)
      # side B: router rb + host b
      mkns "$NS_RB" "${fwd[@]}"; mkns "$NS_B"
      pub_port rb "$NS_RB"; public_host "$NS_RB" $PUBNET.2
      lan_link "$NS_RB" lan "$NS_B" eth0
      ip -n "$NS_RB" addr add 10.0.2.1/24 dev lan
      host_addr "$NS_B" 10.0.2.2/24 10.0.2.1
      router_rules "$NS_RB" "$kindB" 10.0.2.2 "$LOSS"
      mkns "$NS_RA" "${fwd[@]}"; mkns "$NS_A"
      lan_link "$NS_RA" lan "$NS_A" eth0
      ip -n "$NS_RA" addr add 10.0.1.1/24 dev lan
      host_addr "$NS_A" 10.0.1.2/24 10.0.1.1
      if [ $topo = pair ]; then
        pub_port ra "$NS_RA"; public_host "$NS_RA" $PUBNET.1
        router_rules "$NS_RA" "$kindA" 10.0.1.2 "$LOSS"
      else
        # carrier-grade NAT cg (WAN 203.0.113.1, LAN 100.64.0.1/10) -> home router ra
        mkns "$NS_CG" "${fwd[@]}"
        pub_port cg "$NS_CG"; public_host "$NS_CG" $PUBNET.1
        lan_link "$NS_CG" lan "$NS_RA" wan
        ip -n "$NS_CG" addr add 100.64.0.1/10 dev lan
        ip -n "$NS_RA" addr add 100.64.0.2/10 dev wan
        ip -n "$NS_RA" route add default via 100.64.0.1 dev wan
        router_rules "$NS_CG" port 100.64.0.2 "$LOSS"
        router_rules "$NS_RA" port 10.0.1.2 0
      fi ;;
    samenat)
      # a (10.0.1.2) and b (10.0.1.3) on one bridge "lan" in ra; no hairpinning
      mkns "$NS_RA" "${fwd[@]}"; mkns "$NS_A"; mkns "$NS_B"
      pub_port ra "$NS_RA"; public_host "$NS_RA" $PUBNET.1
      ip -n "$NS_RA" link add lan type bridge
      ip -n "$NS_RA" link set lan up
      ip -n "$NS_RA" addr add 10.0.1.1/24 dev lan
      lan_link "$NS_RA" pa "$NS_A" eth0; ip -n "$NS_RA" link set pa master lan
      lan_link "$NS_RA" pb "$NS_B" eth0; ip -n "$NS_RA" link set pb master lan
      host_addr "$NS_A" 10.0.1.2/24 10.0.1.1
      host_addr "$NS_B" 10.0.1.3/24 10.0.1.1
      router_rules "$NS_RA" port 10.0.1.2 "$LOSS" ;;
  esac

  wait "$certs_pid" || die "openssl failed to make the lab certificates"
  st_put ca "$t/ca.pem"
  start_coturn "$t"
  trap - EXIT
  echo "ready prefix=$P topo=$topo kind_a=$kindA kind_b=$kindB loss=$LOSS a=$NS_A b=$NS_B srv=$NS_SRV ra=$NS_RA rb=$([ $topo = samenat ] && echo none || echo "$NS_RB") stun=$SRV_IP1:$STUN_PORT stun_alt=$SRV_IP2:$ALT_PORT turn=$SRV_IP1:$STUN_PORT turns=$SRV_IP1:$TLS_PORT turns_alt=$SRV_IP1:$TLS_ALT_PORT turn_user=$TURN_USER turn_pass=$TURN_PASS turn_realm=$TURN_REALM ca=$t/ca.pem state=$STATE_DIR/state" | tee -a "$STATE_DIR/ready"
}

# ----------------------------------------------------------------- verify
# natdiscovery output parsing: see README.md for the exact lines.
parse_mapping() {  # file -> EIM | ADM | APDM | FAIL
  # natdiscovery still prints a verdict after a lost response ("STUN receive
  # timeout.." then e.g. "NAT with Endpoint Independent Mapping!" for a
  # symmetric NAT): a timeout makes the mapping result invalid.
  if grep -q 'STUN receive timeout' "$1"; then echo FAIL
  elif grep -q 'NAT with Endpoint Independent Mapping' "$1"; then echo EIM
  elif grep -q 'NAT with Address Dependent Mapping' "$1"; then echo ADM
  elif grep -q 'NAT with Address and Port Dependent Mapping' "$1"; then echo APDM
  elif grep -q 'No NAT' "$1"; then echo NONAT
  else echo FAIL; fi
}
parse_filtering() {  # file -> EIF | ADF | APDF | FAIL
  if grep -q 'Endpoint Independent Filtering' "$1"; then echo EIF
  elif grep -q 'Address Dependent Filtering' "$1"; then echo ADF
  elif grep -q 'Address and Port Dependent Filtering' "$1"; then echo APDF
  else echo FAIL; fi
}

expect_of() {
  case $1 in
    full) echo "EIM+EIF" ;; restricted|restricted2) echo "EIM+ADF" ;; port) echo "EIM+APDF" ;;
    symmetric) echo "APDM" ;; udpblock) echo "UDP-blocked+TCP-ok" ;;
  esac
}

verify_host() {  # verify_host h ns ip kind outdir -> writes outdir/h.result
  local h=$1 ns=$2 ip=$3 kind=$4 o=$5 obs m f
  if [ "$kind" = udpblock ]; then
    local udp=blocked tcp=fail
    timeout 1.5 ip netns exec "$ns" turnutils_natdiscovery -m -L "$ip" -l 40100 "$SRV_IP1" >"$o/$h.m" 2>&1 || true
    [ "$(parse_mapping "$o/$h.m")" = FAIL ] || udp=open
    if timeout 3 ip netns exec "$ns" bash -c "exec 3<>/dev/tcp/$SRV_IP1/$STUN_PORT" 2>/dev/null; then tcp=ok; fi
    obs="UDP-$udp+TCP-$tcp"
    [ $udp = blocked ] && [ $tcp = ok ] && obs="UDP-blocked+TCP-ok"
  elif [ "${LOSS:-0}" -gt 0 ]; then
    # with random loss natdiscovery (no retransmissions) cannot tell a lost
    # response from a filter: check the mapping only, retrying on fresh ports,
    # and measure the round-trip ICMP loss through the router.
    local i
    m=FAIL
    for i in 1 2 3 4 5 6 7 8; do
      timeout 4 ip netns exec "$ns" turnutils_natdiscovery -m -L "$ip" -l $((40100 + i)) "$SRV_IP1" >"$o/$h.m" 2>&1 || true
      m=$(parse_mapping "$o/$h.m")
      [ "$m" = FAIL ] || break
    done
    local pl="n/a"
    if command -v ping >/dev/null; then
      pl=$( { ip netns exec "$ns" ping -q -n -c 200 -i 0.002 -W 1 "$SRV_IP1" 2>/dev/null || true; } |
           sed -n 's/.* \([0-9.]*\)% packet loss.*/\1%/p')
    fi
    echo "mapping_attempts=$i rtt_loss_observed=${pl:-?}" >"$o/$h.loss"
    obs=$m
  else
    # filtering first, on a fresh mapping (its own local port), then mapping: the mapping
    # test contacts the second address, which opens a filter keyed by host (restricted2)
    # for every mapping of the host, not only for the one that sent.
    [ "$kind" = symmetric ] || [ "$FAST" = 1 ] || ip netns exec "$ns" timeout 20 turnutils_natdiscovery -f -L "$ip" -l 40200 "$SRV_IP1" >"$o/$h.f" 2>&1 || true
    ip netns exec "$ns" timeout 20 turnutils_natdiscovery -m -L "$ip" -l 40100 "$SRV_IP1" >"$o/$h.m" 2>&1 || true
    m=$(parse_mapping "$o/$h.m"); f=none
    [ -f "$o/$h.f" ] && f=$(parse_filtering "$o/$h.f")
    if [ "$FAST" = 1 ]; then obs=$m
    elif [ "$m" = APDM ]; then obs=APDM; [ "$kind" = symmetric ] || obs="APDM+$f"
    else obs="$m+$f"; fi
  fi
  echo "$obs" >"$o/$h.result"
}

do_verify() {
  need_root
  [ -f "$STATE_DIR/state" ] || die "no lab with prefix '$P' (state $STATE_DIR/state missing)"
  local topo ka kb o rc=0 ipb=10.0.2.2
  topo=$(st_get topo); ka=$(st_get kind_a); kb=$(st_get kind_b); LOSS=$(st_get loss)
  [ "$topo" = samenat ] && ipb=10.0.1.3
  o=$(mktemp -d "/tmp/natlab-verify-$P.XXXXXX")
  verify_host a "$NS_A" 10.0.1.2 "$ka" "$o" &
  local pa=$!
  verify_host b "$NS_B" $ipb "$kb" "$o" &
  wait $pa || true; wait $! || true
  local h k exp obs
  for h in a b; do
    k=$ka; [ $h = b ] && k=$kb
    exp=$(expect_of "$k"); obs=$(cat "$o/$h.result" 2>/dev/null || echo none)
    local extra=""
    if [ "$k" != udpblock ] && { [ "$LOSS" -gt 0 ] || [ "$FAST" = 1 ]; }; then
      exp=${exp%%+*}    # mapping only under loss or with --fast
      [ "$LOSS" -gt 0 ] && extra=" loss=$LOSS% $(cat "$o/$h.loss" 2>/dev/null || true)"
    fi
    local verdict=ok
    [ "$exp" = "$obs" ] || { verdict=MISMATCH; rc=1; }
    echo "verify host=$h ns=$P-$h topo=$topo kind=$k expected=$exp observed=$obs$extra $verdict"
    if [ $verdict != ok ] || [ -n "${NATLAB_VERBOSE:-}" ]; then
      for f in "$o/$h".m "$o/$h".f; do [ -f "$f" ] && sed "s/^/  $h: /" "$f" >&2; done
    fi
  done
  rm -rf "$o"
  return $rc
}

# ------------------------------------------------------------------- main
case $CMD in
  up) do_up ;;
  down) need_root; do_down ;;
  restart-coturn)
    need_root
    [ -f "$STATE_DIR/state" ] || die "no lab with prefix '$P'"
    stop_coturn
    start_coturn "$(st_get tmpdir)"
    echo "coturn restarted pid=$(st_get coturn_pid)" ;;
  verify) do_verify ;;
  exec)
    need_root
    [ ${#POS[@]} -eq 1 ] || usage
    [[ " $NODES " == *" ${POS[0]} "* ]] || die "unknown node '${POS[0]}'"
    [ ${#EXEC_ARGS[@]} -gt 0 ] || usage
    exec ip netns exec "$P-${POS[0]}" "${EXEC_ARGS[@]}" ;;
  *) usage ;;
esac
