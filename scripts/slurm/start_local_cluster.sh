#!/usr/bin/env bash
# A single-host SLURM cluster for CI and the SLURM tests: Debian's munge, slurmctld and slurmd on
# this machine, one node with 8 CPU slots and 8 fake GPUs (gres "gpu" backed by links to /dev/null, so
# SLURM sets CUDA_VISIBLE_DEVICES in each job exactly as on a GPU node; torch sees no CUDA).
#
#   bash scripts/slurm/start_local_cluster.sh     # install if absent, configure, start; prints sinfo
#
# Idempotent: when `sinfo` already answers with a usable node it does nothing. It installs packages
# only with apt-get as root, writes /etc/slurm/slurm.conf and gres.conf only when they are absent or
# were written by this script (marker line), and never touches a cluster configured by someone else.
# Exit status 0 when the cluster answers, else 1 with one line on stderr saying why.
set -uo pipefail

MARK="# written by tuner scripts/slurm/start_local_cluster.sh"
CONF=/etc/slurm/slurm.conf
GRES=/etc/slurm/gres.conf
FAKE_GPUS=/var/lib/tuner-slurm/gpu
NODE_CPUS=${TUNER_SLURM_CPUS:-8}
NODE_GPUS=${TUNER_SLURM_GPUS:-8}

say() { echo "slurm: $*" >&2; }
fail() { echo "slurm unavailable: $*" >&2; exit 1; }

node_ready() {  # a node that can take jobs (idle, mixed or allocated; not down or drained)
  local states
  states=$(timeout 10 sinfo -h -o '%T' 2>/dev/null) || return 1
  grep -qE '^(idle|mixed|allocated|completing)' <<<"$states"
}

if command -v sinfo >/dev/null 2>&1 && node_ready; then
  exit 0  # already up: nothing to do
fi

# 1. install (Debian packages: munge, slurmctld, slurmd, slurm-client)
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 \
   || ! command -v sbatch >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] || fail "not installed and not root (install slurmctld slurmd slurm-client munge)"
  command -v apt-get >/dev/null 2>&1 || fail "not installed and no apt-get here"
  say "installing munge slurmctld slurmd slurm-client"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends munge slurmctld slurmd slurm-client >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1
    apt-get install -y -qq --no-install-recommends munge slurmctld slurmd slurm-client >/dev/null 2>&1 \
      || fail "apt-get install munge slurmctld slurmd slurm-client failed"
  fi
fi
[ "$(id -u)" -eq 0 ] || fail "the daemons are not running and starting them needs root"

# 2. configure (only a configuration this script owns)
HOST=$(hostname -s)
if [ ! -e "$CONF" ] || grep -qF "$MARK" "$CONF"; then
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm "$(dirname "$FAKE_GPUS")"
  # slurmd wants character devices: each fake GPU is a link to /dev/null
  for ((i = 0; i < NODE_GPUS; i++)); do ln -sfn /dev/null "$FAKE_GPUS$i"; done
  cat >"$CONF.new" <<EOF
$MARK
ClusterName=tuner-ci
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# no cgroups in containers: track processes by parent pid, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# more CPU slots than cores is fine for the tests (they wait on the database, not the CPU)
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
# finished jobs stay visible to scontrol for 10 minutes; SIGKILL 5 s after SIGTERM
MinJobAge=600
KillWait=5
InactiveLimit=0
SlurmdTimeout=120
GresTypes=gpu
NodeName=$HOST CPUs=$NODE_CPUS Gres=gpu:$NODE_GPUS State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  mv "$CONF.new" "$CONF"
  cat >"$GRES" <<EOF
$MARK
# fake GPUs: links to /dev/null standing in for /dev/nvidia0..N (SLURM needs a character device and the index)
NodeName=$HOST Name=gpu File=$FAKE_GPUS[0-$((NODE_GPUS - 1))]
EOF
else
  say "$CONF was not written by this script: starting the daemons with it as it is"
fi

# 3. start munged, slurmctld, slurmd (daemons; each is started only when not running)
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
[ -s /etc/munge/munge.key ] || { mungekey --create >/dev/null 2>&1 || \
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
if ! munge -n </dev/null >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged --force >/dev/null 2>&1 || /usr/sbin/munged --force >/dev/null 2>&1 \
    || fail "munged did not start"
fi
pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld || fail "slurmctld did not start (see /var/log/slurm/slurmctld.log)"
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd || fail "slurmd did not start (see /var/log/slurm/slurmd.log)"

# 4. wait for the node; bring it back if an earlier run left it down or drained
for i in $(seq 60); do
  node_ready && break
  if [ "$i" -eq 10 ]; then scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true; fi
  sleep 1
done
node_ready || fail "the node did not come up: $(sinfo -h -o '%T %E' 2>&1 | head -1)"
sinfo
