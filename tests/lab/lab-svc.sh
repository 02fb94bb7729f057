#!/bin/sh
# /lab/svc start|stop|kill|restart libvirtd|gpuwardend: the lab guest's
# service manager (no systemd there). gpuwardend is started with the command
# line of the unit the package installs (/lib/systemd/system/gpuwardend.service),
# through /lab/gpuwardend-exec when the lab built one (the unit's sandbox,
# approximated: tests/lab/rootfs.py).
set -e
unit=/lib/systemd/system/gpuwardend.service

pidfile() { echo "/run/lab-$1.pid"; }

running() {
    pid=$(cat "$(pidfile "$1")" 2>/dev/null) || return 1
    [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null
}

wait_for() {   # seconds, service, command...: fails at once when the service exits
    n=$(($1 * 10)); svc=$2; shift 2
    while [ "$n" -gt 0 ]; do
        "$@" > /dev/null 2>&1 && return 0
        [ "$svc" = - ] || running "$svc" || { echo "$svc exited"; return 1; }
        sleep 0.1; n=$((n - 1))
    done
    return 1
}

start() {
    case "$1" in
    libvirtd)
        mkdir -p /run/libvirt
        setsid /usr/sbin/libvirtd < /dev/null >> /run/libvirtd.out 2>&1 &
        echo $! > "$(pidfile libvirtd)"
        wait_for 300 libvirtd virsh -c qemu:///system version || { echo "libvirtd did not come up"; tail -20 /var/log/libvirt/libvirtd.log /run/libvirtd.out; exit 1; }
        echo "lab-svc: libvirtd answers ($(cut -d' ' -f1 /proc/uptime) s since boot)"
        ;;
    gpuwardend)
        # StateDirectory=, RuntimeDirectory= (kept across restarts:
        # RuntimeDirectoryPreserve=restart).
        mkdir -p -m 0700 /var/lib/gpuwarden
        mkdir -p -m 0755 /run/gpuwarden
        cmd=$(sed -n 's/^ExecStart=//p' "$unit")
        [ -n "$cmd" ] || { echo "no ExecStart in $unit"; exit 1; }
        if [ -x /lab/gpuwardend-exec ]; then
            setsid /lab/gpuwardend-exec $cmd < /dev/null >> /run/gwd.log 2>&1 &
        else
            setsid $cmd < /dev/null >> /run/gwd.log 2>&1 &
        fi
        echo $! > "$(pidfile gpuwardend)"
        wait_for 300 gpuwardend gpuwarden list || { echo "gpuwardend did not come up"; tail -20 /run/gwd.log; exit 1; }
        echo "lab-svc: gpuwardend answers ($(cut -d' ' -f1 /proc/uptime) s since boot)"
        ;;
    esac
}

stop() {   # stop|kill name
    sig=TERM; [ "$1" = kill ] && sig=KILL
    pid=$(cat "$(pidfile "$2")" 2>/dev/null) || return 0
    kill -s "$sig" "$pid" 2>/dev/null || true
    wait_for 60 - sh -c "! [ -d /proc/$pid ] || grep -q '^State:.*Z' /proc/$pid/status" || { echo "$2 ($pid) did not stop"; exit 1; }
    rm -f "$(pidfile "$2")"
}

case "$1" in
start) running "$2" && { echo "$2 already running"; exit 1; }; start "$2" ;;
stop|kill) stop "$1" "$2" ;;
restart) stop stop "$2"; start "$2" ;;
status) running "$2" ;;
pid) cat "$(pidfile "$2")" ;;
*) echo "usage: /lab/svc start|stop|kill|restart|status|pid libvirtd|gpuwardend" >&2; exit 2 ;;
esac
