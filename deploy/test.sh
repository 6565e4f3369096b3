#!/usr/bin/env bash
# Runs every test: installs what the tests need, builds the workspace (integration
# tests start the real binaries), then runs the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/install-deps.sh
cargo build --workspace --all-targets --locked
if cargo nextest --version >/dev/null 2>&1; then
  # nextest runs test binaries in parallel, each test in its own process.
  # (The workspace has no doctests; nextest's summary is the run's last line.)
  cargo nextest run --workspace --no-fail-fast --locked
else
  cargo test --workspace --no-fail-fast --locked
fi
