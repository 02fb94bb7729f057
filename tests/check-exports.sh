#!/bin/sh
# Fails when the shared library exports any symbol without the gw_ prefix, or
# lacks its SONAME.
set -eu
lib=$1
bad=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | grep -v '^gw_' || true)
if [ -n "$bad" ]; then
    echo "non-gw_ symbols exported by $lib:"; echo "$bad"; exit 1
fi
count=$(nm -D --defined-only "$lib" | grep -c ' gw_' || true)
[ "$count" -gt 0 ] || { echo "no gw_ symbols exported"; exit 1; }
soname=$(objdump -p "$lib" | awk '/SONAME/ {print $2}')
[ "$soname" = "libgpuwarden.so.0" ] || { echo "SONAME is '$soname'"; exit 1; }
echo "ok: $count gw_ symbols, SONAME $soname"
