#!/usr/bin/env bash
# Installs the build into a scratch prefix and builds a program against it with pkg-config only,
# as a user of the installed library would.
set -euo pipefail
build="$1"
dest="$(mktemp -d)"
trap 'rm -rf "$dest"' EXIT
meson install -C "$build" --destdir "$dest" --no-rebuild --quiet >/dev/null
prefix="$(meson introspect "$build" --buildoptions | python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="prefix"))')"
libdir="$(meson introspect "$build" --buildoptions | python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="libdir"))')"
root="$dest$prefix"
pcdir="$root/$libdir/pkgconfig"
test -f "$root/include/icepunch/icepunch.hpp"
test -f "$root/include/icepunch/version.hpp"
test -x "$root/bin/icepunch"
test -L "$root/$libdir/libicepunch.so"
test -e "$root/$libdir/libicepunch.so.0"
cat >"$dest/use.cpp" <<'CPP'
#include <icepunch/icepunch.hpp>
#include <cstdio>
int main() {
    auto c = icepunch::Candidate::parse("candidate:1 1 UDP 2130706431 192.0.2.1 5000 typ host");
    std::printf("%s %s\n", icepunch::kVersion, c ? c->toString().c_str() : c.error().message.c_str());
    return c ? 0 : 1;
}
CPP
# Point the .pc file at the scratch prefix, where a real install would not need this.
pc() { PKG_CONFIG_PATH="$pcdir" pkg-config --define-variable=prefix="$root" "$@" icepunch; }
# No public header includes GLib, libnice or OpenSSL: a user compiles with our include path only
# (no glib, nice, gupnp, libsoup ... paths dragged in through Requires.private).
for flag in $(pc --cflags); do
    if [[ "$flag" != "-I$root/include" ]]; then
        echo "pkg-config --cflags icepunch has $flag besides -I$root/include: $(pc --cflags)" >&2
        exit 1
    fi
done
flags="$(pc --cflags --libs)"
# shellcheck disable=SC2086
g++ -std=c++20 -Wall -Wextra -Werror "$dest/use.cpp" -o "$dest/use" $flags
LD_LIBRARY_PATH="$root/$libdir" "$dest/use"
