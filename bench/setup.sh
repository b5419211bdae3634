#!/usr/bin/env bash
# Installs what the benchmarks use from Debian's packages, when it is missing and this
# machine lets us: wrk (the api scenario's load generator) and PostgreSQL (the
# eventsourcing_peers scenario's peer). A scenario whose tool is missing is skipped with a
# message saying so; nothing is faked.
set -u
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 \
      || echo "bench setup: could not install ${need[*]}; those scenarios will be skipped"
  else
    echo "bench setup: ${need[*]} missing and cannot be installed here; skipped scenarios"
  fi
fi
exit 0
