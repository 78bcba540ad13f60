#!/usr/bin/env bash
# Crash safety, the long run: ROUNDS (default 20) rounds each on the embedded SQLite store and
# on PostgreSQL of starting `continuum serve`, driving creates, updates and transaction
# Bundles from six clients, SIGKILLing the server at a random moment, restarting it and
# checking that every acknowledged write is there at its acknowledged version, that no
# transaction is half-applied, that the search indexes match the resources and that the
# store opens without repair. CI runs the same test with 3 rounds (the default of the test).
#
#   reliability/crash.sh                # 20 rounds on each backend
#   ROUNDS=50 reliability/crash.sh
#   CONTINUUM_TEST_POSTGRES=postgres://USER@HOST:PORT/postgres reliability/crash.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTINUUM_CRASH_ROUNDS=${ROUNDS:-20}
export CONTINUUM_TEST_POSTGRES=${CONTINUUM_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}
exec cargo test --locked -p continuum --test crash acknowledged_writes_survive_sigkill -- --nocapture --test-threads 1
