#!/bin/sh
# /init of the lab guest: mount the kernel's file systems, load the modules
# the host listed (dependency order), then serve the host's commands on the
# second serial port. Each request is one line "<id> <base64 of a script>";
# the answer is "@@BEGIN <id>", the output in base64, "@@END <id> <rc>".
# Where systemd is PID 1 (the operator guest, tests/lab/rootfs.py) the same
# file is the ExecStart of the lab's own unit (lab-cmd.service): systemd has
# mounted and loaded everything and started the services, so it only serves.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
if [ "$$" = 1 ]; then
    mkdir -p /proc /sys /dev /tmp
    mount -t proc proc /proc
    mount -t sysfs sysfs /sys
    mount -t devtmpfs devtmpfs /dev
    mkdir -p /dev/pts /run /var/lib /tmp /lab/run
    mount -t tmpfs tmpfs /run
    mount -t tmpfs tmpfs /lab/run
    while read -r m; do
        [ -n "$m" ] || continue
        insmod "$m" || echo "lab-init: insmod $m failed" >/dev/console
    done < /lab/modules.txt
    # A guest with a real userspace (tests/lab/rootfs.py) starts its services.
    if [ -x /lab/boot.sh ]; then
        /lab/boot.sh > /dev/console 2>&1 || echo "lab-init: /lab/boot.sh failed" >/dev/console
    fi
else
    mkdir -p /lab/run
fi
echo "lab-init: ready $(uname -r)" >/dev/console
stty -F /dev/ttyS1 raw -echo 2>/dev/null
exec 3<>/dev/ttyS1
echo "@@READY" >&3
while IFS= read -r line <&3; do
    id=${line%% *}
    echo "${line#* }" | base64 -d > /lab/run/cmd.sh
    sh /lab/run/cmd.sh 3>&- </dev/null >/lab/run/out 2>&1
    rc=$?
    { echo "@@BEGIN $id"; base64 /lab/run/out; echo "@@END $id $rc"; } >&3
done
