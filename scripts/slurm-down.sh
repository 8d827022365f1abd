#!/usr/bin/env bash
# Stop the single-node Slurm started by scripts/slurm-up.sh (same $SLURM_TMP).
#
# Cancels the cluster's jobs, stops slurmd, slurmctld and munged by the pid files slurm-up.sh left
# under $SLURM_TMP, then any job-step daemon (slurmstepd) of this cluster still alive, found by the
# SLURM_CONF in its environment. Never by name: other Slurm or munge daemons on the machine are
# left alone. --purge also deletes $SLURM_TMP (state, spool, logs).
set -euo pipefail

SLURM_TMP="${SLURM_TMP:-/tmp/synthbench-slurm}"
PURGE=0
[ "${1:-}" = "--purge" ] && PURGE=1

stop_pid_file() {
  local name="$1" pid_file="$2" pid
  [ -f "$pid_file" ] || return 0
  pid="$(cat "$pid_file")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "slurm-down: $name (pid $pid) ignored SIGTERM; sending SIGKILL" >&2
      kill -9 "$pid" 2>/dev/null || true
    fi
    echo "slurm-down: stopped $name (pid $pid)"
  fi
  rm -f "$pid_file"
}

CONF="$SLURM_TMP/etc/slurm.conf"

# Cancel the jobs first, so that their step daemons finish while slurmd can still hear them.
if [ -f "$CONF" ] && [ -f "$SLURM_TMP/run/slurmctld.pid" ]; then
  jobs="$(SLURM_CONF="$CONF" squeue -h -o %A 2>/dev/null | sort -u || true)"
  if [ -n "$jobs" ]; then
    # shellcheck disable=SC2086
    SLURM_CONF="$CONF" scancel $jobs 2>/dev/null || true
    for _ in $(seq 40); do
      [ -z "$(SLURM_CONF="$CONF" squeue -h -t running,completing,pending -o %A 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
fi

stop_pid_file slurmd "$SLURM_TMP/run/slurmd.pid"
stop_pid_file slurmctld "$SLURM_TMP/run/slurmctld.pid"
stop_pid_file munged "$SLURM_TMP/munge/munged.pid"

# Step daemons of this cluster that outlived slurmd (a job killed just before shutdown).
for environ in /proc/[0-9]*/environ; do
  pid="${environ#/proc/}"; pid="${pid%/environ}"
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = slurmstepd ] || continue
  if tr '\0' '\n' < "$environ" 2>/dev/null | grep -qx "SLURM_CONF=$CONF"; then
    kill "$pid" 2>/dev/null || true
    sleep 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = slurmstepd ] && kill -9 "$pid" 2>/dev/null || true
    echo "slurm-down: stopped leftover slurmstepd (pid $pid)"
  fi
done

if [ "$PURGE" -eq 1 ]; then
  rm -rf "$SLURM_TMP"
  echo "slurm-down: removed $SLURM_TMP"
fi
