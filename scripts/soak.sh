#!/usr/bin/env bash
# SIGKILL fault injection at length (`make soak`; not in CI, not in `make
# test`): the engine switch (cmd/agent TestUpgradeSurvivesSIGKILL) and the
# reporter (cmd/control TestReportsSurviveSIGKILL), ROUNDS kills each
# (default 200; CI runs 21 and 24), and `berth-agent provision` (cmd/agent
# TestProvisionSurvivesSIGKILL), PROVISION_ROUNDS rounds (default 50: each
# round re-provisions a host, several from zero), and the agent's
# self-update (cmd/agent TestSelfUpdateSurvivesSIGKILL: the launcher, the
# agent or the stager killed mid-update), SELFUPDATE_ROUNDS rounds (default
# 50), and two `serve` replicas on one PostgreSQL, one of them killed at
# random moments while a rollout runs (cmd/control
# TestRolloutSurvivesReplicaSIGKILL), REPLICA_ROUNDS rollouts (default
# 20). Each test's full output
# goes to test-output/soak-<name>.log; this prints each one's verdict, time
# and tally.
#
# usage: scripts/soak.sh [ROUNDS [PROVISION_ROUNDS [SELFUPDATE_ROUNDS [REPLICA_ROUNDS]]]]
set -Euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
export PATH="/usr/local/go/bin:$PATH"
ROUNDS="${1:-200}"
PROVISION_ROUNDS="${2:-50}"
SELFUPDATE_ROUNDS="${3:-50}"
REPLICA_ROUNDS="${4:-20}"
mkdir -p test-output

failed=0
summary=()
soak() { # name package test [rounds]
	local name=$1 pkg=$2 test=$3 rounds=${4:-$ROUNDS} log="test-output/soak-$1.log" start rc
	echo "soak: $name: $test, $rounds rounds (log: $log)"
	start=$SECONDS
	BERTH_SOAK_ROUNDS="$rounds" go test -count=1 -v -timeout 6h -run "^${test}\$" "$pkg" >"$log" 2>&1
	rc=$?
	# The tests log their tally with t.Logf ("kills per point ...",
	# "N kills, M of them ...").
	local tally
	tally=$(grep -E '^\s+[a-z0-9_]+_test\.go:[0-9]+: .*kills' "$log" | sed -E 's/^\s+[a-z0-9_]+_test\.go:[0-9]+: //' | tail -n 3)
	local verdict=passed
	if [ $rc -ne 0 ] || grep -q -- "--- SKIP: $test" "$log"; then
		verdict="FAILED (exit $rc; see $log)"
		grep -q -- "--- SKIP: $test" "$log" && verdict="SKIPPED (a real component is missing; see $log)"
		failed=1
	fi
	summary+=("$name: $verdict in $((SECONDS - start))s; ${tally:-no tally logged}")
}

soak engine-switch ./cmd/agent/ TestUpgradeSurvivesSIGKILL
soak reporter ./cmd/control/ TestReportsSurviveSIGKILL
soak provision ./cmd/agent/ TestProvisionSurvivesSIGKILL "$PROVISION_ROUNDS"
soak self-update ./cmd/agent/ TestSelfUpdateSurvivesSIGKILL "$SELFUPDATE_ROUNDS"
soak replicas ./cmd/control/ TestRolloutSurvivesReplicaSIGKILL "$REPLICA_ROUNDS"

echo
echo "soak tally ($ROUNDS rounds each, provision $PROVISION_ROUNDS, self-update $SELFUPDATE_ROUNDS, replicas $REPLICA_ROUNDS):"
for s in "${summary[@]}"; do echo "  $s"; done
exit $failed
