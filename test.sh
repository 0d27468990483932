#!/usr/bin/env bash
# Restores, builds and runs every test project, then prints one closing line: "tests: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")"

results="$(mktemp -d)"
CAIRN_POSTGRES_DIR=""
CAIRN_RABBITMQ_DIR=""
cleanup() {
  [ -z "$CAIRN_POSTGRES_DIR" ] || tests/postgres.sh stop "$CAIRN_POSTGRES_DIR" || true
  [ -z "$CAIRN_RABBITMQ_DIR" ] || tests/rabbitmq.sh stop "$CAIRN_RABBITMQ_DIR" || true
  tests/rabbitmq.sh stop-listed "$results/rabbitmq-nodes" || true  # the tests' own nodes, if a killed run left any
  rm -rf "$results"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM  # so the EXIT trap stops PostgreSQL and RabbitMQ on an interrupt too

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

dotnet restore Cairn.slnx || { echo "tests: 0 passed, 1 failed"; exit 1; }
dotnet build Cairn.slnx --no-restore -c Release -warnaserror || { echo "tests: 0 passed, 1 failed"; exit 1; }
CAIRN_ASYNCAPI_SCHEMA="$(tests/asyncapi-spec.sh)" || { echo "tests: 0 passed, 1 failed"; exit 1; }
export CAIRN_ASYNCAPI_SCHEMA  # AsyncAPI's own JSON Schema, which the AsyncAPI tests validate against
# A throwaway PostgreSQL (installed when missing) for the PostgreSQL backend's tests; stopped and deleted on exit.
postgres_env="$(tests/postgres.sh start)" || { echo "tests: 0 passed, 1 failed"; exit 1; }
eval "$postgres_env"  # exports CAIRN_POSTGRES (the connection string) and CAIRN_POSTGRES_DIR
# A throwaway RabbitMQ (installed when missing) for the RabbitMQ transport's tests; stopped and deleted on exit.
rabbitmq_env="$(tests/rabbitmq.sh start)" || { echo "tests: 0 passed, 1 failed"; exit 1; }
eval "$rabbitmq_env"  # exports CAIRN_RABBITMQ (the amqp:// address) and CAIRN_RABBITMQ_DIR
export CAIRN_RABBITMQ_NODES="$results/rabbitmq-nodes"  # where the nodes the tests start of their own are listed

# One test project at a time: on two cores, the crash tests' child processes and the PostgreSQL tests' server would
# otherwise fight over the CPU, and the whole runs no faster for being parallel.
dotnet test Cairn.slnx --no-build -c Release -m:1 \
  --logger "trx" --results-directory "$results" \
  --logger "console;verbosity=minimal" -- RunConfiguration.TreatNoTestsAsError=true
status=$?

passed=0; failed=0; skipped=0
for trx in "$results"/*.trx; do
  [ -f "$trx" ] || continue
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -n 1)
  p=$(sed -n 's/.* passed="\([0-9]*\)".*/\1/p' <<<"$counters")
  f=$(sed -n 's/.* failed="\([0-9]*\)".*/\1/p' <<<"$counters")
  t=$(sed -n 's/.* total="\([0-9]*\)".*/\1/p' <<<"$counters")
  e=$(sed -n 's/.* executed="\([0-9]*\)".*/\1/p' <<<"$counters")
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${t:-0} - ${e:-0}))
done

if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1  # the runner failed without a failing test (a crash, a host abort): never report green
fi
if [ "${CI:-}" = "true" ] && [ "$skipped" -gt 0 ]; then
  echo "$skipped tests were skipped; in CI none may be."
  failed=$((failed + skipped))
fi

echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
