# Sourced by the workload scripts (bench/workloads/*.sh) in the Debian
# guest root of `cargo xtask disks` (they live at /opt/disco/workloads/).
#
# Each workload prints, on stdout:
#   DISCO-ROI-BEGIN NAME uptime=S   the timed region starts (disco-mark)
#   DISCO-ROI-END NAME uptime=S     it ends
#   RESULT workload=W size=Z seconds=S checksum=MD5 ...   one line, last
# and exits non-zero when its own checks fail.
set -eu
W=/opt/disco/workloads
SCRATCH=${SCRATCH:-/tmp/disco-work}
NPROC=${NPROC:-$(nproc)}

# The guest has no RTC: its clock starts at 1970, and files unpacked from a
# 2020 tarball would be "in the future" (make and tar complain, automake
# rules could fire). Any date after the sources' will do.
if [ "$(date +%Y)" -lt 2000 ]; then
    date -s @1767225600 >/dev/null
fi

# disco-mark: the region markers (a tiny C program, compiled here once).
MARK=/tmp/disco-mark
if [ ! -x "$MARK" ]; then
    cc -O2 -o "$MARK" "$W/disco-mark.c"
fi

begin() { "$MARK" begin "$1"; T0=$(cut -d' ' -f1 /proc/uptime); }
end() {
    "$MARK" end "$1"
    SECONDS_TAKEN=$(awk -v a="$T0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.2f", b - a }')
}

md5() { md5sum | cut -d' ' -f1; }

fresh_scratch() { rm -rf "$SCRATCH"; mkdir -p "$SCRATCH"; cd "$SCRATCH"; }
