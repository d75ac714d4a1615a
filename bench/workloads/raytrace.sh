#!/bin/sh
# raytrace: POV-Ray 3.7 renders a scene of povray-examples with NPROC
# render threads.
#   raytrace.sh [small|full]
# small: scenes/advanced/woodbox.pov, 64x48 pixels, no anti-aliasing
#        (about 5 s under the monitor here);
# full:  scenes/advanced/benchmark/benchmark.pov (POV-Ray's own benchmark,
#        photons on), 384x384, anti-aliasing 0.3 (its benchmark.ini);
#        long under TCG: at 64x48 without anti-aliasing it took 494 s.
# The render is the timed region; checksum = md5 of the image's pixels
# (the PPM's header carries a "Render Date" comment, so the file's own md5
# changes from run to run; the pixels do not, for any thread count).
. /opt/disco/workloads/lib.sh
SIZE=${1:-small}
S=/usr/share/povray-3.7/scenes/advanced
case "$SIZE" in
    small) SCENE=$S/woodbox.pov W=64 H=48 AA=-A ;;
    full) SCENE=$S/benchmark/benchmark.pov W=384 H=384 AA=+A0.3 ;;
    *) echo "raytrace: size is small or full, not $SIZE" >&2; exit 2 ;;
esac
fresh_scratch
begin raytrace
povray +I"$SCENE" +Oimage.ppm +FP +W$W +H$H $AA -D -P +WT"$NPROC" +L/usr/share/povray-3.7/include -GA -GR +GF \
    >render.log 2>&1 || { tail -20 render.log; exit 1; }
end raytrace
# 8-bit binary PPM: the pixels are the last W*H*3 bytes.
CHECK=$(tail -c $((W * H * 3)) image.ppm | md5)
echo "RESULT workload=raytrace size=$SIZE scene=$(basename "$SCENE" .pov) pixels=${W}x$H threads=$NPROC seconds=$SECONDS_TAKEN checksum=$CHECK"
