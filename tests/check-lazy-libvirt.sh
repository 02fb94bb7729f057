#!/bin/sh
# libvirt is loaded on first use (agent/lib/libvirt_dl.c), not at process
# start: the shared library does not name it in DT_NEEDED, carries the
# .note.dlopen metadata that names it instead, and `gpuwarden discover` runs
# without mapping it.
#   check-lazy-libvirt.sh LIBGPUWARDEN GPUWARDEN HOST_ROOT
set -eu
lib=$1 cli=$2 root=$3
if readelf -d "$lib" | grep 'NEEDED' | grep -q 'libvirt'; then
    echo "$lib links libvirt (DT_NEEDED):"; readelf -d "$lib" | grep NEEDED; exit 1
fi
readelf -p .note.dlopen "$lib" | grep -q '"soname":\["libvirt.so.0"\]' \
    || { echo "$lib: no .note.dlopen naming libvirt.so.0"; exit 1; }
log=$(LD_DEBUG=libs "$cli" discover --json --host-root "$root" 2>&1 >/dev/null)
echo "$log" | grep -q 'calling init: .*libgpuwarden' \
    || { echo "LD_DEBUG=libs showed no loading of libgpuwarden: $log" | head -20; exit 1; }
if echo "$log" | grep -q 'libvirt'; then
    echo "gpuwarden discover mapped libvirt:"; echo "$log" | grep libvirt | head; exit 1
fi
echo "ok: libvirt not in DT_NEEDED, named in .note.dlopen, not mapped by discover ($("$cli" --version 2>/dev/null | head -1))"
