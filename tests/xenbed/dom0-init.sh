#!/bin/sh
# /init of the test bed's dom0 (busybox sh). Brings up what the xl toolstack needs, in the order
# measured to work (shared/reference/testbed.md), then hands the console to a shell that the test
# harness drives over Xen's serial line.
#
# Markers the harness waits for (never print them for any other reason):
#   NC2DD_DOM0_READY               the toolstack is up and the shell reads the console
#   NC2DD_DOM0_INIT_FAILED: <why>  a step failed; the shell still starts so the log can be read
export PATH=/usr/lib/xen-4.17/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root

failed=""
step() {
    # Runs one step; remembers the first failure instead of stopping, so the rest of the bring-up
    # still runs and the log shows everything that went wrong.
    "$@" || {
        echo "NC2DD_DOM0_INIT_FAILED: $*"
        [ -n "$failed" ] || failed="$*"
    }
}

step mount -t proc proc /proc
step mount -t sysfs sysfs /sys
step mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /proc/xen
# xenconsoled allocates a pty per guest console; without devpts xl times out waiting for it and
# destroys the guest.
step mount -t devpts devpts /dev/pts
echo 3 >/proc/sys/kernel/printk

kmod=/lib/modules/$(uname -r)/kernel
for m in drivers/xen/xen-privcmd drivers/xen/xen-evtchn drivers/xen/xen-gntdev \
    drivers/xen/xen-gntalloc drivers/xen/xenfs/xenfs drivers/xen/xen-pciback/xen-pciback \
    drivers/net/xen-netback/xen-netback; do
    step insmod "$kmod/$m.ko"
done
step mount -t xenfs xenfs /proc/xen

step xenstored --pid-file=/var/run/xenstored.pid
# Without the dom0 entries xen-init-dom0 writes, `xl create` fails with "Illegal pool specified".
step xen-init-dom0
step xenconsoled --pid-file=/var/run/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console

# Files the harness appended to the initramfs (the nc2dd ELF, xl configs) land under /nc2dd.
[ -d /nc2dd ] && ls -l /nc2dd

if [ -n "$failed" ]; then
    echo "dom0 init: first failure: $failed"
else
    echo NC2DD_DOM0_READY
fi
# The harness types commands; the console's tty echoes them into the log. The shell reads them as
# a script from the console, so it is not interactive: no prompt, no line editing, no terminal
# queries mixed into command output. (A `cat | sh` pipe instead delays each line until the next
# one arrives.) Commands get /dev/null as stdin so none can swallow the lines typed after it.
# setsid + cttyhack make the console the controlling tty.
exec setsid cttyhack sh -c 'while :; do sh /dev/console </dev/null; echo "dom0 shell exited, restarting"; done'
