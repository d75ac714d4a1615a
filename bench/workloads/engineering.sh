#!/bin/sh
# engineering: a Verilog simulation with iverilog (see engineering/memsim.v).
#   engineering.sh [small|full]
# small: 20000 clock cycles; full: 2000000. Compiling (iverilog) is
# untimed; the vvp simulation is the timed region. checksum = md5 of the
# simulation's `cycle`/`done` lines.
. /opt/disco/workloads/lib.sh
SIZE=${1:-small}
case "$SIZE" in small) CYCLES=20000 ;; full) CYCLES=2000000 ;; *) echo "engineering: size is small or full, not $SIZE" >&2; exit 2 ;; esac
fresh_scratch
iverilog -o memsim.vvp "$W/engineering/memsim.v"
begin engineering
vvp -n memsim.vvp +cycles=$CYCLES >sim.out
end engineering
grep -E '^(cycle|done) ' sim.out >sim.lines
cat sim.lines
CHECK=$(md5 <sim.lines)
echo "RESULT workload=engineering size=$SIZE cycles=$CYCLES seconds=$SECONDS_TAKEN lines=$(wc -l <sim.lines) checksum=$CHECK"
