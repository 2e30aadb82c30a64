package extension

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/agent/config"
	"github.com/berthhq/berth/provision"
)

func TestPickSequence(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name  string
		env   string
		files []fileSeq
		want  int
		code  Code
	}{
		{"env wins", "7", []fileSeq{{Seq: 9, ModTime: t0}}, 7, 0},
		{"env zero", "0", nil, 0, 0},
		{"env with spaces", " 3 ", nil, 3, 0},
		{"env not a number", "x", nil, 0, CodeSequence},
		{"env negative", "-1", nil, 0, CodeSequence},
		{"newest file, not the highest", "", []fileSeq{{Seq: 9, ModTime: t0}, {Seq: 2, ModTime: t0.Add(time.Second)}}, 2, 0},
		{"tie: the highest", "", []fileSeq{{Seq: 4, ModTime: t0}, {Seq: 5, ModTime: t0}, {Seq: 1, ModTime: t0}}, 5, 0},
		{"nothing", "", nil, 0, CodeSequence},
	}
	for _, c := range cases {
		got, err := PickSequence(c.env, c.files)
		if (err != nil) != (c.code != 0) || (err != nil && CodeOf(err) != c.code) || got != c.want {
			t.Errorf("%s: PickSequence = %d, %v; want %d, code %d", c.name, got, err, c.want, c.code)
		}
	}
}

