#!/usr/bin/env bash
# N processes on one machine train one run, as the hosts of a pod would: each joins the others
# through a coordinator on 127.0.0.1 (jax.distributed) and the mesh spans all their devices.
# On a CPU each process gets JGEN_DEVICES_PER_PROCESS fake devices (default 2) and the
# processes exchange collectives through gloo.
#   bash launch/local_processes.sh 2 configs/gan_setd.py runs/gan_setd_2x2 [--config.x=v ...]
# Each process prints the final row. SIGTERM or Ctrl-C: every process stops at the same step
# with a checkpoint (exit 75); rerunning the same command resumes. When one process dies, the
# others are stopped and the script says which one and how it ended; a process still running
# JGEN_KILL_AFTER_SECONDS (default 10) later, blocked in a collective on the dead one, is killed.
set -uo pipefail
n=${1:?number of processes}; config=${2:?config file}; workdir=${3:?workdir}; shift 3
devices=${JGEN_DEVICES_PER_PROCESS:-2}
kill_after=${JGEN_KILL_AFTER_SECONDS:-10}
port=${JGEN_PORT:-$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
pids=()
for ((i = 0; i < n; i++)); do
  XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$devices" \
    python -m jgen.main --config="$config" --workdir="$workdir" \
    --coordinator_address="127.0.0.1:$port" --num_processes="$n" --process_id="$i" "$@" &
  pids+=($!)
done

forward() { kill -TERM "${pids[@]}" 2>/dev/null; }
trap forward TERM
trap ':' INT  # Ctrl-C reaches every process of the terminal's group by itself

declare -A running
for i in "${!pids[@]}"; do running[${pids[$i]}]=$i; done

status=0
while [ "${#running[@]}" -gt 0 ]; do
  wait -n -p done_pid "${!running[@]}"
  code=$?
  [ -z "${done_pid:-}" ] && continue  # a trapped signal interrupted the wait
  i=${running[$done_pid]}
  unset "running[$done_pid]"
  if [ "$code" -ne 0 ] && [ "$status" -eq 0 ]; then
    status=$code
    if [ "$code" -ne 75 ]; then
      how="exit code $code"
      [ "$code" -gt 128 ] && how="signal $((code - 128)) ($(kill -l $((code - 128))))"
      echo "local_processes: process $i of $n ended with $how; stopping the others. Rerun the" \
        "same command to resume from the last checkpoint in $workdir." >&2
      kill -TERM "${pids[@]}" 2>/dev/null
      # A process waiting in a collective on the dead one never reaches a stopping point.
      (sleep "$kill_after" && kill -KILL "${pids[@]}") >/dev/null 2>&1 &
      watchdog=$!
    fi
  fi
  unset done_pid
done
[ -n "${watchdog:-}" ] && kill "$watchdog" 2>/dev/null
exit "$status"
