#!/usr/bin/env bash
# Berth's end-to-end demo on this machine (Debian, as root), in demo/ at the
# repository's root:
#
#   1. wipes a previous run (its processes, mounts and files);
#   2. starts Azurite, the Azure Blob Storage emulator, and Debian's
#      docker-registry as a local upstream registry;
#   3. builds engine packages from Debian's docker.io binaries (two versions,
#      and a third one broken on purpose to try a failed upgrade), signs them
#      into TUF release metadata and publishes them to a Blob container;
#   4. writes and validates an agent.yaml that trusts that metadata;
#   5. has berth-agent install Docker Engine from it, runs a container,
#      upgrades the engine under a running container, rolls back;
#   6. seeds the registry, starts berth-control (the control endpoint) on
#      SQLite, enables the image cache and starts the agent's daemon, which
#      serves it and reports to berth-control;
#   7. pulls images through the cache, shows the host at berth-control and
#      prints the dashboard's address and what to try.
#
# It exits leaving Azurite, the registry, berth-control, the engine and the
# agent running in the background. `scripts/demo.sh stop` stops them and removes demo/.
#
# usage: scripts/demo.sh [start|stop]   (`make demo` runs make deps, make build, then this)
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
export PATH="/usr/local/go/bin:$PATH:/usr/sbin:/sbin"

