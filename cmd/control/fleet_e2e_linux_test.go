//go:build linux

package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/berthhq/berth/control/client"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/secret"
	"github.com/berthhq/berth/internal/testenv/dockerd"
	"github.com/berthhq/berth/internal/testenv/postgres"
	"github.com/berthhq/berth/internal/testenv/secretlog"
	"github.com/berthhq/berth/packaging/enginebundle/enginebundletest"
	"github.com/berthhq/berth/packaging/tufrepo"
	"github.com/berthhq/berth/provision/desired/fleetsim"
)

// Issue 11's fleet end to end, once per store: berth-control serve (the
// built binary) trusting a release repository that signs engine V1, V2
// and a broken V3 (its dockerd exits at once); three real berth-agent
// processes, each with its own dockerd (isolated roots) and a running
// container; and ROLLOUT_FLEET_HOSTS (default 500) simulated hosts built
// from the agent's reporter and desired-state poller. The operator acts
// through the CLI with an operator token.
//
// Every desired state a host receives is recorded with its time (the
// simulated hosts keep them, the real agents log them), and compared with
// the waves each host belongs to, computed here from SPEC's rule (sha256
// of rollout id, NUL, host id; ceil of the cumulative percentage) and the
// wave start times in the rollout's status.

const (
	rollV1 = "20.10.24-1"
	rollV2 = "20.10.24-2"
	rollV3 = "20.10.24-3" // broken: its dockerd exits at once
)

func rollFleetSize(t *testing.T) int {
	n := 500
	if v := os.Getenv("ROLLOUT_FLEET_HOSTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 10 {
			t.Fatalf("ROLLOUT_FLEET_HOSTS=%q: want a number of simulated hosts, at least 10", v)
		}
	}
	return n
}

// rollReleases is a release repository published to a folder, as both
// serve (--releases) and the agents (engine.releases.url) read it.
type rollReleases struct{ pub, root string }

func buildRollReleases(t *testing.T) rollReleases {
	t.Helper()
	work := t.TempDir()
	repo, pub := filepath.Join(work, "repo"), filepath.Join(work, "pub")
	if err := tufrepo.Init(repo); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{rollV1, rollV2, rollV3} {
		p := enginebundletest.Docker(t, work, v, v == rollV3)
		if _, err := tufrepo.Add(repo, tufrepo.Package{Kind: "engine", Flavor: "docker", Version: v, OS: "linux", Arch: "amd64"}, p); err != nil {
			t.Fatal(err)
		}
		os.Remove(p)
	}
	if err := tufrepo.Publish(context.Background(), repo, pub, azstore.Credential{Auth: "none"}); err != nil {
		t.Fatal(err)
	}
	return rollReleases{pub: pub, root: filepath.Join(repo, "metadata", "root.json")}
}

func TestFleetRolloutsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts berth-control, three dockerd with their agents, PostgreSQL and hundreds of simulated hosts")
	}
	t.Parallel()       // overlaps the package's ten-minute outage test, which mostly waits
	dockerd.NewHost(t) // root and dockerd, or skip (fail under CI) before building anything
	rel := buildRollReleases(t)
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			var db string
			if backend == "sqlite" {
				db = "sqlite://" + filepath.Join(t.TempDir(), "control.db")
			} else {
				db = postgres.Start(t).NewDatabase(t)
			}
			start := time.Now()
			r := newRollRig(t, db, rel, rollFleetSize(t))
			t.Logf("%s: %d real and %d simulated hosts reporting after %v", backend, len(r.real), len(r.sims.Hosts()), time.Since(start).Round(time.Millisecond))
			r.phase("V1 to V2 in waves 10/50/100", r.upgradeInWaves)
			r.phase("a broken V3 halts in its first wave", r.brokenHalts)
			r.phase("a broken V3 on the real hosts", r.realHostsRollBack)
			r.phase("pins, pause, resume, abort", r.pauseResumeAbort)
			t.Logf("%s: whole run %v", backend, time.Since(start).Round(time.Millisecond))
		})
	}
}

