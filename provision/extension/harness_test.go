//go:build !windows

package extension_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthhq/berth/provision"
	"github.com/berthhq/berth/provision/extension"
	"github.com/berthhq/berth/provision/extension/waagenttest"
)

// handlerBinary is the test driver (waagenttest/testhandler), built once.
var handlerBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "berth-ext-handler-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	handlerBinary = filepath.Join(dir, "berth-agent")
	if err := waagenttest.Build("./waagenttest/testhandler", handlerBinary); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// vm is one guest with the handler's config, state and recorded service.
type vm struct {
	*waagenttest.Guest
	t            *testing.T
	configPath   string
	stateDir     string
	serviceState string
}

const v1 = "1.0.0"

func newVM(t *testing.T, env ...string) *vm {
	t.Helper()
	root := t.TempDir()
	v := &vm{t: t, configPath: filepath.Join(root, "etc", "berth", "agent.yaml"), stateDir: filepath.Join(root, "state"),
		serviceState: filepath.Join(root, "service.json")}
	v.Guest = waagenttest.New(t, waagenttest.Options{Env: append([]string{
		"BERTH_CONFIG=" + v.configPath, "BERTH_TEST_SERVICE_STATE=" + v.serviceState}, env...)})
	v.Unpack(v1, handlerBinary)
	return v
}

// public is a valid agent config whose secrets come from protected
// settings.
func (v *vm) public(extra map[string]any) map[string]any {
	p := map[string]any{
		"agent":   map[string]any{"stateDir": v.stateDir},
		"control": map[string]any{"url": "https://control.example.com"},
		"engine":  map[string]any{"managed": false},
	}
	for k, val := range extra {
		p[k] = val
	}
	return p
}

func (v *vm) run(cmd string, seq int) waagenttest.Result {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := v.Run(ctx, v1, cmd, seq, nil)
	if r.TimedOut {
		v.t.Fatalf("%s timed out: %s", cmd, r.Output)
	}
	return r
}

func (v *vm) status(seq int) waagenttest.Status {
	v.t.Helper()
	s, err := waagenttest.ReadStatus(v.Handler(v1).StatusFolder, seq)
	if err != nil {
		v.t.Fatalf("status of %d: %v", seq, err)
	}
	if s.Oversize {
		v.t.Errorf("status of %d is %d bytes, over 128 KB", seq, s.Size)
	}
	return s
}

type serviceState struct {
	Installed, Running, Detached bool
	Starts, Restarts             int
	Executable                   string
	Calls                        []string
}

