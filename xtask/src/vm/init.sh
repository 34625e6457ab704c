#!/bin/busybox sh
# PID 1 of a `cargo xtask vm-test` guest: prepare the kernel interfaces the tracer needs,
# run every test binary once per attach mode, print machine-readable result lines on the
# serial console (xtask parses the TRACER-VM-* lines), power off.
# /etc/tracer-vm/config (written by xtask) sets MODES; /etc/tracer-vm/modules lists the
# kernel modules to load, dependencies first.

/bin/busybox --install -s /bin
# The tests find the host's iproute2/nftables tools (in /usr/sbin) before busybox's
# smaller applets. (This shell runs its own applets first: name /usr/sbin/ip here for
# what busybox's `ip` lacks.)
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/tmp
# Panics in the tests print where they happened.
export RUST_BACKTRACE=1
# The stories compare the tracer's times with a packet capture's: within 1 ms on the
# host, where that precision is checked. Under TCG the stack between a hook and the
# capture point, or a softirq left for later, takes milliseconds: up to 9 ms measured on
# 2026-11-27 on an idle 2-core host, 66 ms with its cores busy with other builds. The
# guests check the same facts exactly (bytes, resets, probes, requests) and the times
# to within 100 ms.
export TRACER_TEST_WIRE_TOLERANCE_US=100000
# Guests carry nginx and curl but not tshark (nor Python): the TLS tests check the
# handshake time against the capture on the host only.
export TRACER_TEST_NO_TSHARK=1

# tcpdump (`-Z root`, the tests' packet captures) looks its user up.
echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd
echo 'root:x:0:' > /etc/group

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm

. /etc/tracer-vm/config
kernel=$(uname -r)

while read -r module; do
    insmod "/lib/modules/$kernel/$module" || echo "TRACER-VM-ERROR cannot load module $module"
done < /etc/tracer-vm/modules

ip link set lo up
# IPv6 tests connect to ::1, which the kernel adds to lo when it comes up; be sure.
ip -6 addr show dev lo | grep -q '::1/128' || ip -6 addr add ::1/128 dev lo

# What `--attach auto` picks for each hook here, for the matrix (`none`: no mechanism).
# The attach tests check that the tracer picks what check says.
picks=$(/opt/tracer/tracer check 2>&1 | awk '
    /^[a-z_]+:$/ {
        if (hook != "") printf " %s=%s", hook, pick
        hook = substr($1, 1, length($1) - 1); pick = "none"
    }
    $2 == "chosen" { pick = $1 }
    END { if (hook != "") printf " %s=%s", hook, pick }')
echo "TRACER-VM-AUTO$picks"

# Whether the tracer can run in an attach mode on this kernel, as `tracer check` tells
# (the suite's attach tests check that the tracer then does what check said).
supported() {
    /opt/tracer/tracer check --attach "$1" > "/tmp/check-$1" 2>&1
}

# Runs test binary $1 (named $2 in the result lines) with the filters that follow, and
# adds its counts to the mode's.
run_tests() {
    test=$1
    label=$2
    shift 2
    echo "TRACER-VM-BEGIN mode=$mode binary=$label"
    began=$(cut -d. -f1 /proc/uptime)
    TRACER_BIN=/opt/tracer/tracer TRACER_TEST_ATTACH=$mode \
        "$test" --test-threads="$(nproc)" "$@" 2>&1 | tee /tmp/test-output
    status=$?
    # libtest's summary line: "test result: ok. 7 passed; 0 failed; 0 ignored; ..."
    summary=$(grep '^test result:' /tmp/test-output | tail -n 1)
    passed=$(echo "$summary" | sed -n 's/.* \([0-9]*\) passed;.*/\1/p')
    failed=$(echo "$summary" | sed -n 's/.* \([0-9]*\) failed;.*/\1/p')
    passed=${passed:-0}
    failed=${failed:-0}
    # A binary that failed without a summary (crashed, killed) counts as one failure.
    if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
    seconds=$(($(cut -d. -f1 /proc/uptime) - began))
    echo "TRACER-VM-END mode=$mode binary=$label exit=$status passed=$passed failed=$failed seconds=$seconds"
    mode_passed=$((mode_passed + passed))
    mode_failed=$((mode_failed + failed))
}

set -o pipefail
for mode in $MODES; do
    if ! supported "$mode"; then
        # The whole report: a refused program's verifier log is what to read.
        cat "/tmp/check-$mode"
        echo "TRACER-VM-RESULT kernel=$kernel mode=$mode unsupported"
        continue
    fi
    mode_passed=0
    mode_failed=0
    first_mode=${MODES%% *}
    for test in /opt/tracer/tests/*; do
        binary=${test##*/}
        # Only the hooks with several mechanisms (state changes, keepalive, data) differ
        # between modes: their tests run in every mode (TLS's too: its uprobes learn a
        # call's socket from the data hook), the rest once per kernel. Of the
        # unit tests, those that read the running kernel (tracefs, BTF, kallsyms,
        # sock_diag, its version); the others are pure logic, already run on the host.
        # libtest runs the tests whose path contains any of the filters.
        case "$binary" in
            bin-*) continue ;;
            lib-*)
                [ "$mode" = "$first_mode" ] || continue
                run_tests "$test" "$binary" btf:: tracefs:: kallsyms:: existing:: preflight:: attach::
                ;;
            test-integration)
                # One module at a time, as separate binaries ran before: the emulated
                # CPUs are slow enough that the stories' timing suffers beside other
                # modules' load. The metrics tests run Prometheus and promtool, the
                # containers tests podman, the fleet tests Python's chdb, the systemd
                # tests systemd-nspawn, the top tests tmux and the report tests
                # Chromium, which guests do not carry; what they (and the OTLP tests)
                # check does not depend on the kernel beyond the events the other tests
                # check in every guest.
                if [ "$mode" = "$first_mode" ]; then
                    modules=$("$test" --list 2>/dev/null | sed -n 's/^\([a-z_]*\)::.*: test$/\1/p' | sort -u | grep -v -e '^metrics$' -e '^containers$' -e '^fleet$' -e '^systemd$' -e '^top$' -e '^report$' -e '^otlp$' -e '^pods$')
                else
                    modules="state_changes keepalive stories tls"
                fi
                for module in $modules; do
                    case "$module" in
                        # Python's client: no Python here.
                        tls) run_tests "$test" "$binary/$module" "$module::" --skip python ;;
                        *) run_tests "$test" "$binary/$module" "$module::" ;;
                    esac
                done
                ;;
            *)
                [ "$mode" = "$first_mode" ] || continue
                run_tests "$test" "$binary"
                ;;
        esac
    done
    echo "TRACER-VM-RESULT kernel=$kernel mode=$mode passed=$mode_passed failed=$mode_failed"
done
echo "TRACER-VM-DONE kernel=$kernel"
poweroff -f
