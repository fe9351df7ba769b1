#!/usr/bin/env bash
# Installs what forklift's commands and tests need on a Debian 12 machine (as root), idempotently:
# Debian packages (the OCI runtime and the independent tools the tests judge images with) and a venv.
#   scripts/setup.sh test   -> runtime + skopeo, umoci, docker-registry, busybox-static, venv with test extras
#   scripts/setup.sh demo   -> runtime + mmdebstrap (base images from Debian packages), venv
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-test}

pkgs=(runc busybox-static ca-certificates git)  # git: ADD <git ref> runs the real git binary
case "$mode" in
  test) pkgs+=(skopeo umoci docker-registry apache2-utils zstd bzip2 xz-utils mmdebstrap gcc libc6-dev) ;;  # mmdebstrap: its merged-usr hook (bootstrap tests); gcc libc6-dev: the offline C example base
  demo) pkgs+=(mmdebstrap skopeo umoci curl) ;;  # curl: the demo calls the service
  *) echo "usage: $0 test|demo" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[setup] installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps package scripts from starting services (docker-registry) we start ourselves.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.forklift-installed-$mode
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null
  if [[ $mode == test ]]; then
    .venv/bin/pip install -q -e '.[test]'
  else
    .venv/bin/pip install -q -e .
  fi
  touch "$stamp"
fi
