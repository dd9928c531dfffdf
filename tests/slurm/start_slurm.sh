#!/usr/bin/env bash
# Start a single-node SLURM cluster on this host from Debian's packages (munge, slurmctld, slurmd), for the
# tests of `autoseg submit --scheduler slurm`. Idempotent: a cluster that already answers `sinfo` is left alone.
# Needs root and apt-get; exits 3 (and says why) where those are missing, so callers can skip cleanly.
# Prints the seconds spent installing and starting.
set -euo pipefail
t0=$(date +%s)
if [ "$(id -u)" != 0 ]; then echo "start_slurm: needs root (apt-get, munged, slurmd)"; exit 3; fi
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || { echo "start_slurm: no apt-get on this machine"; exit 3; }
  export DEBIAN_FRONTEND=noninteractive
  (apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge) >/dev/null \
    || { echo "start_slurm: apt-get install slurm-wlm munge failed"; exit 3; }
fi
t1=$(date +%s)
if timeout 5 sinfo -h >/dev/null 2>&1; then
  echo "start_slurm: cluster already up (install $((t1 - t0))s, start 0s)"; sinfo; exit 0
fi
host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
conf_dir=/etc/slurm
mkdir -p "$conf_dir" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /etc/munge
# munge: a key shared by the (single) node's daemons
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- munged --force
cat > "$conf_dir/slurm.conf" <<CONF
# written by tests/slurm/start_slurm.sh: one node, this host, no cgroups (works in containers)
ClusterName=autoseg-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=$(( mem_mb / cpus ))
SchedulerType=sched/backfill
ReturnToService=2
SlurmdTimeout=60
MinJobAge=600
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 60); do
  if sinfo -h -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then break; fi
  sleep 0.5
done
t2=$(date +%s)
if ! sinfo -h -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then
  echo "start_slurm: the node did not come up; see /var/log/slurm/slurmctld.log and slurmd.log"
  sinfo || true
  exit 1
fi
echo "start_slurm: install $((t1 - t0))s, start $((t2 - t1))s"
sinfo
