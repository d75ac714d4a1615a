#!/bin/sh
# pmake: a parallel compile of GNU chess (what Disco's pmake compiled),
# gnuchess 6.2.7 from its Debian source tarball (apt-get source).
#   pmake.sh [small|full]     (NPROC=N sets make -jN; default: the CPUs)
#   PART=I/K pmake.sh small   (bench fig7: compile only part I of K of the
#                              engine's objects, 0-based, and no link)
# full:  ./configure --without-readline (untimed: about 200 s under TCG,
#        and serial), then `make -jN` of the real build system (timed).
# small: only the chess engine (src/engine: Fruit 2.1, 33 C++ files) plus
#        pmake/uci-main.cc, which connects the engine's UCI pipes to
#        stdin/stdout; no configure (pmake/config.h holds what configure
#        finds on this Debian); `make -f pmake/Makefile -jN` at -O0
#        (timed). All 82 files at -O0 took 383 s under the monitor on
#        2 vCPUs: too long for a test.
# Then the built program, as a UCI engine, is asked for the best move in a
# mate-in-one position (after 1. f3 e5 2. g4, black mates with Qh4#:
# d8h4); checksum = md5 of its `bestmove` line.
. /opt/disco/workloads/lib.sh
SIZE=${1:-small}
case "$SIZE" in small|full) ;; *) echo "pmake: size is small or full, not $SIZE" >&2; exit 2 ;; esac
fresh_scratch
tar xzf /opt/disco/src/gnuchess_6.2.7.orig.tar.gz
cd gnuchess-6.2.7
if [ "$SIZE" = full ]; then
    T=$(cut -d' ' -f1 /proc/uptime)
    ./configure --without-readline -q >configure.log 2>&1 || { tail -20 configure.log; exit 1; }
    echo "pmake: configure took $(awk -v a="$T" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.1f", b - a }') s"
    set -- make -j"$NPROC"
    BIN="src/gnuchess --uci"
elif [ -n "${PART:-}" ]; then
    I=${PART%/*} K=${PART#*/}
    case "$I/$K" in *[!0-9/]* | /* | */) echo "pmake: PART is I/K (0 <= I < K), not $PART" >&2; exit 2 ;; esac
    [ "$I" -lt "$K" ] || { echo "pmake: PART is I/K (0 <= I < K), not $PART" >&2; exit 2; }
    # Every K-th object of the engine's, uci-main.o among them.
    TARGETS=$({ ls src/engine/*.cpp | sed 's/\.cpp$/.o/'; echo src/engine/uci-main.o; } | sort |
        awk -v i="$I" -v k="$K" '(NR - 1) % k == i')
    set -- make -f "$W/pmake/Makefile" -j"$NPROC" CXXFLAGS=-O0 $TARGETS
    BIN=
else
    set -- make -f "$W/pmake/Makefile" -j"$NPROC" CXXFLAGS=-O0 src/engine/uci
    BIN=src/engine/uci
fi
begin pmake
"$@" >make.log 2>&1 || { tail -30 make.log; exit 1; }
end pmake
OBJECTS=$(find src -name '*.o' | wc -l)
echo "pmake: make -j$NPROC compiled $OBJECTS objects in $SECONDS_TAKEN s"
# Each object's md5, so that builds split differently can be compared.
find src -name '*.o' | sort | xargs md5sum | awk '{ print "OBJECT " $2 " " $1 }'
if [ -z "$BIN" ]; then
    CHECK=$(find src -name '*.o' | sort | xargs md5sum | md5)
    echo "RESULT workload=pmake size=$SIZE part=$PART jobs=$NPROC seconds=$SECONDS_TAKEN files=$OBJECTS answer=none checksum=$CHECK"
    exit 0
fi
# UCI: ask, then wait (at most 120 s) for the answer before quitting.
FEN='rnbqkbnr/pppp1ppp/8/4p3/6P1/5P2/PPPPP2P/RNBQKBNR b KQkq g3 0 2'
: >chess.out
(
    printf 'uci\nisready\nposition fen %s\ngo depth 3\n' "$FEN"
    i=0
    while [ $i -lt 120 ] && ! grep -q '^bestmove' chess.out; do sleep 1; i=$((i + 1)); done
    printf 'quit\n'
) | timeout 180 $BIN >chess.out 2>&1 || true
ANSWER=$(grep -m1 '^bestmove' chess.out || true)
echo "pmake: gnuchess answered: ${ANSWER:-nothing}"
CHECK=$(echo "$ANSWER" | md5)
echo "RESULT workload=pmake size=$SIZE jobs=$NPROC seconds=$SECONDS_TAKEN files=$OBJECTS answer=$(echo "${ANSWER:-none}" | tr ' ' _) checksum=$CHECK"
