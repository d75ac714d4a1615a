#!/bin/sh
# raytrace: POV-Ray 3.7 renders the benchmark scene of povray-examples
# (scenes/advanced/benchmark/benchmark.pov) with NPROC render threads.
#   raytrace.sh [small|full]
# small: 64x48 pixels, no anti-aliasing; full: 384x384, anti-aliasing 0.3
# (the scene's own benchmark.ini settings). The render is the timed region;
# checksum = md5 of the image (PPM: no time stamps in the file).
. /opt/disco/workloads/lib.sh
SIZE=${1:-small}
case "$SIZE" in
    small) GEOM="+W64 +H48 -A" ;;
    full) GEOM="+W384 +H384 +A0.3" ;;
    *) echo "raytrace: size is small or full, not $SIZE" >&2; exit 2 ;;
esac
fresh_scratch
SCENE=/usr/share/povray-3.7/scenes/advanced/benchmark/benchmark.pov
begin raytrace
# shellcheck disable=SC2086
povray +I"$SCENE" +Oimage.ppm +FP $GEOM -D -P +WT"$NPROC" +L/usr/share/povray-3.7/include -GA -GR +GF >render.log 2>&1 ||
    { tail -20 render.log; exit 1; }
end raytrace
CHECK=$(md5 <image.ppm)
echo "RESULT workload=raytrace size=$SIZE threads=$NPROC seconds=$SECONDS_TAKEN bytes=$(wc -c <image.ppm) checksum=$CHECK"