// rollRig is one backend's fleet.
type rollRig struct {
	t        *testing.T
	control  *controlServer
	api      *client.Client
	operator []string // BERTH_TOKEN=… for the CLI
	real     []*realHost
	sims     *fleetsim.Fleet
	ids      []string // every host, real and simulated
}

// realHost is a berth-agent run with its own dockerd and a container.
type realHost struct {
	id        string
	host      *dockerd.Host
	agent     *agentHost
	container string // the id of the container that must keep running
}

func newRollRig(t *testing.T, db string, rel rollReleases, n int) *rollRig {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(role store.Role, subject string) string {
		_, secret, err := st.IssueToken(ctx, role, subject, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return secret
	}
	r := &rollRig{t: t}
	op := issue(store.RoleOperator, "fleet-e2e")
	realTokens := []string{issue(store.RoleAgent, "real-0"), issue(store.RoleAgent, "real-1"), issue(store.RoleAgent, "real-2")}
	// The simulated hosts' 500 tokens reach only control's log, which
	// these cover as well as any token would.
	secretlog.For(t).Secret("operator token", op)
	for i, tok := range realTokens {
		secretlog.For(t).Secret(fmt.Sprintf("agent token of real-%d", i), tok)
	}
	var specs []fleetsim.Spec
	for i := range n {
		id := fmt.Sprintf("sim-%05d", i)
		specs = append(specs, fleetsim.Spec{ID: id, Labels: map[string]string{"pool": "fleet", "kind": "sim"},
			Flavor: "docker", Engine: rollV1, Agent: "1.0.0", Tokens: staticToken(issue(store.RoleAgent, id))})
	}
	st.Close()

	r.control = startControl(t, db, "--auth", "token", "--releases", rel.pub, "--releases-root", rel.root)
	r.operator = []string{"BERTH_TOKEN=" + op, "BERTH_SERVER=" + r.control.URL}
	if r.api, err = client.New(client.Options{Server: r.control.URL, Token: secret.Value(op)}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	r.real = make([]*realHost, len(realTokens))
	errs := make([]error, len(realTokens))
	for i, tok := range realTokens {
		r.real[i] = prepareRealHost(t, i, r.control.URL, tok, rel)
		wg.Go(func() { errs[i] = r.real[i].install() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("real host %d: %v", i, err)
		}
	}
	for _, h := range r.real {
		h.startContainer(t)
		h.agent.start()
		r.ids = append(r.ids, h.id)
	}
	shm := "/dev/shm"
	if _, err := os.Stat(shm); err != nil {
		shm = ""
	}
	dir, err := os.MkdirTemp(shm, "fleetsim-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Each simulated heartbeat costs this machine a few transactions in
	// the host's agent.db and one in the store: a larger fleet (the soak)
	// reports less often, about 250 heartbeats a second in all, or the
	// load generator itself would fall silent and fail hosts.
	interval := max(2*time.Second, time.Duration(n)*time.Second/250)
	r.sims, err = fleetsim.Start(ctx, fleetsim.Options{URL: r.control.URL, Dir: dir, Interval: interval, Jitter: 500 * time.Millisecond}, specs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.sims.Stop)
	for _, s := range specs {
		r.ids = append(r.ids, s.ID)
	}
	r.waitEngines(3*time.Minute, func(string) string { return rollV1 })
	return r
}

// prepareRealHost writes the agent's config: its own dockerd folders, the
// release folder, reports every second to control with its agent token.
func prepareRealHost(t *testing.T, i int, url, token string, rel rollReleases) *realHost {
	t.Helper()
	host := dockerd.NewHost(t)
	id := fmt.Sprintf("real-%d", i)
	tokFile := filepath.Join(t.TempDir(), "agent.token")
	if err := os.WriteFile(tokFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := newAgent(t, map[string]any{
		"agent":   map[string]any{"id": id, "labels": map[string]string{"pool": "fleet", "kind": "real"}},
		"control": map[string]any{"url": url, "auth": "token", "tokenFile": tokFile, "reportInterval": "1s"},
		"engine": map[string]any{
			"endpoint": host.Endpoint,
			"settings": host.Settings,
			"releases": map[string]any{"url": rel.pub, "auth": "none", "rootFile": rel.root},
			"upgrade":  map[string]any{"healthTimeout": "60s"},
		},
		"cache": map[string]any{"enabled": false},
	}, "BERTH_IMDS_ENDPOINT=http://127.0.0.1:1")
	// dockerd.Host's cleanup stops every engine under its folder: the
	// agent installs them under its state folder.
	a.setStateDir(t, host.Dir)
	return &realHost{id: id, host: host, agent: a}
}

// install puts V1 on the host by hand, as an operator does before handing
// the host to control: without a pin, only control moves it afterwards.
func (h *realHost) install() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.agent.bin, "engine", "install", rollV1, "--config", h.agent.config)
	cmd.Env = append(os.Environ(), h.agent.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("berth-agent engine install %s: %v\n%s", rollV1, err, out)
	}
	return nil
}

func (h *realHost) startContainer(t *testing.T) {
	t.Helper()
	dockerd.BusyboxImage(t, h.host, "busybox:berth")
	out, err := h.host.Docker(context.Background(), "run", "-d", "--name", "keep", "--network", "none", "busybox:berth", "sleep", "86400")
	if err != nil {
		t.Fatalf("%s: docker run: %v: %s", h.id, err, out)
	}
	h.container = strings.TrimSpace(string(out))
}

// checkContainer fails the test unless the container started at the
// beginning still runs, under the same id.
func (h *realHost) checkContainer(t *testing.T, when string) {
	t.Helper()
	out, err := h.host.Docker(context.Background(), "inspect", "-f", "{{.Id}} {{.State.Running}}", "keep")
	if got := strings.TrimSpace(string(out)); err != nil || got != h.container+" true" {
		t.Errorf("%s %s: container keep is %q (%v), want %s running", h.id, when, got, err, h.container)
	}
}

func (r *rollRig) phase(name string, f func()) {
	r.t.Helper()
	start := time.Now()
	f()
	for _, h := range r.real {
		h.checkContainer(r.t, "after "+name)
	}
	r.t.Logf("%s: %v", name, time.Since(start).Round(time.Millisecond))
	if r.t.Failed() {
		for _, h := range r.real {
			r.t.Logf("%s's log (tail):\n%s", h.id, tail(h.agent.p.logs.String(), 40))
		}
		r.t.FailNow()
	}
}

// diagnose logs what explains an unexpected turn of rollout ro: its
// members that are not on their way, as the store holds them, those hosts
// as control shows them, and the real agents' lines about versions.
func (r *rollRig) diagnose(ro wire.Rollout) {
	t := r.t
	t.Helper()
	ctx := context.Background()
	const q = "SELECT host_id, wave, state, told_ms FROM rollout_hosts WHERE rollout_id = $1 AND state NOT IN ('pending', 'healthy')"
	var rows [][4]any
	if path, ok := strings.CutPrefix(r.control.db, "sqlite://"); ok {
		db, err := sql.Open("sqlite", path+"?_pragma=query_only(1)")
		if err != nil {
			t.Logf("diagnose: %v", err)
			return
		}
		defer db.Close()
		res, err := db.QueryContext(ctx, q, ro.ID)
		if err != nil {
			t.Logf("diagnose: %v", err)
			return
		}
		defer res.Close()
		for res.Next() {
			var row [4]any
			var host, state string
			var wave, told int64
			if err := res.Scan(&host, &wave, &state, &told); err == nil {
				row = [4]any{host, wave, state, time.UnixMilli(told).UTC().Format(time.StampMilli)}
			}
			rows = append(rows, row)
		}
	} else {
		conn, err := pgx.Connect(ctx, r.control.db)
		if err != nil {
			t.Logf("diagnose: %v", err)
			return
		}
		defer conn.Close(ctx)
		res, err := conn.Query(ctx, q, ro.ID)
		if err != nil {
			t.Logf("diagnose: %v", err)
			return
		}
		for res.Next() {
			var host, state string
			var wave, told int64
			if err := res.Scan(&host, &wave, &state, &told); err == nil {
				rows = append(rows, [4]any{host, wave, state, time.UnixMilli(told).UTC().Format(time.StampMilli)})
			}
		}
		res.Close()
	}
	for i, row := range rows {
		if i == 20 {
			t.Logf("… %d more", len(rows)-i)
			break
		}
		id, _ := row[0].(string)
		d, err := r.api.Host(ctx, id, 4)
		t.Logf("member %v wave %v %v told %v; host: state %s engine %s/%s healthy=%v last report %s interval %v rejected %+v history %+v (%v)",
			row[0], row[1], row[2], row[3], d.State, d.Engine.Flavor, d.Engine.Version, d.Engine.Healthy, d.LastReport.Format(time.StampMilli), d.Interval, d.Rejected, d.History, err)
	}
	for _, h := range r.real {
		var lines []string
		for _, l := range strings.Split(h.agent.p.logs.String(), "\n") {
			if strings.Contains(l, "desired state changed") || strings.Contains(l, "engine event") || strings.Contains(l, "health") || strings.Contains(l, "level\":\"WARN") || strings.Contains(l, "level\":\"ERROR") {
				lines = append(lines, l)
			}
		}
		t.Logf("%s's log (versions, health, warnings):\n%s", h.id, strings.Join(lines, "\n"))
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// cli runs berth-control with the operator's token and server.
func (r *rollRig) cli(args ...string) string {
	r.t.Helper()
	return r.control.cli(r.operator, args...)
}

func (r *rollRig) create(args ...string) wire.Rollout {
	r.t.Helper()
	var ro wire.Rollout
	out := r.cli(append([]string{"rollouts", "create", "--output", "json", "--selector", "pool=fleet", "--kind", "engine", "--flavor", "docker", "--bake", "2s"}, args...)...)
	if err := json.Unmarshal([]byte(out), &ro); err != nil {
		r.t.Fatalf("rollouts create --output json: %v\n%s", err, out)
	}
	return ro
}

func (r *rollRig) rollout(id string) wire.Rollout {
	r.t.Helper()
	ro, err := r.api.Rollout(context.Background(), id)
	if err != nil {
		r.t.Fatalf("GET rollout %s: %v", id, err)
	}
	return ro
}

// waitRollout waits until the rollout satisfies ok, and returns it.
func (r *rollRig) waitRollout(id string, d time.Duration, what string, ok func(wire.Rollout) bool) wire.Rollout {
	r.t.Helper()
	var ro wire.Rollout
	deadline := time.Now().Add(d)
	for ro = r.rollout(id); !ok(ro); ro = r.rollout(id) {
		if (ro.State == wire.RolloutHalted || ro.State == wire.RolloutRolledBack) && !strings.HasPrefix(what, "halt") {
			r.diagnose(ro)
			r.t.Fatalf("rollout %s halted while waiting for it to %s: %+v", id, what, ro.History)
		}
		if time.Now().After(deadline) {
			r.diagnose(ro)
			r.t.Fatalf("timed out after %v waiting for rollout %s to %s; it is %s at wave %d, %v", d, id, what, ro.State, ro.Wave, ro.ByState)
		}
		time.Sleep(250 * time.Millisecond)
	}
	return ro
}

// engines returns the engine version every host last reported to control.
func (r *rollRig) engines() map[string]string {
	r.t.Helper()
	page, err := r.api.AllHosts(context.Background(), wire.HostFilter{Labels: map[string]string{"pool": "fleet"}}, len(r.ids)+10)
	if err != nil {
		r.t.Fatalf("list hosts: %v", err)
	}
	out := map[string]string{}
	for _, h := range page.Hosts {
		out[h.ID] = h.Engine.Version
	}
	return out
}

// waitEngines waits until every host reports the version want gives it,
// Healthy.
func (r *rollRig) waitEngines(d time.Duration, want func(id string) string) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for {
		got, off := r.engines(), []string{}
		for _, id := range r.ids {
			if got[id] != want(id) {
				off = append(off, fmt.Sprintf("%s on %q, want %s", id, got[id], want(id)))
			}
		}
		if len(off) == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out after %v: %d hosts are not on their version: %s", d, len(off), strings.Join(off[:min(len(off), 10)], "; "))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// told is one desired engine a host received ("" for no opinion).
type told struct {
	at     time.Time
	engine string
}

// desiredLine matches the poller's log line in the agent's JSON or text
// logs: its time and its engine.
var (
	desiredText = regexp.MustCompile(`^time=(\S+) .*msg="desired state changed" .*engine="?([^"]*?)"? agent=`)
)

// toldAll returns every desired engine each host received, oldest first.
func (r *rollRig) toldAll() map[string][]told {
	out := map[string][]told{}
	for _, h := range r.sims.Hosts() {
		for _, c := range h.History() {
			out[h.ID()] = append(out[h.ID()], told{c.Time, engineVersion(c.Desired)})
		}
	}
	for _, h := range r.real {
		out[h.id] = parseTold(r.t, h.agent.p.logs.String())
	}
	return out
}

func engineVersion(d wire.Desired) string {
	if d.Engine == nil {
		return ""
	}
	return d.Engine.Version
}

// parseTold reads the agent's "desired state changed" lines.
func parseTold(t *testing.T, logs string) []told {
	var out []told
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "desired state changed") {
			continue
		}
		var rec struct {
			Time   time.Time `json:"time"`
			Msg    string    `json:"msg"`
			Engine string    `json:"engine"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "desired state changed" {
			out = append(out, told{rec.Time, lastField(rec.Engine)})
			continue
		}
		m := desiredText.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("cannot read the agent's log line: %s", line)
		}
		at, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			t.Fatalf("time of %s: %v", line, err)
		}
		out = append(out, told{at, lastField(m[2])})
	}
	return out
}

// lastField turns the log's "docker 20.10.24-2" into the version, and "(no
// opinion)" into "".
func lastField(s string) string {
	if strings.HasPrefix(s, "(") {
		return ""
	}
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1]
}

// wavesOf places hosts in the rollout's waves as SPEC says: by the hex
// SHA-256 of rollout id, NUL, host id; wave k holds the first
// ceil(n·p_k/100).
func wavesOf(ro wire.Rollout, hosts []string) map[string]int {
	type ranked struct{ host, hash string }
	var rs []ranked
	for _, h := range hosts {
		sum := sha256.Sum256([]byte(ro.ID + "\x00" + h))
		rs = append(rs, ranked{h, hex.EncodeToString(sum[:])})
	}
	slices.SortFunc(rs, func(a, b ranked) int { return strings.Compare(a.hash, b.hash) })
	out := map[string]int{}
	k := 0
	for i, x := range rs {
		for k < len(ro.Waves)-1 && i >= int(math.Ceil(float64(len(rs))*ro.Waves[k]/100-1e-9)) {
			k++
		}
		out[x.host] = k
	}
	return out
}

// checkWaveSizes compares the computed waves with the rollout's own.
func (r *rollRig) checkWaveSizes(ro wire.Rollout, waves map[string]int) {
	r.t.Helper()
	if ro.Hosts != len(r.ids) {
		r.t.Errorf("rollout %s holds %d hosts, want %d", ro.ID, ro.Hosts, len(r.ids))
	}
	count := make([]int, len(ro.Waves))
	for _, k := range waves {
		count[k]++
	}
	for k, ws := range ro.WaveStatus {
		if ws.Hosts != count[k] {
			r.t.Errorf("rollout %s wave %d holds %d hosts, SPEC's order gives %d", ro.ID, k, ws.Hosts, count[k])
		}
	}
}

// firstTold is when host was first told version at or after since.
func firstTold(ts []told, version string, since time.Time) (time.Time, bool) {
	for _, x := range ts {
		if x.engine == version && !x.at.Before(since) {
			return x.at, true
		}
	}
	return time.Time{}, false
}

// clockSlack covers the milliseconds that times in logs and the store are
// truncated to.
const clockSlack = time.Millisecond

// checkToldInWave: no host was told the rollout's version before its wave
// started, and none of a wave that never started was told it.
func (r *rollRig) checkToldInWave(ro wire.Rollout, waves map[string]int, all map[string][]told) {
	r.t.Helper()
	bad := 0
	var lags []time.Duration
	for _, id := range r.ids {
		at, ok := firstTold(all[id], ro.Version, ro.Created)
		started := ro.WaveStatus[waves[id]].Started
		if ok && started != nil {
			lags = append(lags, at.Sub(*started))
		}
		switch {
		case !ok:
		case started == nil:
			bad++
			r.t.Errorf("%s (wave %d, never started) was told %s at %s", id, waves[id], ro.Version, at.Format(time.StampMilli))
		case at.Before(started.Add(-clockSlack)):
			bad++
			r.t.Errorf("%s (wave %d, started %s) was told %s before, at %s", id, waves[id], started.Format(time.StampMilli), ro.Version, at.Format(time.StampMilli))
		}
		if bad > 10 {
			r.t.FailNow()
		}
	}
	if len(lags) > 0 {
		slices.Sort(lags)
		r.t.Logf("rollout %s to %s: %d hosts told; from their wave's start to the host's receipt: median %v, p99 %v, max %v (long polls)",
			ro.ID, ro.Version, len(lags), lags[len(lags)/2].Round(time.Millisecond), lags[len(lags)*99/100].Round(time.Millisecond), lags[len(lags)-1].Round(time.Millisecond))
	}
}

// upgradeInWaves: V1 → V2 in waves 10/50/100 completes; every host is on
// V2; none was told V2 before its wave started.
func (r *rollRig) upgradeInWaves() {
	t := r.t
	ro := r.create("--version", rollV2, "--waves", "10,50,100")
	ro = r.waitRollout(ro.ID, 4*time.Minute, "complete", func(ro wire.Rollout) bool {
		if ro.State != wire.RolloutRunning && ro.State != wire.RolloutCompleted {
			r.diagnose(ro)
			t.Fatalf("rollout %s is %s: %+v", ro.ID, ro.State, ro.History)
		}
		return ro.State == wire.RolloutCompleted
	})
	waves := wavesOf(ro, r.ids)
	r.checkWaveSizes(ro, waves)
	r.waitEngines(time.Minute, func(string) string { return rollV2 })
	r.checkToldInWave(ro, waves, r.toldAll())
	if n := ro.ByState[wire.HostHealthy]; n != len(r.ids) {
		t.Errorf("completed with %d healthy hosts of %d: %v", n, len(r.ids), ro.ByState)
	}
	// One decision per step: the first wave starts, the next two start
	// as the one before baked, and the last bakes.
	r.checkHistory(ro, wire.ActionCreate, wire.ActionStart, wire.ActionComplete)
	advances := 0
	for _, d := range ro.History {
		if d.Action == wire.ActionAdvance {
			advances++
		}
	}
	if advances != 2 {
		t.Errorf("%d advances in the history, want 2: %+v", advances, ro.History)
	}
}

// brokenHalts: every host fails V3 (simulated ones reject it, real ones
// fail their health gate); the rollout halts in its first wave, rolls its
// hosts back to V2, and no host of a later wave is ever told V3.
func (r *rollRig) brokenHalts() {
	t := r.t
	r.sims.On(wire.KindEngine, rollV3, fleetsim.Rejects)
	ro := r.create("--version", rollV3, "--waves", "10,50,100", "--max-failures", "2", "--rollback-on-halt")
	ro = r.waitRollout(ro.ID, 2*time.Minute, "halt and roll back", func(ro wire.Rollout) bool {
		if ro.State == wire.RolloutCompleted {
			t.Fatalf("rollout of the broken %s completed", rollV3)
		}
		return ro.State == wire.RolloutRolledBack
	})
	waves := wavesOf(ro, r.ids)
	r.checkWaveSizes(ro, waves)
	if ro.Wave != 0 || ro.WaveStatus[1].Started != nil {
		t.Errorf("halted at wave %d (second wave started %v), want in the first", ro.Wave, ro.WaveStatus[1].Started)
	}
	if f := ro.ByState[wire.HostFailed] + ro.ByState[wire.HostRolledBack]; f <= 2 {
		t.Errorf("halted with %d failed or rolled back hosts, want more than the 2 allowed: %v", f, ro.ByState)
	}
	if i := slices.IndexFunc(ro.History, func(d wire.Decision) bool { return d.Action == wire.ActionHalt }); i < 0 || !strings.Contains(ro.History[i].Reason, "more than maxFailures 2") {
		t.Errorf("no halt at the threshold in the history: %+v", ro.History)
	}
	r.waitEngines(2*time.Minute, func(string) string { return rollV2 })
	time.Sleep(3 * time.Second) // the controller's ticks after the halt: still no later wave
	all := r.toldAll()
	r.checkToldInWave(ro, waves, all)
	for _, id := range r.ids {
		ts := all[id]
		_, got := firstTold(ts, rollV3, ro.Created)
		if waves[id] > 0 && got {
			t.Errorf("%s of wave %d was told %s", id, waves[id], rollV3)
		}
		if waves[id] == 0 && (!got || len(ts) == 0 || ts[len(ts)-1].engine != rollV2) {
			t.Errorf("%s of the first wave: told %v, want %s and then back to %s", id, ts, rollV3, rollV2)
		}
	}
	for _, h := range r.sims.Hosts() {
		if s := h.Status(); waves[h.ID()] == 0 && (len(s.Rejected) == 0 || s.Rejected[0].Version != rollV3) {
			t.Errorf("%s of the first wave does not report %s rejected: %+v", h.ID(), rollV3, s.Rejected)
		}
	}
	r.checkHistory(ro, wire.ActionHalt, wire.ActionRollback)
	var first []string
	for _, h := range r.real {
		if waves[h.id] == 0 {
			first = append(first, h.id)
		}
	}
	t.Logf("rollout %s to the broken %s: %v; real hosts in its first wave (through their own health gate): %v", ro.ID, rollV3, ro.ByState, first)
}

// checkHistory: the rollout's history has each action once.
func (r *rollRig) checkHistory(ro wire.Rollout, actions ...string) {
	r.t.Helper()
	for _, a := range actions {
		n := 0
		for _, d := range ro.History {
			if d.Action == a {
				n++
			}
		}
		if n != 1 {
			r.t.Errorf("rollout %s: %d %q decisions, want 1: %+v", ro.ID, n, a, ro.History)
		}
	}
}

// realHostsRollBack: V3 on the real hosts alone, halting only when all
// three failed: each tries it through its own health gate, rolls back to
// V2 by itself and reports V3 rejected; the containers keep running.
func (r *rollRig) realHostsRollBack() {
	t := r.t
	ro := r.create("--version", rollV3, "--selector", "kind=real", "--waves", "100", "--max-failures", "2", "--rollback-on-halt")
	ro = r.waitRollout(ro.ID, 3*time.Minute, "halt and roll back", func(ro wire.Rollout) bool { return ro.State == wire.RolloutRolledBack })
	if n := ro.ByState[wire.HostFailed] + ro.ByState[wire.HostRolledBack]; n != len(r.real) {
		t.Errorf("%d of the %d real hosts failed or rolled back: %v", n, len(r.real), ro.ByState)
	}
	r.checkHistory(ro, wire.ActionHalt, wire.ActionRollback)
	// Each host says why through its reports: the rolled-back event (its
	// heartbeats' rejected entry lasts only until control names another
	// version, which the rollback here does at once).
	for _, h := range r.real {
		var d wire.HostDetail
		waitFor(t, 30*time.Second, h.id+" to report its rollback from "+rollV3, func() bool {
			var err error
			if d, err = r.api.Host(context.Background(), h.id, 100); err != nil {
				t.Fatal(err)
			}
			return slices.ContainsFunc(d.Events, func(e wire.EventRecord) bool {
				return e.Kind == "engine.rolled-back" && e.Fields["from"] == rollV3 && e.Fields["to"] == rollV2 && strings.Contains(e.Message, "broken on purpose")
			}) && d.Engine.Version == rollV2 && d.State == "Healthy"
		})
	}
}

// pauseResumeAbort: with a simulated and a real host pinned to V2, a
// rollout to V1 is paused in its first wave (no new host is told while
// paused), resumed, and aborted once its second wave started: every host
// it touched goes back to V2, the pinned ones never hear of V1, and the
// third wave's hosts are never told V1.
func (r *rollRig) pauseResumeAbort() {
	t := r.t
	pinned := []string{r.real[0].id, r.sims.Hosts()[0].ID()}
	for _, id := range pinned {
		r.cli("hosts", "pin", id, "--engine", rollV2)
	}
	ro := r.create("--version", rollV1, "--waves", "10,50,100")
	r.waitRollout(ro.ID, time.Minute, "start its first wave", func(ro wire.Rollout) bool { return ro.WaveStatus[0].Started != nil })
	r.cli("rollouts", "pause", ro.ID, "--reason", "look at the first wave")
	paused := time.Now()
	time.Sleep(5 * time.Second) // over the bake time and several ticks
	ro = r.rollout(ro.ID)
	if ro.State != wire.RolloutPaused || ro.Wave != 0 || ro.WaveStatus[1].Started != nil {
		t.Errorf("paused rollout moved on: %s at wave %d, second wave started %v", ro.State, ro.Wave, ro.WaveStatus[1].Started)
	}
	waves := wavesOf(ro, r.ids)
	r.checkWaveSizes(ro, waves)
	all := r.toldAll()
	// The first wave's hosts were told before the pause (some receive it
	// after, their poll's jitter later); no other host is told while the
	// rollout is paused.
	for _, id := range r.ids {
		if at, ok := firstTold(all[id], rollV1, paused); ok && waves[id] > 0 {
			t.Errorf("%s (wave %d) was told %s at %s, while the rollout was paused", id, waves[id], rollV1, at.Format(time.StampMilli))
		}
	}
	resumed := time.Now()
	r.cli("rollouts", "resume", ro.ID)
	r.waitRollout(ro.ID, 3*time.Minute, "start its second wave", func(ro wire.Rollout) bool { return ro.WaveStatus[1].Started != nil })
	r.cli("rollouts", "abort", ro.ID, "--reason", "enough")
	ro = r.waitRollout(ro.ID, time.Minute, "be aborted", func(ro wire.Rollout) bool { return ro.State == wire.RolloutAborted })
	r.waitEngines(3*time.Minute, func(string) string { return rollV2 })
	all = r.toldAll()
	for _, id := range r.ids {
		ts := all[id]
		at, ok := firstTold(ts, rollV1, ro.Created)
		switch {
		case !ok:
		case slices.Contains(pinned, id):
			t.Errorf("pinned %s was told %s at %s", id, rollV1, at.Format(time.StampMilli))
		case waves[id] == 2:
			t.Errorf("%s of the third wave was told %s at %s", id, rollV1, at.Format(time.StampMilli))
		case waves[id] == 1 && at.Before(resumed):
			t.Errorf("%s of the second wave was told %s at %s, before the resume", id, rollV1, at.Format(time.StampMilli))
		case ts[len(ts)-1].engine != rollV2:
			t.Errorf("%s was told %s and not sent back to %s after the abort: %v", id, rollV1, rollV2, ts)
		}
	}
	r.checkToldInWave(ro, waves, all)
	r.checkHistory(ro, wire.ActionPause, wire.ActionResume, wire.ActionAbort)

	// Unpinned, the simulated host is told what the rollouts decide for
	// it again: V2, from the first rollout (it took no part in the
	// aborted one).
	sim := r.sims.Host(pinned[1])
	before := len(sim.History())
	r.cli("hosts", "unpin", pinned[1], "--engine")
	waitFor(t, 30*time.Second, pinned[1]+" to hear of its unpinning", func() bool { return len(sim.History()) > before })
	if d := sim.Status().Desired; d.Engine == nil || d.Engine.Version != rollV2 || len(d.Rollouts) != 1 {
		t.Errorf("%s unpinned is told %+v, want %s from one rollout", pinned[1], d, rollV2)
	}
}