func (v *vm) service() serviceState {
	v.t.Helper()
	var s serviceState
	data, err := os.ReadFile(v.serviceState)
	if os.IsNotExist(err) {
		return s
	}
	if err != nil {
		v.t.Fatal(err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		v.t.Fatal(err)
	}
	return s
}

// reset forgets what an enable did: config, state, service, sequence.
func (v *vm) reset() {
	os.Remove(v.configPath)
	os.RemoveAll(v.stateDir)
	os.Remove(v.serviceState)
	os.Remove(filepath.Join(v.Handler(v1).Dir, "mrseq"))
}

func mtime(t *testing.T, path string) time.Time {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.ModTime()
}

func TestEnableAppliesSettingsAndScrubsSecrets(t *testing.T) {
	v := newVM(t)
	v.WriteSettings(v1, 0, v.public(nil), map[string]any{"control": map[string]any{"token": "s3cret-token"}})
	settingsPath := filepath.Join(v.Handler(v1).ConfigFolder, "0.settings")
	before := mtime(t, settingsPath)
	ctx := context.Background()
	if r := v.Run(ctx, v1, "install", 0, nil); r.ExitCode != 0 {
		t.Fatalf("install: %d %s", r.ExitCode, r.Output)
	}
	if r := v.run("enable", 0); r.ExitCode != 0 {
		t.Fatalf("enable: %d %s", r.ExitCode, r.Output)
	}
	if st := v.status(0); st.Status != "transitioning" || !strings.Contains(st.Message, "the agent provisions the host") {
		t.Errorf("status after enable = %+v, want transitioning until the agent reports", st)
	}
	cfg, err := os.ReadFile(v.configPath)
	if err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(v.stateDir, "secrets", "control.token")
	if !strings.Contains(string(cfg), `"tokenFile": "`+secret+`"`) || !strings.Contains(string(cfg), `"auth": "token"`) || strings.Contains(string(cfg), "s3cret") {
		t.Errorf("config does not point at the secret file (or holds the secret):\n%s", cfg)
	}
	if got, _ := os.ReadFile(secret); string(got) != "s3cret-token" {
		t.Errorf("secret file holds %q", got)
	}
	for path, want := range map[string]os.FileMode{secret: 0o600, filepath.Dir(secret): 0o700} {
		if info, err := os.Stat(path); err != nil || info.Mode().Perm() != want {
			t.Errorf("%s mode = %v, want %v (%v)", path, info.Mode().Perm(), want, err)
		}
	}
	settings, _ := os.ReadFile(settingsPath)
	if strings.Contains(string(settings), "protectedSettings") || !strings.Contains(string(settings), "control.example.com") {
		t.Errorf("settings file not scrubbed of protected settings (public kept):\n%s", settings)
	}
	if !mtime(t, settingsPath).Equal(before) {
		t.Errorf("scrubbing changed the settings file's time: it picks the sequence number")
	}
	if s := v.service(); !s.Installed || !s.Running || s.Starts != 1 || s.Restarts != 0 {
		t.Errorf("service = %+v, want installed and started once", s)
	}
	if s := v.service(); s.Executable != filepath.Join(v.stateDir, "bin", "berth-agent") {
		t.Errorf("service runs %q, want the copy under the state dir (the handler folder goes on update)", s.Executable)
	}
	var st extension.HandlerState
	data, _ := os.ReadFile(filepath.Join(v.stateDir, extension.StateFile))
	if err := json.Unmarshal(data, &st); err != nil || st.StatusFolder != v.Handler(v1).StatusFolder || st.Sequence != 0 || st.Version != v1 || st.HeartbeatFile == "" || st.EventsFolder == "" {
		t.Errorf("extension.json = %+v (%v)", st, err)
	}
}

func TestEnableAgainChangesNothing(t *testing.T) {
	v := newVM(t)
	v.WriteSettings(v1, 3, v.public(nil), map[string]any{"control": map[string]any{"token": "t1"}})
	if r := v.run("enable", 3); r.ExitCode != 0 {
		t.Fatalf("enable: %s", r.Output)
	}
	cfgTime := mtime(t, v.configPath)
	secretTime := mtime(t, filepath.Join(v.stateDir, "secrets", "control.token"))
	time.Sleep(20 * time.Millisecond)
	for i := 0; i < 2; i++ {
		if r := v.run("enable", 3); r.ExitCode != 0 {
			t.Fatalf("enable again: %s", r.Output)
		}
	}
	if s := v.service(); s.Starts != 1 || s.Restarts != 0 {
		t.Errorf("enable with the same sequence number restarted the agent: %+v", s)
	}
	if !mtime(t, v.configPath).Equal(cfgTime) || !mtime(t, filepath.Join(v.stateDir, "secrets", "control.token")).Equal(secretTime) {
		t.Errorf("enable with the same sequence number rewrote the config or a secret")
	}
}

func TestNewSequenceAppliesOnlyWhatChanged(t *testing.T) {
	v := newVM(t)
	v.WriteSettings(v1, 0, v.public(nil), map[string]any{"control": map[string]any{"token": "t1"}})
	if r := v.run("enable", 0); r.ExitCode != 0 {
		t.Fatalf("enable 0: %s", r.Output)
	}
	// The agent reported success for 0 (what Attach's observer keeps).
	o, _, err := extension.Attach(context.Background(), v.stateDir, nil)
	if err != nil || o == nil {
		t.Fatalf("attach: %v %v", o, err)
	}
	o.Finished(context.Background(), provision.Result{Ready: true, Steps: []provision.StepResult{{Name: "engine", State: provision.Done}}})

	// Same settings under a new number (a goal state that changed
	// something else): nothing restarts, and the result is reported at once.
	v.WriteSettings(v1, 1, v.public(nil), map[string]any{"control": map[string]any{"token": "t1"}})
	if r := v.run("enable", 1); r.ExitCode != 0 {
		t.Fatalf("enable 1: %s", r.Output)
	}
	if s := v.service(); s.Restarts != 0 || s.Starts != 1 {
		t.Errorf("unchanged settings restarted the agent: %+v", s)
	}
	if st := v.status(1); st.Status != "success" {
		t.Errorf("status of 1 = %+v, want the agent's last result (success)", st)
	}

	// A new token: the secret is rewritten and the agent restarted once.
	v.WriteSettings(v1, 2, v.public(nil), map[string]any{"control": map[string]any{"token": "t2"}})
	if r := v.run("enable", 2); r.ExitCode != 0 {
		t.Fatalf("enable 2: %s", r.Output)
	}
	if s := v.service(); s.Restarts != 1 {
		t.Errorf("a new secret did not restart the agent once: %+v", s)
	}
	if got, _ := os.ReadFile(filepath.Join(v.stateDir, "secrets", "control.token")); string(got) != "t2" {
		t.Errorf("secret = %q, want t2", got)
	}
	if st := v.status(2); st.Status != "transitioning" {
		t.Errorf("status of 2 = %+v, want transitioning until the restarted agent reports", st)
	}
}

func TestNoServiceManagerStartsTheAgentDetached(t *testing.T) {
	v := newVM(t, "BERTH_TEST_SERVICE_MANAGER=none")
	v.WriteSettings(v1, 0, v.public(nil), nil)
	if r := v.run("enable", 0); r.ExitCode != 0 {
		t.Fatalf("enable: %s", r.Output)
	}
	if s := v.service(); !s.Detached || s.Installed {
		t.Errorf("service = %+v, want the agent detached", s)
	}
	if st := v.status(0); !strings.Contains(st.Message, "no service manager") || !strings.Contains(st.Message, "detached") {
		t.Errorf("status message %q does not say the agent runs detached", st.Message)
	}
}

func TestDisableStopsTheAgentOnly(t *testing.T) {
	v := newVM(t)
	v.WriteSettings(v1, 0, v.public(nil), map[string]any{"control": map[string]any{"token": "t1"}})
	if r := v.run("enable", 0); r.ExitCode != 0 {
		t.Fatalf("enable: %s", r.Output)
	}
	if r := v.run("disable", 0); r.ExitCode != 0 {
		t.Fatalf("disable: %s", r.Output)
	}
	if s := v.service(); s.Running || s.Installed {
		t.Errorf("after disable the service = %+v, want stopped and not started at boot", s)
	}
	if st := v.status(0); st.Status != "success" || st.Operation != "Disable" {
		t.Errorf("status after disable = %+v", st)
	}
	if _, err := os.Stat(v.configPath); err != nil {
		t.Errorf("disable removed the config: %v", err)
	}
	// enable undoes it without touching the settings.
	if r := v.run("enable", 0); r.ExitCode != 0 {
		t.Fatalf("enable after disable: %s", r.Output)
	}
	if s := v.service(); !s.Running || !s.Installed || s.Restarts != 0 {
		t.Errorf("after enable the service = %+v, want installed and running", s)
	}
}

func TestUninstallKeepsTheEngineData(t *testing.T) {
	v := newVM(t)
	dataRoot := filepath.Join(v.stateDir, "docker-data")
	v.WriteSettings(v1, 0, v.public(map[string]any{"engine": map[string]any{"managed": false, "dataRoot": dataRoot}}),
		map[string]any{"control": map[string]any{"token": "t1"}})
	if r := v.run("enable", 0); r.ExitCode != 0 {
		t.Fatalf("enable: %s", r.Output)
	}
	os.MkdirAll(filepath.Join(dataRoot, "volumes"), 0o755)
	os.WriteFile(filepath.Join(dataRoot, "volumes", "data"), []byte("keep me"), 0o644)
	os.MkdirAll(filepath.Join(v.stateDir, "cache"), 0o755)
	if r := v.run("uninstall", 0); r.ExitCode != 0 {
		t.Fatalf("uninstall: %s", r.Output)
	}
	if s := v.service(); s.Installed || s.Running {
		t.Errorf("after uninstall the service = %+v", s)
	}
	for _, gone := range []string{v.configPath, filepath.Join(v.stateDir, "secrets"), filepath.Join(v.stateDir, "cache"),
		filepath.Join(v.stateDir, "bin"), filepath.Join(v.stateDir, extension.StateFile)} {
		if _, err := os.Stat(gone); !os.IsNotExist(err) {
			t.Errorf("uninstall left %s", gone)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(dataRoot, "volumes", "data")); string(got) != "keep me" {
		t.Errorf("uninstall removed the engine's data")
	}
}

func TestUpdateInTheGuestAgentsOrder(t *testing.T) {
	v := newVM(t)
	const v2 = "1.1.0"
	v.WriteSettings(v1, 4, v.public(nil), map[string]any{"control": map[string]any{"token": "t1"}})
	if r := v.run("enable", 4); r.ExitCode != 0 {
		t.Fatalf("enable: %s", r.Output)
	}
	settings, _ := os.ReadFile(filepath.Join(v.Handler(v1).ConfigFolder, "4.settings"))
	results := v.Update(context.Background(), v1, v2, handlerBinary, 4, settings)
	for _, r := range results {
		if r.ExitCode != 0 || r.TimedOut {
			t.Errorf("update step %s: exit %d: %s", r.Command, r.ExitCode, r.Output)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(v.stateDir, "secrets", "control.token")); string(got) != "t1" {
		t.Errorf("the old version's uninstall removed the secrets during the update")
	}
	if _, err := os.Stat(v.configPath); err != nil {
		t.Errorf("the old version's uninstall removed the config during the update: %v", err)
	}
	if s := v.service(); !s.Running || !s.Installed {
		t.Errorf("after the update the service = %+v, want running", s)
	}
	st, _, _ := extension.ReadHandlerState(v.stateDir)
	if st.Version != v2 || st.StatusFolder != v.Handler(v2).StatusFolder {
		t.Errorf("extension.json after update = %+v, want the new version's folders", st)
	}
	if _, err := os.Stat(filepath.Join(v.Handler(v2).Dir, "mrseq")); err != nil {
		t.Errorf("the applied sequence number was not taken over: %v", err)
	}
	if s, err := waagenttest.ReadStatus(v.Handler(v2).StatusFolder, 4); err != nil || s.Status == "error" {
		t.Errorf("status after update = %+v, %v", s, err)
	}
}

// TestEnableWaitsForAnotherCommand holds the handler lock as a second
// enable would, and checks enable waits for it instead of writing the same
// files at the same time.
func TestEnableWaitsForAnotherCommand(t *testing.T) {
	v := newVM(t)
	v.WriteSettings(v1, 0, v.public(nil), nil)
	f, err := os.OpenFile(filepath.Join(v.Handler(v1).Dir, "berth-extension.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	const hold = 1500 * time.Millisecond
	fd := int(f.Fd())
	released := make(chan struct{})
	go func() {
		defer close(released)
		time.Sleep(hold)
		syscall.Flock(fd, syscall.LOCK_UN)
	}()
	r := v.run("enable", 0)
	<-released
	if r.ExitCode != 0 || r.Elapsed < hold {
		t.Errorf("enable exit %d after %s, want success after the lock was released (%s): %s", r.ExitCode, r.Elapsed, hold, r.Output)
	}
}

// TestAppliedSettingsAreNotAppliedAgainWithoutTheirSecrets: once applied,
// the protected settings are gone from the settings file; if the config is
// then broken, enable must say so rather than apply the public part again
// and delete the secrets.
func TestAppliedSettingsAreNotAppliedAgainWithoutTheirSecrets(t *testing.T) {
	v := newVM(t)
	v.WriteSettings(v1, 0, v.public(nil), map[string]any{"control": map[string]any{"token": "t1"}})
	if r := v.run("enable", 0); r.ExitCode != 0 {
		t.Fatalf("enable: %s", r.Output)
	}
	os.WriteFile(v.configPath, []byte("not: [valid"), 0o644)
	if r := v.run("enable", 0); r.ExitCode == 0 {
		t.Errorf("enable accepted a broken config")
	}
	if st := v.status(0); st.Status != "error" || st.Clarification() != int(extension.CodeConfigInvalid) || !strings.Contains(st.Message, "new sequence number") {
		t.Errorf("status = %+v", st)
	}
	if got, _ := os.ReadFile(filepath.Join(v.stateDir, "secrets", "control.token")); string(got) != "t1" {
		t.Errorf("the secret was lost: %q", got)
	}
}
