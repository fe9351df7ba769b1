#!/usr/bin/env bash
# The main job. For now: plan the example's multi-stage Dockerfile without building.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/forklift graph -f examples/rust-service/Dockerfile examples/rust-service
