# The in-VM comparison, run in the guest by /bin/sh (see vm.rs): the bench
# writes the schedule, this only carries it out and leaves what happened in
# the share ($S). From the environment: MON, WL (the agent and the workload
# binaries), CG (the cgroup the agent watches), LOAD (the workload's leaf
# below it), HOST (the agent's --host-root), LOOP_SECS, MAX_SECS, PORT;
# TRACE_STEPS, when not empty, prints the time of every step.
S=/run/vm
DIR=/dev/shm/monitor-bench-vm
OUT=/dev/shm/monitor-bench-agent.out
echo "$(uname -r)" > $S/uname
getconf CLK_TCK > $S/hz
mkdir -p "$LOAD" "$DIR" || exit 1

now() { date +%s.%N; }
T0=$(now)
since() { awk -v a="$T0" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }'; }
# Alive and not a zombie: sh reaps its children only in `wait`.
alive() {
    st=$(awk '{ print $3 }' /proc/$1/stat 2> /dev/null)
    [ -n "$st" ] && [ "$st" != Z ]
}
ticks() { awk '{ print $14 + $15 }' /proc/$1/stat 2> /dev/null || echo 0; }
loop() {
    w=$(($2 / 20))
    [ $w -ge 5 ] || w=5
    "$WL" "$1" --cgroup "$LOAD" --dir "$DIR" --port "$PORT" --iterations "$2" \
        --warmup $w --max-secs "$MAX_SECS" < /dev/null
}
# Until the agent's output has not grown for 0.3 s (at most 20 s), so no
# loop pays for the one before it; a pause as long with no agent.
settle() {
    if [ -z "$apid" ]; then
        sleep 0.3
        return
    fi
    last=-1
    quiet=0
    n=0
    while [ $quiet -lt 3 ] && [ $n -lt 200 ]; do
        sleep 0.1
        n=$((n + 1))
        size=$(stat -c %s $OUT 2> /dev/null || echo 0)
        if [ "$size" = "$last" ]; then quiet=$((quiet + 1)); else quiet=0; last=$size; fi
    done
}

# The connect loop's peer, outside the watched cgroup as the host bench's is.
"$WL" listen --port "$PORT" > $S/listen.out 2>&1 < /dev/null &
lpid=$!
n=0
until grep -q '"listen"' $S/listen.out; do
    n=$((n + 1))
    if [ $n -ge 300 ] || ! alive $lpid; then
        echo "vm bench: the listener did not start: $(cat $S/listen.out)"
        exit 1
    fi
    sleep 0.1
done

# Size each loop to about LOOP_SECS with no monitor.
: > $S/calibration
while read -r kind n <&3; do
    out=$(loop $kind $n) || { echo "vm bench: calibrating $kind failed"; exit 1; }
    ns=$(echo "$out" | sed -n 's/.*"ns_per_iter":\([0-9.]*\).*/\1/p')
    it=$(awk -v ns="$ns" -v s="$LOOP_SECS" 'BEGIN {
        n = int(s * 1e9 / (ns > 1 ? ns : 1)); if (n < 20) n = 20; if (n > 1e8) n = 1e8; print n }')
    eval "ITER_$kind=$it"
    echo "$kind $it $out" >> $S/calibration
    echo "vm bench: $kind takes $ns ns an iteration here (emulated): $it iterations a run"
done 3< $S/calibrate

apid=
: > $S/samples
while read -r op run cfg arg <&3; do
    f=$S/session-$run-$cfg
    case $op in
    start)
        echo "vm bench: at $(since) s: run $((run + 1)): $cfg"
        [ "$arg" = - ] && continue
        err=$S/agent-$run-$cfg.err
        t0=$(now)
        MONITOR_FAIR_RATE=0 MONITOR_LOG=info NO_COLOR=1 "$MON" trace --cgroup "$CG" \
            --host-root "$HOST" --kind all --hook-tier "$arg" > $OUT 2> $err < /dev/null &
        apid=$!
        n=0
        until grep -q 'tracing;' $err; do
            n=$((n + 1))
            if [ $n -ge 1200 ] || ! alive $apid; then
                echo "vm bench: monitor trace --hook-tier $arg did not start:"
                tail -5 $err
                kill -KILL $apid 2> /dev/null
                exit 1
            fi
            sleep 0.1
        done
        echo "ready_secs $(awk -v a="$t0" -v b="$(now)" 'BEGIN { print b - a }')" > $f
        # The agent goes on working a while after `tracing;` (its first
        # scans, under emulation for seconds): the first loop should not pay
        # for that. Until it uses at most 2 ticks in each of two 0.5 s
        # windows, at most 15 s (the median was 13 s in a busy host's guest;
        # longer waits cost the run's time budget more than they buy).
        last=$(ticks $apid)
        idle=0
        n=0
        while [ $idle -lt 2 ] && [ $n -lt 30 ]; do
            sleep 0.5
            n=$((n + 1))
            t=$(ticks $apid)
            if [ $((t - last)) -le 2 ]; then idle=$((idle + 1)); else idle=0; fi
            last=$t
        done
        echo "quiet_secs $(awk -v a="$t0" -v b="$(now)" 'BEGIN { print b - a }')" >> $f
        echo "ticks_ready $last" >> $f
        ;;
    loop)
        settle
        [ -n "$TRACE_STEPS" ] && echo "vm bench: at $(since) s: $arg"
        n=$(eval echo "\$ITER_$arg")
        out=$(loop $arg $n) || { echo "vm bench: the $arg loop failed under $cfg"; exit 1; }
        echo "$run $cfg $arg $out" >> $S/samples
        ;;
    stop)
        [ -n "$apid" ] || continue
        settle
        [ -n "$TRACE_STEPS" ] && echo "vm bench: at $(since) s: stopping"
        echo "ticks_end $(ticks $apid)" >> $f
        kill -TERM $apid
        n=0
        while alive $apid && [ $n -lt 150 ]; do
            sleep 0.1
            n=$((n + 1))
        done
        if alive $apid; then
            echo "answered no" >> $f
            kill -KILL $apid
        else
            echo "answered yes" >> $f
        fi
        wait $apid
        echo "lines $(wc -l < $OUT)" >> $f
        rm -f $OUT
        apid=
        ;;
    esac
done 3< $S/steps
kill $lpid
rm -rf "$DIR"
echo "vm bench: done at $(since) s"