func TestParseSettings(t *testing.T) {
	thumb := strings.Repeat("ab", 20)
	cases := []struct {
		name string
		in   string
		want Settings
		code Code
	}{
		{"empty file: no settings", "", Settings{}, 0},
		{"whitespace only", " \n", Settings{}, 0},
		{"byte order mark", "\xef\xbb\xbf{\"runtimeSettings\":[{\"handlerSettings\":{\"publicSettings\":{\"a\":1}}}]}", Settings{Public: json.RawMessage(`{"a":1}`)}, 0},
		{"public only", `{"runtimeSettings":[{"handlerSettings":{"publicSettings":{"a":1}}}]}`, Settings{Public: json.RawMessage(`{"a":1}`)}, 0},
		{"null public", `{"runtimeSettings":[{"handlerSettings":{"publicSettings":null}}]}`, Settings{}, 0},
		{"thumbprint upper-cased", `{"runtimeSettings":[{"handlerSettings":{"protectedSettings":"QQ==","protectedSettingsCertThumbprint":"` + thumb + `"}}]}`,
			Settings{Protected: "QQ==", Thumbprint: strings.ToUpper(thumb)}, 0},
		{"thumbprint without protected is ignored", `{"runtimeSettings":[{"handlerSettings":{"protectedSettingsCertThumbprint":"zz"}}]}`, Settings{}, 0},
		{"not JSON", `{`, Settings{}, CodeSettingsNotJSON},
		{"trailing data", `{"runtimeSettings":[{"handlerSettings":{}}]} {}`, Settings{}, CodeSettingsNotJSON},
		{"array at the top", `[]`, Settings{}, CodeSettingsNotJSON},
		{"two", `{"runtimeSettings":[{},{}]}`, Settings{}, CodeSettingsCount},
		{"none", `{}`, Settings{}, CodeSettingsCount},
		{"public a string", `{"runtimeSettings":[{"handlerSettings":{"publicSettings":"x"}}]}`, Settings{}, CodeSettingsNotJSON},
		{"protected a number", `{"runtimeSettings":[{"handlerSettings":{"protectedSettings":1}}]}`, Settings{}, CodeSettingsNotJSON},
		{"protected without thumbprint", `{"runtimeSettings":[{"handlerSettings":{"protectedSettings":"QQ=="}}]}`, Settings{}, CodeThumbprintMissing},
		{"thumbprint too short", `{"runtimeSettings":[{"handlerSettings":{"protectedSettings":"QQ==","protectedSettingsCertThumbprint":"abc"}}]}`, Settings{}, CodeThumbprintMissing},
		{"too large", strings.Repeat(" ", MaxSettingsSize+1), Settings{}, CodeSettingsTooLarge},
	}
	for _, c := range cases {
		got, err := ParseSettings([]byte(c.in))
		if c.code != 0 {
			if CodeOf(err) != c.code || err == nil {
				t.Errorf("%s: err = %v, want code %v", c.name, err, c.code)
			}
			continue
		}
		if err != nil || string(got.Public) != string(c.want.Public) || got.Protected != c.want.Protected || got.Thumbprint != c.want.Thumbprint {
			t.Errorf("%s: ParseSettings = %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
}

func TestParseHandlerEnv(t *testing.T) {
	linux := `[{"name":"Berth.ContainerHost","version":1.0,"handlerEnvironment":{"logFolder":"/var/log/azure/B","configFolder":"/var/lib/waagent/B-1/config","statusFolder":"/var/lib/waagent/B-1/status","heartbeatFile":"/var/lib/waagent/B-1/heartbeat.log","eventsFolder_preview":"/var/log/azure/B/events"}}]`
	e, err := ParseHandlerEnv([]byte(linux))
	if err != nil || e.Name != "Berth.ContainerHost" || e.Version != "1.0" || e.EventsFolder != "/var/log/azure/B/events" || e.StatusFolder != "/var/lib/waagent/B-1/status" {
		t.Errorf("linux file: %+v, %v", e, err)
	}
	if e, err := ParseHandlerEnv([]byte("\xef\xbb\xbf" + `[{"name":"n","version":"1","handlerEnvironment":{"configFolder":"/c","statusFolder":"/s"}}]`)); err != nil || e.Version != "1" {
		t.Errorf("string version: %+v, %v", e, err)
	}
	for name, bad := range map[string]string{
		"not JSON":          `[{`,
		"object, not array": `{"handlerEnvironment":{}}`,
		"two elements":      `[{},{}]`,
		"empty array":       `[]`,
		"no statusFolder":   `[{"handlerEnvironment":{"configFolder":"/c"}}]`,
		"relative folder":   `[{"handlerEnvironment":{"configFolder":"c","statusFolder":"/s"}}]`,
		"trailing data":     `[{"handlerEnvironment":{"configFolder":"/c","statusFolder":"/s"}}] x`,
	} {
		if _, err := ParseHandlerEnv([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestFindHandlerEnvRetriesThenNamesWhereItLooked(t *testing.T) {
	handlerEnvAttempts, handlerEnvBackoff = 2, time.Millisecond
	defer func() { handlerEnvAttempts, handlerEnvBackoff = 5, 200*time.Millisecond }()
	dir := t.TempDir()
	_, err := FindHandlerEnv(t.Context(), filepath.Join(dir, "bin"))
	if CodeOf(err) != CodeHandlerEnvironment || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "after 2 attempts") {
		t.Errorf("err = %v", err)
	}
}

func TestServiceAction(t *testing.T) {
	cases := []struct {
		status  string
		changed bool
		want    action
	}{
		{ServiceRunning, false, actNone},
		{ServiceRunning, true, actRestart},
		{ServiceStopped, false, actStart},
		{ServiceStopped, true, actStart},
		{ServiceNotInstalled, false, actStart},
	}
	for _, c := range cases {
		if got := serviceAction(c.status, c.changed); got != c.want {
			t.Errorf("serviceAction(%s, %v) = %v, want %v", c.status, c.changed, got, c.want)
		}
	}
}

func TestKeptForUpdate(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		m    updateMarker
		ver  string
		want bool
	}{
		{"update away from this version", updateMarker{From: "1.0", To: "1.1", At: now.Add(-time.Minute)}, "1.0", true},
		{"another version's update", updateMarker{From: "0.9", To: "1.1", At: now}, "1.0", false},
		{"stale marker", updateMarker{From: "1.0", To: "1.1", At: now.Add(-2 * time.Hour)}, "1.0", false},
		{"marker from the future", updateMarker{From: "1.0", To: "1.1", At: now.Add(time.Hour)}, "1.0", false},
		{"same version reinstalled", updateMarker{From: "1.0", To: "1.0", At: now}, "1.0", false},
		{"no marker", updateMarker{}, "1.0", false},
	}
	for _, c := range cases {
		if got := keptForUpdate(c.m, c.ver, now); got != c.want {
			t.Errorf("%s: keptForUpdate = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestRemovalPlan(t *testing.T) {
	root := filepath.FromSlash("/s")
	remove, descend := removalPlan(root, []string{"agent.db", "data", "engines", "secrets"},
		[]string{filepath.FromSlash("/s/data/docker"), filepath.FromSlash("/s/engines")})
	if strings.Join(remove, ",") != strings.Join([]string{filepath.FromSlash("/s/agent.db"), filepath.FromSlash("/s/secrets")}, ",") {
		t.Errorf("remove = %v", remove)
	}
	if len(descend) != 1 || descend[0] != filepath.FromSlash("/s/data") {
		t.Errorf("descend = %v", descend)
	}
	// A kept path outside the state folder keeps nothing in it.
	if remove, _ := removalPlan(root, []string{"x"}, []string{filepath.FromSlash("/var/lib/docker")}); len(remove) != 1 {
		t.Errorf("remove = %v", remove)
	}
	// A sibling with a common prefix is not an ancestor.
	if remove, _ := removalPlan(root, []string{"dat"}, []string{filepath.FromSlash("/s/data")}); len(remove) != 1 {
		t.Errorf("prefix sibling: remove = %v", remove)
	}
}

func TestValidVersion(t *testing.T) {
	for v, want := range map[string]bool{"1.0.2": true, "1.0.0-rc1": true, "NOT_RUN": false, "": false, "../x": false, "1/2": false, "a..b": false} {
		if validVersion(v) != want {
			t.Errorf("validVersion(%q) = %v", v, !want)
		}
	}
}

func TestComposeConfig(t *testing.T) {
	dir := filepath.FromSlash("/state/secrets")
	p, err := ParseProtected([]byte(`{"control":{"token":"T"},"engine":{"releases":{"sas":"?sv=1&sig=x"}},
		"cache":{"storage":[{"url":"https://a.blob.core.windows.net/c/","key":"K"}],"upstreams":{"reg.example.com:5000":{"username":"u","password":"p"}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	public := json.RawMessage(`{"control":{"url":"https://c"},"cache":{"storage":[{"url":"https://a.blob.core.windows.net/c"}]},"agent":{"labels":{"n":1.50}}}`)
	out, secrets, err := ComposeConfig(public, p, dir)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	json.Unmarshal(out, &got)
	control := got["control"].(map[string]any)
	if control["auth"] != "token" || control["tokenFile"] != filepath.Join(dir, "control.token") {
		t.Errorf("control = %v", control)
	}
	storage := got["cache"].(map[string]any)["storage"].([]any)[0].(map[string]any)
	if storage["auth"] != "shared-key" || storage["keyFile"] != filepath.Join(dir, "cache.storage.0.key") {
		t.Errorf("storage = %v", storage)
	}
	if !strings.Contains(string(out), "1.50") {
		t.Errorf("numbers not kept as written: %s", out)
	}
	names := map[string]string{}
	for _, s := range secrets {
		names[s.Name] = string(s.Value)
	}
	if names["engine.releases.sas"] != "sv=1&sig=x" || names["control.token"] != "T" || len(names) != 5 {
		t.Errorf("secrets = %v", names)
	}
	for _, s := range secrets {
		if strings.ContainsAny(s.Name, `:/\`) {
			t.Errorf("secret file name %q is not valid everywhere", s.Name)
		}
	}
	if strings.Contains(string(out), `"T"`) || strings.Contains(string(out), "sig=x") {
		t.Errorf("a secret value reached the config: %s", out)
	}
}

func TestComposeConfigConflicts(t *testing.T) {
	cases := []struct{ name, public, protected string }{
		{"auth says otherwise", `{"control":{"auth":"managed-identity"}}`, `{"control":{"token":"T"}}`},
		{"file and value", `{"control":{"tokenFile":"/t"}}`, `{"control":{"token":"T"}}`},
		{"key and sas", `{}`, `{"engine":{"releases":{"key":"k","sas":"s"}}}`},
		{"unknown storage url", `{"cache":{"storage":[]}}`, `{"cache":{"storage":[{"url":"https://x","key":"k"}]}}`},
		{"control not an object", `{"control":"x"}`, `{"control":{"token":"T"}}`},
	}
	for _, c := range cases {
		p, err := ParseProtected([]byte(c.protected))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if _, _, err := ComposeConfig(json.RawMessage(c.public), p, "/s"); CodeOf(err) != CodeSecretConflict {
			t.Errorf("%s: err = %v, want a SecretConflict", c.name, err)
		}
	}
}

func TestParseProtectedNeverQuotesValues(t *testing.T) {
	for _, in := range []string{`{"control":{"token":12345678}}`, `{"control":{"token":"s3cr3t","x":1}}`, `{"control":{"token":"s3cr3t"`} {
		_, err := ParseProtected([]byte(in))
		if err == nil || CodeOf(err) != CodeProtectedInvalid || strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "12345678") {
			t.Errorf("%s: err = %v", in, err)
		}
	}
}

func TestFinalStatus(t *testing.T) {
	cases := []struct {
		r    provision.Result
		want State
		code int
		msg  string
	}{
		{provision.Result{Ready: true}, StateSuccess, 0, "ready"},
		{provision.Result{RebootPending: true, Failed: "prerequisites"}, StateTransitioning, 0, "reboot before step prerequisites"},
		{provision.Result{Failed: "engine", Steps: []provision.StepResult{{Name: "engine", State: provision.Failed, Error: "download failed"}}}, StateError, int(CodeProvision), "at step engine: download failed"},
	}
	for _, c := range cases {
		s := FinalStatus(c.r)
		if s.Status != c.want || s.Code != c.code || !strings.Contains(s.FormattedMessage.Message, c.msg) {
			t.Errorf("FinalStatus(%+v) = %+v", c.r, s)
		}
	}
}

func TestCodeOf(t *testing.T) {
	if CodeOf(errors.New("x")) != CodeHostWrite || CodeOf(fail(CodeDecrypt, fail(CodeSettingsCount, errors.New("x")))) != CodeSettingsCount {
		t.Error("CodeOf: unexpected codes")
	}
	for c := range codeNames {
		if !strings.Contains(c.String(), "(") {
			t.Errorf("code %d has no name", c)
		}
	}
}

func TestFindHandlerEnvWaitsWhileTheGuestAgentRewritesIt(t *testing.T) {
	handlerEnvAttempts, handlerEnvBackoff = 6, 20*time.Millisecond
	defer func() { handlerEnvAttempts, handlerEnvBackoff = 5, 200*time.Millisecond }()
	root := t.TempDir()
	path := filepath.Join(root, HandlerEnvironmentFile)
	good := `[{"name":"B","version":1.0,"handlerEnvironment":{"configFolder":"/c","statusFolder":"/s"}}]`
	if err := os.WriteFile(path, []byte(good[:30]), 0o644); err != nil { // half written
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(60 * time.Millisecond)
		os.WriteFile(path, []byte(good), 0o644)
	}()
	e, err := FindHandlerEnv(t.Context(), filepath.Join(root, "bin"))
	<-done
	if err != nil || e.Root != root || e.StatusFolder != "/s" {
		t.Errorf("FindHandlerEnv = %+v, %v; want the file once rewritten, found one folder up", e, err)
	}
}

func TestHandlerVersion(t *testing.T) {
	cases := []struct {
		name, root, env, want string
	}{
		{"the guest agent's variable", "/var/lib/waagent/Berth.ContainerHost-1.2.3", "1.2.4", "1.2.4"},
		{"linux folder name", "/var/lib/waagent/Berth.ContainerHost-1.2.3", "", "1.2.3"},
		{"windows folder name", filepath.Join("Plugins", "Berth.ContainerHost", "1.2.3"), "", "1.2.3"},
	}
	for _, c := range cases {
		if got := handlerVersion(Env{Name: "Berth.ContainerHost", Root: c.root}, c.env); got != c.want {
			t.Errorf("%s: handlerVersion = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestScrubSettings(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.settings")
	in := "\xef\xbb\xbf" + `{"runtimeSettings":[{"handlerSettings":{"publicSettings":{"a":1},"protectedSettings":"QQ==","protectedSettingsCertThumbprint":"AB"}}]}`
	os.WriteFile(path, []byte(in), 0o600)
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	os.Chtimes(path, old, old)
	if done, err := ScrubSettings(path); !done || err != nil {
		t.Fatalf("ScrubSettings = %v, %v", done, err)
	}
	out, _ := os.ReadFile(path)
	s, err := ParseSettings(out)
	if err != nil || s.Protected != "" || string(s.Public) != `{"a":1}` || strings.Contains(string(out), "QQ==") {
		t.Errorf("after scrub: %s (%v)", out, err)
	}
	if info, _ := os.Stat(path); !info.ModTime().Equal(old) || info.Mode().Perm() != 0o600 {
		t.Errorf("scrub changed the time or mode: %v %v", info.ModTime(), info.Mode())
	}
	if done, _ := ScrubSettings(path); done {
		t.Errorf("scrubbed twice")
	}
}

func TestFindHandlerEnvRefusesAHugeFile(t *testing.T) {
	handlerEnvAttempts, handlerEnvBackoff = 1, time.Millisecond
	defer func() { handlerEnvAttempts, handlerEnvBackoff = 5, 200*time.Millisecond }()
	root := t.TempDir()
	huge := append([]byte(`[{"handlerEnvironment":{"configFolder":"/c","statusFolder":"/s","logFolder":"`), make([]byte, maxHandlerEnvSize)...)
	os.WriteFile(filepath.Join(root, HandlerEnvironmentFile), huge, 0o644)
	if _, err := FindHandlerEnv(t.Context(), filepath.Join(root, "bin")); CodeOf(err) != CodeHandlerEnvironment || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("err = %v", err)
	}
}

// TestKeptOnUninstall: uninstall keeps every path the running engine uses —
// its data root, its API socket, and the absolute paths its settings name —
// and nothing else.
func TestKeptOnUninstall(t *testing.T) {
	var cfg config.Config
	cfg.Engine.DataRoot = "/srv/engine"
	cfg.Engine.Endpoint = "unix:///s/docker.sock"
	cfg.Engine.Settings = map[string]any{
		"exec-root": "/s/exec",
		"hosts":     []any{"unix:///s/extra.sock", "tcp://127.0.0.1:2375"},
		"bridge":    "none",
		"iptables":  false,
		"relative":  "data",
	}
	got := keptOnUninstall(cfg)
	slices.Sort(got)
	want := []string{"/s/docker.sock", "/s/exec", "/s/extra.sock", "/srv/engine"}
	if !slices.Equal(got, want) {
		t.Errorf("kept = %q, want %q", got, want)
	}
	if got := keptOnUninstall(config.Config{}); len(got) != 0 {
		t.Errorf("empty config: kept %q", got)
	}
}
