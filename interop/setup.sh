#!/bin/sh
# Installs what the interop peers need at run time; idempotent.
#   aioice peer : Debian's python3-aioice (run with /usr/bin/python3)
#   aiortc peer : Debian's python3-aiortc (DTLS; run with /usr/bin/python3)
#   werift peers: werift-ice (peer.mjs) and werift (peer-dtls.mjs) from npm, pinned by
#                 interop/werift/package-lock.json
#   libnice peer: built by meson (libnice-dev is a build dependency of the project anyway)
#   relay path  : coturn's turnserver
set -eu
here=$(cd "$(dirname "$0")" && pwd)

missing=""
/usr/bin/python3 -c 'import aioice' 2>/dev/null || missing="$missing python3-aioice"
/usr/bin/python3 -c 'import aiortc' 2>/dev/null || missing="$missing python3-aiortc"
command -v turnserver >/dev/null 2>&1 || missing="$missing coturn"
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO apt-get install -y --no-install-recommends $missing
fi

if [ ! -d "$here/werift/node_modules/werift-ice" ] || [ ! -d "$here/werift/node_modules/werift" ]; then
    (cd "$here/werift" && npm ci --no-audit --no-fund)
fi
