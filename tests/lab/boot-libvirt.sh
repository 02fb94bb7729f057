#!/bin/sh
# Run by the lab's /init (init.sh) in the libvirt guest (tests/lab/rootfs.py),
# after the kernel file systems and the vfio modules: what systemd and the
# packages' units would set up on a host, then libvirtd and gpuwardend.
set -e
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
# AppArmor's interface, where the kernel has it (libvirt's apparmor security
# driver looks there).
[ -d /sys/kernel/security ] && mount -t securityfs securityfs /sys/kernel/security 2>/dev/null || true
hostname "$(cat /etc/hostname)"
ip link set lo up 2>/dev/null || true
mkdir -p /var/log/libvirt /var/lib/libvirt/qemu /var/cache/libvirt/qemu /run/lock
echo "lab-boot: starting libvirtd ($(cut -d' ' -f1 /proc/uptime) s since boot)"
/lab/svc start libvirtd
/lab/svc start gpuwardend