ME="$ROOT/scripts/demo.sh"
DEMO="$ROOT/demo"
# The engine's sockets live under the state folder (docker.sock, and
# containerd's under exec-root): a unix socket path is at most 108 bytes.
# When the checkout sits too deep for that, the state goes to a short folder
# named after the checkout, so that start and stop agree on it.
STATE="$DEMO/state"
longest="$STATE/exec/containerd/containerd-debug.sock"
if ((${#longest} > 100)); then
	STATE="/var/tmp/berth-demo-$(printf '%s' "$ROOT" | sha256sum | cut -c1-8)"
fi
SOCK="$STATE/docker.sock"
DOCKER_H="unix://$SOCK"
CFG="$DEMO/agent.yaml"
AGENT="$ROOT/bin/berth-agent"
CONTROL="$ROOT/bin/berth-control"
AZURITE_MAIN="$ROOT/tools/azurite/node_modules/azurite/dist/src/blob/main.js"
REGISTRY=/usr/bin/docker-registry
REG_CFG="$DEMO/registry/config.yml"
AZ_ACCOUNT=devstoreaccount1
# Azurite's well-known development key: public, the same in every Azurite.
AZ_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
V1=20.10.24-1
V2=20.10.24-2
VBROKEN=20.10.24-3
UNIT=/etc/systemd/system/berth-docker.service
CIDS=""

# ---------------------------------------------------------------- output

if [ -t 1 ]; then B=$'\e[1m' DIM=$'\e[2m' RED=$'\e[31m' GRN=$'\e[32m' R=$'\e[0m'; else B='' DIM='' RED='' GRN='' R=''; fi
STEP=""
HINT=""
MAINSTEP=""
LAST=""
step() { MAINSTEP="$1" STEP="$1" HINT="${2:-}"; printf '\n%s==> %s%s\n' "$B" "$1" "$R"; }
# sub names a part of a step, for the message when it fails.
sub() { STEP="$MAINSTEP: $1"; [ $# -lt 2 ] || HINT=$2; printf '\n  %s-- %s%s\n' "$B" "$1" "$R"; }
note() { printf '    %s\n' "$*"; }
# cmdline prints a command as it can be pasted from the repo's folder.
cmdline() {
	local s="" a
	for a in "$@"; do
		[[ $a == "$ROOT/"* ]] && a=${a#"$ROOT/"}
		if [[ $a =~ [[:space:]\"\'\$] ]]; then a="'$a'"; fi
		s+="$a "
	done
	LAST="${s% }"
	printf '  %s$ %s%s\n' "$DIM" "$LAST" "$R"
}
# show prints a command, then runs it.
show() {
	cmdline "$@"
	"$@"
}
die() {
	printf '\n%sdemo: FAILED: %s%s\n' "$RED$B" "$1" "$R" >&2
	[ -n "${2:-}" ] && printf '  read: %s\n' "$2" >&2
	printf '  clean up with: %s stop\n' "$ME" >&2
	exit 1
}
on_err() {
	local rc=$? cmd=$BASH_COMMAND
	trap - ERR
	printf '\n%sdemo: FAILED at step "%s" (exit %d)%s\n' "$RED$B" "$STEP" "$rc" "$R" >&2
	[ "$cmd" = '"$@"' ] && cmd=$LAST
	printf '  command: %s\n' "${cmd//$ROOT\//}" >&2
	[ -n "$HINT" ] && printf '  read: %s\n' "$HINT" >&2
	printf '  what the demo started still runs; clean up with: %s stop\n' "$ME" >&2
	exit "$rc"
}

# ---------------------------------------------------------------- processes

# pids_exe_under DIR: processes whose executable lies under DIR (the
# engine's dockerd, containerd and shims run from engines/docker/<version>/).
pids_exe_under() { find /proc -mindepth 2 -maxdepth 2 -name exe -lname "$1/*" 2>/dev/null | cut -d/ -f3 | grep -vx "$$" || true; }
# container_ids: the engine's containers, from its data-root (so also when
# the engine is down).
container_ids() { ls "$STATE/data/containers" 2>/dev/null || true; }
# pids_in_containers ID…: processes in those containers' cgroups (their
# init ignores SIGTERM: it is pid 1 of its namespace).
pids_in_containers() {
	[ $# -gt 0 ] || return 0
	grep -lF "$(printf '%s\n' "$@")" /proc/[0-9]*/cgroup 2>/dev/null | cut -d/ -f3 || true
}
# pids_cmdline NEEDLE: processes whose command line holds NEEDLE.
pids_cmdline() {
	local f pid
	for f in /proc/[0-9]*/cmdline; do
		pid=${f#/proc/}; pid=${pid%/cmdline}
		[ "$pid" = "$$" ] && continue
		if tr '\0' ' ' 2>/dev/null <"$f" | grep -qF -- "$1"; then echo "$pid"; fi
	done
}
alive() {
	local p
	for p in "$@"; do
		if [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null; then echo "$p"; fi
	done
}
# where names the demo's folders.
where() { if [ "$STATE" = "$DEMO/state" ]; then echo "$DEMO"; else echo "$DEMO and $STATE"; fi; }
# stop_pids WHAT SECONDS PID…: SIGTERM, wait, then SIGKILL.
stop_pids() {
	local what=$1 wait=$2 i left
	shift 2
	[ $# -gt 0 ] || return 0
	note "stopping $what (pid $*)"
	kill -TERM "$@" 2>/dev/null || true
	for ((i = 0; i < wait * 5; i++)); do
		left=$(alive "$@")
		[ -z "$left" ] && return 0
		sleep 0.2
	done
	note "$what did not stop within ${wait}s: SIGKILL"
	# shellcheck disable=SC2086
	kill -KILL $left 2>/dev/null || true
	sleep 0.5
}
mounts_under() { awk -v a="$1/" '{ if (index($5, a) == 1) print $5 }' /proc/self/mountinfo | sort -r; }
has_systemd() { [ -d /run/systemd/system ]; }

# ---------------------------------------------------------------- stop

# cleanup stops and removes everything a run of the demo left: the agent
# first (else it restarts the engine), then containers, the engine, Azurite,
# the registry, mounts and files. Safe to run when nothing runs.
cleanup() {
	local pids m
	if [ ! -e "$DEMO" ] && [ ! -e "$STATE" ] && [ -z "$(pids_cmdline "$CFG")" ]; then
		note "nothing to clean up"
		return 0
	fi
	CIDS=$(container_ids)
	# The agent daemon (and any berth-agent command on this config).
	pids=$(pids_cmdline "--config $CFG")
	# shellcheck disable=SC2086
	stop_pids "berth-agent" 20 $pids
	# Containers, while the engine still answers.
	if [ -S "$SOCK" ]; then
		pids=$(timeout 15 docker -H "$DOCKER_H" ps -aq 2>/dev/null || true)
		if [ -n "$pids" ]; then
			note "removing containers: ${pids//$'\n'/ }"
			# shellcheck disable=SC2086
			timeout 60 docker -H "$DOCKER_H" rm -f $pids >/dev/null 2>&1 || true
		fi
	fi
	# The engine as a systemd unit, when the agent made one for this demo.
	if has_systemd && [ -f "$UNIT" ] && grep -qF "$STATE/" "$UNIT"; then
		note "removing $UNIT"
		systemctl disable --now berth-docker.service >/dev/null 2>&1 || true
		rm -f "$UNIT"
		systemctl daemon-reload || true
		systemctl reset-failed berth-docker.service >/dev/null 2>&1 || true
	fi
	# Whatever still runs from the engine's folder or in its containers.
	# shellcheck disable=SC2086
	pids=$(pids_in_containers $CIDS)
	if [ -n "$pids" ]; then
		note "killing the processes of containers the engine did not remove (pid ${pids//$'\n'/ })"
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null || true
		sleep 0.5
	fi
	pids=$(pids_exe_under "$STATE")
	# shellcheck disable=SC2086
	stop_pids "engine processes" 20 $pids
	# The control endpoint.
	pids=$(pids_cmdline "sqlite://$DEMO/control.db")
	# shellcheck disable=SC2086
	stop_pids "berth-control" 10 $pids
	# Azurite.
	pids=$(pids_cmdline "--location $DEMO/azurite")
	# shellcheck disable=SC2086
	stop_pids "Azurite" 10 $pids
	pids=$(pids_cmdline "serve $REG_CFG")
	# shellcheck disable=SC2086
	stop_pids "docker-registry" 10 $pids
	for m in $(mounts_under "$STATE"; [ "$STATE" = "$DEMO/state" ] || mounts_under "$DEMO"); do
		umount -l "$m" 2>/dev/null || true
	done
	# Give Debian's docker back its units if the agent stopped them.
	if has_systemd && [ -f "$DEMO/restore-units" ]; then
		while read -r m; do
			note "restarting $m (stopped by the agent during the demo)"
			systemctl enable --now "$m" >/dev/null 2>&1 || true
		done <"$DEMO/restore-units"
	fi
	# The containers' cgroups, left behind when the engine could not remove them.
	if [ -n "$CIDS" ]; then
		find /sys/fs/cgroup -mindepth 1 -maxdepth 4 -type d 2>/dev/null | grep -F "$CIDS" | sort -r | xargs -r rmdir 2>/dev/null || true
	fi
	rm -rf "$DEMO" "$STATE"
	note "removed $(where)"
}

stop_cmd() {
	[ "$(id -u)" -eq 0 ] || { echo "demo: run as root" >&2; exit 1; }
	step "Stopping the demo: agent, containers, engine, Azurite, registry; removing demo/"
	cleanup
	local left
	# shellcheck disable=SC2086
	left="$(pids_exe_under "$STATE") $(pids_in_containers $CIDS) $(pids_cmdline "--location $DEMO/azurite") $(pids_cmdline "serve $REG_CFG") $(pids_cmdline "--config $CFG")"
	left="${left//$'\n'/ }"
	if [ -n "${left// /}" ] || [ -n "$(mounts_under "$STATE")$(mounts_under "$DEMO")" ]; then
		echo "demo: some processes or mounts are left:$left" >&2
		exit 1
	fi
	printf '%sstopped; nothing of the demo runs any more%s\n' "$GRN" "$R"
}

# ---------------------------------------------------------------- start

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

start_azurite() {
	local attempt pid i
	for attempt in 1 2 3; do
		AZ_PORT=$(free_port)
		mkdir -p "$DEMO/azurite"
		printf '  %s$ node tools/azurite/node_modules/azurite/dist/src/blob/main.js --blobHost 127.0.0.1 --blobPort %s --location demo/azurite --disableTelemetry --skipApiVersionCheck --silent &%s\n' "$DIM" "$AZ_PORT" "$R"
		(cd "$DEMO/azurite" && exec setsid nohup node "$AZURITE_MAIN" --blobHost 127.0.0.1 --blobPort "$AZ_PORT" \
			--location "$DEMO/azurite" --disableTelemetry --skipApiVersionCheck --silent \
			>"$DEMO/azurite.log" 2>&1 </dev/null) &
		pid=$!
		for ((i = 0; i < 600; i++)); do
			[ -n "$(alive "$pid")" ] || break
			# Any HTTP answer (403 without credentials) means it serves.
			if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$AZ_PORT/$AZ_ACCOUNT?comp=list"; then
				echo "$pid" >"$DEMO/azurite.pid"
				note "Azurite (pid $pid) serves http://127.0.0.1:$AZ_PORT/$AZ_ACCOUNT"
				return 0
			fi
			sleep 0.1
		done
		kill "$pid" 2>/dev/null || true
		note "Azurite did not come up on port $AZ_PORT (attempt $attempt): $(tail -n 3 "$DEMO/azurite.log" 2>/dev/null | tr '\n' ' ')"
	done
	die "Azurite did not start" "$DEMO/azurite.log"
}

# start_registry runs Debian's docker-registry (distribution) on a free
# loopback port, storing under demo/registry.
start_registry() {
	local attempt pid i
	for attempt in 1 2 3; do
		REG_PORT=$(free_port)
		mkdir -p "$DEMO/registry/data"
		cat >"$REG_CFG" <<-EOF
			version: 0.1
			log:
			  level: info
			storage:
			  filesystem:
			    rootdirectory: $DEMO/registry/data
			http:
			  addr: 127.0.0.1:$REG_PORT
		EOF
		printf '  %s$ docker-registry serve demo/registry/config.yml >demo/registry.log 2>&1 &%s   (http addr 127.0.0.1:%s, storage demo/registry/data)\n' "$DIM" "$R" "$REG_PORT"
		(cd "$DEMO/registry" && exec setsid nohup "$REGISTRY" serve "$REG_CFG" >"$DEMO/registry.log" 2>&1 </dev/null) &
		pid=$!
		for ((i = 0; i < 100; i++)); do
			[ -n "$(alive "$pid")" ] || break
			if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$REG_PORT/v2/")" = 200 ]; then
				echo "$pid" >"$DEMO/registry.pid"
				note "docker-registry (pid $pid) serves http://127.0.0.1:$REG_PORT"
				return 0
			fi
			sleep 0.1
		done
		kill "$pid" 2>/dev/null || true
		note "docker-registry did not come up on port $REG_PORT (attempt $attempt): $(tail -n 3 "$DEMO/registry.log" 2>/dev/null | tr '\n' ' ')"
	done
	die "docker-registry did not start" "$DEMO/registry.log"
}

# write_config CACHE: writes agent.yaml; CACHE is its cache: section.
write_config() {
	cat >"$CFG" <<-EOF
		# berth-agent configuration written by scripts/demo.sh
		agent:
		  id: demo-host
		  stateDir: $STATE
		  labels: { pool: demo, ring: canary }
		engine:
		  version: $V1
		  endpoint: $DOCKER_H
		  settings:            # into daemon.json; each engine of the demo is isolated:
		    exec-root: $STATE/exec
		    pidfile: $STATE/docker.pid
		    data-root: $STATE/data
		    bridge: none       # no network changes on this machine
		    iptables: false
		    ip6tables: false
		  releases:
		    url: $RELEASES_URL
		    auth: shared-key
		    keyFile: $DEMO/azurite.key
		    rootFile: $DEMO/releases/metadata/root.json
		health:
		  listen: 127.0.0.1:$HEALTH_PORT   # /healthz and /metrics
	EOF
	if [ -n "${CONTROL_PORT:-}" ]; then
		cat >>"$CFG" <<-EOF
			control:
			  url: http://127.0.0.1:$CONTROL_PORT
			  auth: token
			  tokenFile: $DEMO/agent.token   # issued by berth-control token issue --agent demo-host
			  reportInterval: 10s
		EOF
	fi
	printf '%s\n' "$1" >>"$CFG"
}

# start_control starts berth-control serve on SQLite and issues the
# tokens: the host's (agent.token) and an operator's (operator.token).
start_control() {
	CONTROL_PORT=$(free_port)
	local db="sqlite://$DEMO/control.db" i
	printf '  %s$ setsid nohup bin/berth-control serve --listen 127.0.0.1:%s --db %s --auth token >demo/control.log 2>&1 &%s\n' "$DIM" "$CONTROL_PORT" "$db" "$R"
	setsid nohup "$CONTROL" serve --listen "127.0.0.1:$CONTROL_PORT" --db "$db" --auth token >"$DEMO/control.log" 2>&1 </dev/null &
	local cpid=$!
	echo "$cpid" >"$DEMO/control.pid"
	for ((i = 0; i < 100; i++)); do
		kill -0 "$cpid" 2>/dev/null || die "berth-control serve exited: $(tail -n 5 "$DEMO/control.log")" "$DEMO/control.log"
		[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$CONTROL_PORT/healthz")" = 200 ] && break
		sleep 0.2
	done
	((i < 100)) || die "berth-control does not answer GET /healthz" "$DEMO/control.log"
	printf '  %s$ bin/berth-control token issue --db %s --agent demo-host > demo/agent.token%s\n' "$DIM" "$db" "$R"
	(umask 077 && "$CONTROL" token issue --db "$db" --agent demo-host >"$DEMO/agent.token")
	printf '  %s$ bin/berth-control token issue --db %s --operator demo > demo/operator.token%s\n' "$DIM" "$db" "$R"
	(umask 077 && "$CONTROL" token issue --db "$db" --operator demo >"$DEMO/operator.token")
	note "berth-control (pid $cpid) listens on http://127.0.0.1:$CONTROL_PORT; the tokens are in demo/agent.token and demo/operator.token"
}

preflight() {
	[ "$(id -u)" -eq 0 ] || die "the demo runs engines and mounts: run it as root"
	local miss=()
	if [ ! -x "$AGENT" ] || [ ! -x "$CONTROL" ]; then
		die "bin/berth-agent and bin/berth-control are missing: run 'make build' (or 'make demo')"
	fi
	command -v go >/dev/null || die "go is missing: run 'make deps'"
	for c in node curl dockerd docker containerd runc; do command -v "$c" >/dev/null || miss+=("$c"); done
	[ -x /bin/busybox ] || miss+=(busybox)
	[ -f "$AZURITE_MAIN" ] || miss+=(azurite)
	[ -x "$REGISTRY" ] || miss+=(docker-registry)
	((${#miss[@]} == 0)) || die "missing: ${miss[*]}; run 'make deps'"
}

start_cmd() {
	local t0=$SECONDS
	preflight
	trap on_err ERR
	printf '%sBerth demo%s: %s\n' "$B" "$R" "signed engine packages in Azure Blob Storage (Azurite) → berth-agent installs Docker Engine → a container runs → images pulled through berth-agent's image cache."
	note "everything lives in $(where); the commands below run from $ROOT"

	step "1/7 Wiping a previous run of the demo"
	cleanup
	mkdir -p "$DEMO" "$STATE"

	step "2/7 Starting Azurite, the Azure Blob Storage emulator, and a local upstream registry" "$DEMO/azurite.log"
	start_azurite
	HINT="$DEMO/registry.log"
	start_registry
	REG="127.0.0.1:$REG_PORT"
	RELEASES_URL="http://127.0.0.1:$AZ_PORT/$AZ_ACCOUNT/releases"
	(umask 077 && printf '%s\n' "$AZ_KEY" >"$DEMO/azurite.key")
	note "the account key of $AZ_ACCOUNT is in demo/azurite.key (mode 0600)"

	step "3/7 Building engine packages from Debian's docker.io binaries, signing and publishing them"
	show go build -o "$DEMO/bin/mkbundle" ./packaging/enginebundle/mkbundle
	mkdir -p "$DEMO/packages"
	local j builds=()
	for j in "$V1" "$V2" "$VBROKEN"; do
		local broken=()
		[ "$j" = "$VBROKEN" ] && broken=(-broken)
		cmdline "$DEMO/bin/mkbundle" -out "$DEMO/packages/docker-$j.tgz" -marker "$j" "${broken[@]}"
		"$DEMO/bin/mkbundle" -out "$DEMO/packages/docker-$j.tgz" -marker "$j" "${broken[@]}" >/dev/null &
		builds+=($!)
	done
	for j in "${builds[@]}"; do wait "$j"; done
	note "$(cd "$DEMO/packages" && du -h -- *.tgz | awk '{printf "%s (%s)  ", $2, $1}')"
	note "($VBROKEN is broken on purpose: its dockerd exits at once — for a failed upgrade to try later)"
	show "$CONTROL" releases init --repo "$DEMO/releases"
	for j in "$V1" "$V2" "$VBROKEN"; do
		show "$CONTROL" releases add --repo "$DEMO/releases" --kind engine --flavor docker --version "$j" --os linux --arch amd64 "$DEMO/packages/docker-$j.tgz"
	done
	show "$CONTROL" releases publish --repo "$DEMO/releases" --to "$RELEASES_URL" --auth shared-key --key-file "$DEMO/azurite.key"
	show "$CONTROL" releases list --repo "$DEMO/releases"

	step "4/7 Writing the agent's configuration"
	HEALTH_PORT=$(free_port)
	write_config "cache:
  enabled: false       # the image cache is enabled in step 6, once the engine is in place"
	sed 's/^/    /' "$CFG"
	show "$AGENT" config validate "$CFG"

	step "5/7 berth-agent installs Docker Engine, a container runs, the engine is upgraded under it and rolled back" "$STATE/logs/dockerd.log"
	if has_systemd; then
		note "this machine runs systemd: the agent runs the engine as berth-docker.service and stops Debian's"
		note "docker.service/docker.socket (Berth owns the engine); '$ME stop' starts them again"
		local u
		for u in docker.socket docker.service; do
			if systemctl is-active --quiet "$u"; then echo "$u" >>"$DEMO/restore-units"; fi
		done
	fi
	sub "install $V1: download from Blob Storage, verify against the signed metadata, unpack, start behind the health gate"
	show "$AGENT" engine install "$V1" --config "$CFG"
	show "$AGENT" engine status --config "$CFG"
	note "the daemon.json Berth wrote:"
	sed 's/^/    /' "$STATE/engines/docker/config/daemon.json"

	sub "a container: a tiny image from Debian's busybox-static"
	local rootfs="$DEMO/busybox-rootfs" l
	mkdir -p "$rootfs/bin"
	cp /bin/busybox "$rootfs/bin/busybox"
	for l in sh echo sleep cat ls true; do ln -sf busybox "$rootfs/bin/$l"; done
	LAST="tar -C demo/busybox-rootfs -c . | docker -H $DOCKER_H import - busybox:demo"
	printf '  %s$ %s%s\n' "$DIM" "$LAST" "$R"
	tar -C "$rootfs" -c . | docker -H "$DOCKER_H" import - busybox:demo
	show docker -H "$DOCKER_H" run --rm --network none busybox:demo echo "hello from a container on an engine berth installed"
	note "and a long-running one, to watch through the upgrade:"
	show docker -H "$DOCKER_H" run -d --name demo-sleeper --network none busybox:demo sleep 1000000
	local pid_before pid_after
	pid_before=$(docker -H "$DOCKER_H" inspect -f '{{.State.Pid}}' demo-sleeper)
	note "demo-sleeper runs, pid $pid_before"

	sub "upgrade to $V2, health-gated: the new engine must answer within engine.upgrade.healthTimeout, else the agent rolls back"
	show "$AGENT" engine upgrade "$V2" --config "$CFG"
	show "$AGENT" engine status --config "$CFG"
	pid_after=$(docker -H "$DOCKER_H" inspect -f '{{.State.Running}} {{.State.Pid}}' demo-sleeper)
	if [ "$pid_after" != "true $pid_before" ]; then
		die "demo-sleeper did not survive the upgrade (before: pid $pid_before; now running, pid: $pid_after)" "$STATE/logs/dockerd.log"
	fi
	printf '    %sdemo-sleeper kept running through the upgrade: same pid %s (live-restore)%s\n' "$GRN" "$pid_before" "$R"

	sub "roll back to $V1"
	show "$AGENT" engine rollback --config "$CFG"
	show "$AGENT" engine list --config "$CFG"
	note "(* active, - previous)"
	pid_after=$(docker -H "$DOCKER_H" inspect -f '{{.State.Running}} {{.State.Pid}}' demo-sleeper)
	if [ "$pid_after" != "true $pid_before" ]; then
		die "demo-sleeper did not survive the rollback (now running, pid: $pid_after)" "$STATE/logs/dockerd.log"
	fi
	printf '    %sdemo-sleeper still runs: same pid %s%s\n' "$GRN" "$pid_before" "$R"

	step "6/7 Seeding the local registry, enabling the image cache, starting the agent's daemon" "$DEMO/registry.log"
	sub "seed the registry at $REG: busybox:demo, and demo/tools:v1 (busybox:demo plus one layer)"
	note "demo-sleeper has shown what it had to: it goes, so that the image leaves the engine and the pulls below are real"
	show docker -H "$DOCKER_H" rm -f demo-sleeper
	show docker -H "$DOCKER_H" tag busybox:demo "$REG/library/busybox:demo"
	show docker -H "$DOCKER_H" run --name demo-tools --network none busybox:demo sh -c 'echo berth demo tools v1 >/etc/tools-release'
	show docker -H "$DOCKER_H" commit demo-tools "$REG/demo/tools:v1"
	show docker -H "$DOCKER_H" rm demo-tools
	note "(127.0.0.1 registries are plain http: dockerd allows them by default)"
	show docker -H "$DOCKER_H" push -q "$REG/library/busybox:demo"
	show docker -H "$DOCKER_H" push -q "$REG/demo/tools:v1"
	show docker -H "$DOCKER_H" rmi -f busybox:demo "$REG/library/busybox:demo" "$REG/demo/tools:v1"

	sub "start berth-control, the fleet's control endpoint, on SQLite, and issue the host's and an operator's tokens" "$DEMO/control.log"
	start_control

	sub "enable the image cache and reports to berth-control in demo/agent.yaml" "$DEMO/agent.log"
	CACHE_PORT=$(free_port)
	write_config "cache:
  enabled: true
  listen: 127.0.0.1:$CACHE_PORT    # dockerd's registry-mirrors and berth-agent pull
  local:
    dir: $STATE/cache
  storage:                         # a tier shared by hosts: a Blob container (created if missing)
    - url: http://127.0.0.1:$AZ_PORT/$AZ_ACCOUNT/images
      auth: shared-key
      keyFile: $DEMO/azurite.key
  upstreams:
    docker.io:                     # in this demo, Docker Hub names resolve to the local registry
      endpoint: http://$REG
    \"$REG\":
      endpoint: http://$REG"
	sed -n '/^control:/,$p' "$CFG" | sed 's/^/    /'
	show "$AGENT" config validate "$CFG"

	sub "start the agent's daemon (berth-agent run): it serves the cache and writes registry-mirrors into the engine's daemon.json"
	printf '  %s$ setsid nohup bin/berth-agent run --config demo/agent.yaml >demo/agent.log 2>&1 &%s\n' "$DIM" "$R"
	setsid nohup "$AGENT" run --config "$CFG" >"$DEMO/agent.log" 2>&1 </dev/null &
	local apid=$! i
	echo "$apid" >"$DEMO/agent.pid"
	for ((i = 0; i < 150; i++)); do
		kill -0 "$apid" 2>/dev/null || die "berth-agent run exited: $(tail -n 5 "$DEMO/agent.log")" "$DEMO/agent.log"
		[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$CACHE_PORT/v2/")" = 200 ] && break
		sleep 0.2
	done
	((i < 150)) || die "the image cache does not answer GET http://127.0.0.1:$CACHE_PORT/v2/ with 200" "$DEMO/agent.log"
	note "berth-agent run (pid $apid) serves the cache: GET http://127.0.0.1:$CACHE_PORT/v2/ → 200"
	# The daemon rewrites daemon.json with registry-mirrors and restarts the
	# engine (live-restore): wait until the engine runs with the mirror.
	for ((i = 0; i < 150; i++)); do
		kill -0 "$apid" 2>/dev/null || die "berth-agent run exited: $(tail -n 5 "$DEMO/agent.log")" "$DEMO/agent.log"
		docker -H "$DOCKER_H" info --format '{{.RegistryConfig.Mirrors}}' 2>/dev/null | grep -qF "127.0.0.1:$CACHE_PORT" && break
		sleep 0.2
	done
	((i < 150)) || die "the engine did not take the cache as its registry mirror" "$DEMO/agent.log"
	show grep -F -A2 registry-mirrors "$STATE/engines/docker/config/daemon.json"
	note "berth-agent run keeps engine $V1 running and configured; it logs to demo/agent.log"

	step "7/7 Pulling images through the image cache" "$DEMO/agent.log"
	note "cache.upstreams maps docker.io to http://$REG: Docker Hub names resolve to the local registry in this demo"
	sub "dockerd pulls a Docker Hub name: registry-mirrors sends it to the cache"
	show docker -H "$DOCKER_H" pull busybox:demo
	sub "berth-agent pull: any registry through the cache, with per-layer progress (the busybox layer is there already)"
	show "$AGENT" pull "$REG/demo/tools:v1" --config "$CFG"
	show docker -H "$DOCKER_H" images
	show docker -H "$DOCKER_H" run --rm --network none "$REG/demo/tools:v1" cat /etc/tools-release
	sub "the cache's figures"
	show "$AGENT" cache stats --config "$CFG"
	LAST="curl -s http://127.0.0.1:$HEALTH_PORT/metrics | grep ^berth_cache_"
	printf '  %s$ %s%s\n' "$DIM" "$LAST" "$R"
	curl -s "http://127.0.0.1:$HEALTH_PORT/metrics" | grep '^berth_cache_' | sed 's/^/    /' || note "(no berth_cache_ figures)"
	sub "the host as berth-control sees it: heartbeats every 10 s from the agent's durable outbox"
	local hf="--server http://127.0.0.1:$CONTROL_PORT --token-file $DEMO/operator.token"
	for ((i = 0; i < 150; i++)); do
		# until the first heartbeat (with the host's checks) is in
		"$CONTROL" hosts show demo-host --server "http://127.0.0.1:$CONTROL_PORT" --token-file "$DEMO/operator.token" --output json 2>/dev/null | grep -q '"checks"' && break
		sleep 0.2
	done
	show "$CONTROL" hosts list --server "http://127.0.0.1:$CONTROL_PORT" --token-file "$DEMO/operator.token"
	show "$CONTROL" hosts show demo-host --server "http://127.0.0.1:$CONTROL_PORT" --token-file "$DEMO/operator.token"
	trap - ERR

	local a="$AGENT" c="--config $CFG" d="docker -H $DOCKER_H"
	local restart_note="the agent checks it every 5 s and starts it again"
	has_systemd && restart_note="systemd (berth-docker.service) and the agent start it again"
	cat <<-EOF

		${GRN}${B}The demo runs${R} (took $((SECONDS - t0)) s): Azurite, the registry, berth-control, Docker Engine $V1 and berth-agent (serving the image cache, reporting to berth-control) are in the background.

		${B}The dashboard${R}: http://127.0.0.1:$CONTROL_PORT/ — sign in with the operator token in $DEMO/operator.token
		  (from another machine: ssh -L $CONTROL_PORT:127.0.0.1:$CONTROL_PORT this-host, then open the address)

		${B}What to try${R}
		  $a engine status $c
		  $d images
		  $d run --rm --network none busybox:demo echo hi

		  # kill the engine and watch the agent bring it back ($restart_note):
		  kill \$(cat $STATE/docker.pid); sleep 10; $a engine status $c
		  tail -f $DEMO/agent.log

		  # an upgrade to a broken package: the health gate fails and the agent rolls back by itself:
		  $a engine upgrade $VBROKEN $c; $a engine list $c

		  # the image cache: empty its disk tier and pull again: the layer now comes from the Blob container
		  $d rmi busybox:demo; $a cache prune --all $c; $d pull busybox:demo; $a cache stats $c
		  curl -s http://127.0.0.1:$HEALTH_PORT/metrics | grep ^berth_cache_

		  # the fleet at berth-control; stop the engine and watch the host turn Unhealthy within 10 s:
		  $CONTROL hosts list $hf
		  $CONTROL hosts show demo-host $hf
		  curl -s http://127.0.0.1:$HEALTH_PORT/healthz

		  # what was published to Blob Storage, and the agent's view of it:
		  $CONTROL releases list --repo $DEMO/releases
		  $a config show $c

		${B}Logs${R}
		  the agent daemon:  $DEMO/agent.log (and $STATE/logs/agent.log)
		  berth-control:     $DEMO/control.log
		  the engine:        $STATE/logs/dockerd.log
		  Azurite:           $DEMO/azurite.log
		  the registry:      $DEMO/registry.log

		${B}Stop everything${R} (agent, berth-control, containers, engine, Azurite, registry; removes demo/):
		  $ME stop
	EOF
}

case "${1:-start}" in
start) start_cmd ;;
stop) stop_cmd ;;
-h | --help | help) sed -n '2,21p' "$ME" | sed 's/^# \{0,1\}//' ;;
*)
	echo "usage: $0 [start|stop]" >&2
	exit 2
	;;
esac
