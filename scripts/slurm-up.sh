#!/usr/bin/env bash
# Start a single-node Slurm "cluster" on this machine, for tests and CI (installs nothing).
#
# Needs the binaries of `apt-get install -y slurm-wlm munge` (munged, slurmctld, slurmd, sbatch)
# and root (slurmd launches jobs; munged then runs as the munge user). Every file it writes (munge
# key and socket, slurm.conf, state, spool, logs, pid files) lives under $SLURM_TMP, so it touches
# nothing in /etc and several clusters can coexist on different ports.
#
#   SLURM_TMP=/tmp/synthbench-slurm scripts/slurm-up.sh   # prints the SLURM_CONF to export
#   export SLURM_CONF=/tmp/synthbench-slurm/etc/slurm.conf
#   scripts/slurm-down.sh
#
# Environment: SLURM_TMP (default /tmp/synthbench-slurm), SLURM_CTLD_PORT (6817), SLURM_D_PORT
# (6818), SLURM_CPUS (default: nproc), SLURM_WAIT_S (60, how long to wait for the node to be idle).
# If a cluster started by this script is already answering at $SLURM_TMP, it is reused.
set -euo pipefail

SLURM_TMP="${SLURM_TMP:-/tmp/synthbench-slurm}"
CTLD_PORT="${SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${SLURM_D_PORT:-6818}"
CPUS="${SLURM_CPUS:-$(nproc)}"
WAIT_S="${SLURM_WAIT_S:-60}"
NODE=localhost
PARTITION=debug

die() { echo "slurm-up: $*" >&2; exit 1; }

for binary in munged slurmctld slurmd sbatch sinfo scontrol; do
  command -v "$binary" >/dev/null 2>&1 || die "'$binary' not found; install with: apt-get install -y slurm-wlm munge"
done
[ "$(id -u)" -eq 0 ] || die "must run as root (slurmd starts jobs as their owner)"

CONF="$SLURM_TMP/etc/slurm.conf"
export SLURM_CONF="$CONF"

node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n1 | tr -d '*~#'; }

if [ -f "$CONF" ] && [ "$(node_state)" = idle ]; then
  echo "slurm-up: reusing the cluster already running at $SLURM_TMP"
  echo "export SLURM_CONF=$CONF"
  exit 0
fi

mkdir -p "$SLURM_TMP"/{etc,munge,state,spool,log,run}
chmod 0755 "$SLURM_TMP"

# --- munge: a fresh key, a private socket, running as the munge user -------------------------
MUNGE_DIR="$SLURM_TMP/munge"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket"
MUNGE_USER=munge
id "$MUNGE_USER" >/dev/null 2>&1 || MUNGE_USER=root
if [ -f "$MUNGE_DIR/munged.pid" ] && kill -0 "$(cat "$MUNGE_DIR/munged.pid")" 2>/dev/null; then
  echo "slurm-up: munged already running (pid $(cat "$MUNGE_DIR/munged.pid"))"
else
  rm -f "$MUNGE_DIR/munge.key" "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
  # munged refuses keys and directories other users can read or write.
  mungekey --create --keyfile="$MUNGE_DIR/munge.key" 2>/dev/null \
    || dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none
  chown -R "$MUNGE_USER": "$MUNGE_DIR"
  runuser -u "$MUNGE_USER" -- test -x "$MUNGE_DIR" \
    || die "user $MUNGE_USER cannot reach $MUNGE_DIR: every parent folder of SLURM_TMP must be traversable (o+x)"
  # Clients (root, slurmd, job owners) reach the socket through the folder: execute for all.
  chmod 0711 "$MUNGE_DIR"
  chmod 0400 "$MUNGE_DIR/munge.key"
  runuser -u "$MUNGE_USER" -- munged \
    --socket="$MUNGE_SOCKET" --key-file="$MUNGE_DIR/munge.key" \
    --log-file="$MUNGE_DIR/munged.log" --pid-file="$MUNGE_DIR/munged.pid" \
    --seed-file="$MUNGE_DIR/munged.seed" \
    || die "munged did not start; see $MUNGE_DIR/munged.log"
fi

# --- slurm.conf: one node, no cgroups, no accounting daemon ----------------------------------
MEM_KB=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
REAL_MEMORY=$(( MEM_KB / 1024 * 95 / 100 ))  # MB; a margin so slurmd never sees less than promised
CONTROLLER="$(hostname -s)"
cat > "$CONF" <<EOF
# Written by scripts/slurm-up.sh: a single-node test cluster under $SLURM_TMP.
ClusterName=synthbench
SlurmctldHost=$CONTROLLER(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$SLURM_TMP/state
SlurmdSpoolDir=$SLURM_TMP/spool
SlurmctldPidFile=$SLURM_TMP/run/slurmctld.pid
SlurmdPidFile=$SLURM_TMP/run/slurmd.pid
SlurmctldLogFile=$SLURM_TMP/log/slurmctld.log
SlurmdLogFile=$SLURM_TMP/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
ReturnToService=2
# Finished jobs stay visible to squeue for 10 minutes (the cluster keeps no accounting database).
MinJobAge=600
# scancel: SIGTERM, then SIGKILL after 5 s.
KillWait=5
SlurmdTimeout=30
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$REAL_MEMORY State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

# --- daemons ----------------------------------------------------------------------------------
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if ! pid_alive "$SLURM_TMP/run/slurmctld.pid"; then
  # -i: ignore state files from an earlier run of this folder.
  slurmctld -i -f "$CONF" || die "slurmctld did not start; see $SLURM_TMP/log/slurmctld.log"
fi
if ! pid_alive "$SLURM_TMP/run/slurmd.pid"; then
  slurmd -N "$NODE" -f "$CONF" || die "slurmd did not start; see $SLURM_TMP/log/slurmd.log"
fi

deadline=$(( SECONDS + WAIT_S ))
state=""
while [ $SECONDS -lt $deadline ]; do
  state="$(node_state)"
  case "$state" in
    idle) echo "slurm-up: node $NODE idle ($CPUS CPUs, ${REAL_MEMORY} MB) at $SLURM_TMP"
          echo "export SLURM_CONF=$CONF"
          exit 0 ;;
    down|drained|draining|drain)
          scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 1
done
echo "slurm-up: node $NODE not idle after ${WAIT_S}s (state: '${state:-no answer}')" >&2
tail -n 20 "$SLURM_TMP/log/slurmctld.log" "$SLURM_TMP/log/slurmd.log" "$MUNGE_DIR/munged.log" >&2 2>/dev/null || true
exit 1
