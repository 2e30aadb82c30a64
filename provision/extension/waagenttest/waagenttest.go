//go:build !windows

// Package waagenttest is a test harness, not product code: a guest agent
// that lays out, runs and reads a Linux VM extension the way WALinuxAgent
// does (azurelinuxagent/ga/exthandlers.py, anchors §1): the handler folder
// /var/lib/waagent/<Publisher.Type>-<version>/ under a temporary root, its
// HandlerEnvironment.json, config/<n>.settings with protected settings
// encrypted by `openssl cms` (an implementation independent of Berth's) for
// a certificate laid out as <THUMBPRINT>.crt/.prv, the commands of
// HandlerManifest.json run with the guest agent's environment variables,
// order and timeouts (the process group killed when they pass), and status
// files read the way WALinuxAgent parses them.
package waagenttest

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Command timeouts WALinuxAgent enforces (anchors §1.2).
var Timeouts = map[string]time.Duration{
	"install":   900 * time.Second,
	"enable":    300 * time.Second,
	"disable":   900 * time.Second,
	"update":    900 * time.Second,
	"uninstall": 300 * time.Second,
}

// NotRun is the value of the exit-code variables of a command that did not
// run.
const NotRun = "NOT_RUN"

// Options describe the extension under test.
type Options struct {
	// Name is Publisher.Type; default Berth.ContainerHost.
	Name string
	// Manifest is HandlerManifest.json; default DefaultManifest.
	Manifest []byte
	// Env is added to every command's environment (such as BERTH_CONFIG).
	Env []string
	// Timeouts override the guest agent's per command (tests of the kill).
	Timeouts map[string]time.Duration
}

// DefaultManifest is the manifest the harness uses when none is given: the
// shape SPEC asks for, the binary under bin/.
var DefaultManifest = []byte(`[{"version": 1.0, "handlerManifest": {
  "installCommand": "bin/berth-agent extension install",
  "uninstallCommand": "bin/berth-agent extension uninstall",
  "updateCommand": "bin/berth-agent extension update",
  "enableCommand": "bin/berth-agent extension enable",
  "disableCommand": "bin/berth-agent extension disable",
  "rebootAfterInstall": false, "reportHeartbeat": true, "updateMode": "UpdateWithInstall"}}]`)

// Guest is one VM's guest agent with its files under Root.
type Guest struct {
	t          testing.TB
	Root       string
	LibDir     string // <Root>/var/lib/waagent
	LogDir     string // <Root>/var/log/azure
	Name       string
	Thumbprint string // the VM certificate's, as the goal state names it
	CertFile   string
	KeyFile    string
	manifest   manifest
	env        []string
	timeouts   map[string]time.Duration
}

type manifest struct {
	Install, Uninstall, Update, Enable, Disable string
	UpdateMode                                  string
}

// New lays out the guest agent's folders under a temporary root and
// generates the VM certificate with openssl. It skips the test when
// openssl is missing.
func New(t testing.TB, o Options) *Guest {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not found: the harness encrypts protected settings with it")
	}
	root := t.TempDir()
	g := &Guest{t: t, Root: root, LibDir: filepath.Join(root, "var", "lib", "waagent"), LogDir: filepath.Join(root, "var", "log", "azure"),
		Name: o.Name, env: o.Env, timeouts: map[string]time.Duration{}}
	if g.Name == "" {
		g.Name = "Berth.ContainerHost"
	}
	for k, v := range Timeouts {
		g.timeouts[k] = v
	}
	for k, v := range o.Timeouts {
		g.timeouts[k] = v
	}
	m := o.Manifest
	if m == nil {
		m = DefaultManifest
	}
	var err error
	if g.manifest, err = parseManifest(m); err != nil {
		t.Fatalf("HandlerManifest.json: %v", err)
	}
	if err := os.MkdirAll(g.LibDir, 0o755); err != nil {
		t.Fatal(err)
	}
	g.Thumbprint, g.CertFile, g.KeyFile = g.NewCertificate("vm")
	return g
}

// parseManifest reads the fields WALinuxAgent reads (data[0]).
func parseManifest(data []byte) (manifest, error) {
	var f []struct {
		HandlerManifest struct {
			InstallCommand, UninstallCommand, UpdateCommand, EnableCommand, DisableCommand string
			UpdateMode                                                                     string
		} `json:"handlerManifest"`
	}
	if err := json.Unmarshal(data, &f); err != nil || len(f) == 0 {
		return manifest{}, fmt.Errorf("not a one-element array: %v", err)
	}
	h := f[0].HandlerManifest
	strip := func(s string) string { return strings.TrimPrefix(s, "/") } // issue #1170
	return manifest{Install: strip(h.InstallCommand), Uninstall: strip(h.UninstallCommand), Update: strip(h.UpdateCommand),
		Enable: strip(h.EnableCommand), Disable: strip(h.DisableCommand), UpdateMode: h.UpdateMode}, nil
}

// NewCertificate makes a self-signed RSA certificate with openssl and lays
// it out as WALinuxAgent does: <LibDir>/<THUMBPRINT>.crt and .prv.
func (g *Guest) NewCertificate(cn string) (thumbprint, crt, prv string) {
	g.t.Helper()
	tmp := g.t.TempDir()
	c, k := filepath.Join(tmp, "c.pem"), filepath.Join(tmp, "k.pem")
	g.openssl(nil, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", k, "-out", c, "-subj", "/CN="+cn, "-days", "2")
	pemData, err := os.ReadFile(c)
	if err != nil {
		g.t.Fatal(err)
	}
	block, _ := pem.Decode(pemData)
	sum := sha1.Sum(block.Bytes)
	thumbprint = strings.ToUpper(hex.EncodeToString(sum[:]))
	crt, prv = filepath.Join(g.LibDir, thumbprint+".crt"), filepath.Join(g.LibDir, thumbprint+".prv")
	for _, p := range [][2]string{{c, crt}, {k, prv}} {
		data, err := os.ReadFile(p[0])
		if err != nil {
			g.t.Fatal(err)
		}
		if err := os.WriteFile(p[1], data, 0o600); err != nil {
			g.t.Fatal(err)
		}
	}
	return thumbprint, crt, prv
}

func (g *Guest) openssl(stdin []byte, args ...string) []byte {
	g.t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		g.t.Fatalf("openssl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// Encrypt encrypts plain for a certificate with `openssl cms -encrypt`,
// adding opts (such as -aes256, or -keyopt rsa_padding_mode:oaep), and
// returns the base64 the goal state carries.
func (g *Guest) Encrypt(plain []byte, crt string, opts ...string) string {
	g.t.Helper()
	// -keyopt applies to the -recip before it, so the options follow.
	args := append([]string{"cms", "-encrypt", "-binary", "-outform", "DER", "-recip", crt}, opts...)
	return base64.StdEncoding.EncodeToString(g.openssl(plain, args...))
}

// Handler is one version's folder as the guest agent lays it out.
type Handler struct {
	Version       string
	Dir           string
	ConfigFolder  string
	StatusFolder  string
	HeartbeatFile string
	LogFolder     string
	EventsFolder  string
}

// Handler returns the folders of a version (laid out by Unpack).
func (g *Guest) Handler(version string) Handler {
	dir := filepath.Join(g.LibDir, g.Name+"-"+version)
	logs := filepath.Join(g.LogDir, g.Name)
	return Handler{Version: version, Dir: dir, ConfigFolder: filepath.Join(dir, "config"), StatusFolder: filepath.Join(dir, "status"),
		HeartbeatFile: filepath.Join(dir, "heartbeat.log"), LogFolder: logs, EventsFolder: filepath.Join(logs, "events")}
}

// Unpack lays out a version: the binary under bin/, HandlerManifest.json,
// and the HandlerEnvironment.json the agent writes (create_handler_env),
// with eventsFolder as an agent with ExtensionTelemetryPipeline writes it.
func (g *Guest) Unpack(version, binary string) Handler {
	g.t.Helper()
	h := g.Handler(version)
	for _, d := range []string{filepath.Join(h.Dir, "bin"), h.ConfigFolder, h.StatusFolder, h.EventsFolder} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			g.t.Fatal(err)
		}
	}
	data, err := os.ReadFile(binary)
	if err != nil {
		g.t.Fatal(err)
	}
	name := filepath.Base(strings.Fields(g.manifest.Enable)[0])
	if err := os.WriteFile(filepath.Join(h.Dir, "bin", name), data, 0o755); err != nil {
		g.t.Fatal(err)
	}
	env := []map[string]any{{"name": g.Name, "version": 1.0, "handlerEnvironment": map[string]string{
		"logFolder": h.LogFolder, "configFolder": h.ConfigFolder, "statusFolder": h.StatusFolder,
		"heartbeatFile": h.HeartbeatFile, "eventsFolder": h.EventsFolder, "eventsFolder_preview": h.EventsFolder}}}
	g.writeJSON(filepath.Join(h.Dir, "HandlerEnvironment.json"), env)
	return h
}

func (g *Guest) writeJSON(path string, v any) {
	g.t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		g.t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		g.t.Fatal(err)
	}
}

// WriteSettings writes config/<seq>.settings of a version: public as is,
// protected (when not nil) JSON-encoded and encrypted for the VM
// certificate with openssl's defaults.
func (g *Guest) WriteSettings(version string, seq int, public, protected any) {
	g.t.Helper()
	hs := map[string]any{"publicSettings": public}
	if protected != nil {
		plain, err := json.Marshal(protected)
		if err != nil {
			g.t.Fatal(err)
		}
		hs["protectedSettings"] = g.Encrypt(plain, g.CertFile)
		hs["protectedSettingsCertThumbprint"] = g.Thumbprint
	}
	g.WriteRawSettings(version, seq, mustJSON(g.t, map[string]any{"runtimeSettings": []any{map[string]any{"handlerSettings": hs}}}))
}

// WriteRawSettings writes a settings file's bytes as they are.
func (g *Guest) WriteRawSettings(version string, seq int, data []byte) {
	g.t.Helper()
	if err := os.WriteFile(filepath.Join(g.Handler(version).ConfigFolder, strconv.Itoa(seq)+".settings"), data, 0o600); err != nil {
		g.t.Fatal(err)
	}
}

func mustJSON(t testing.TB, v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Result is one command's run.
type Result struct {
	Command  string
	ExitCode int
	Output   string
	TimedOut bool
	Elapsed  time.Duration
}

// Run runs one manifest command of a version as WALinuxAgent's
// launch_command does: through the shell, in the handler folder, in its
// own process group, with the agent's variables (vars override them), and
// the group SIGKILLed at the command's timeout.
func (g *Guest) Run(ctx context.Context, version, command string, seq int, vars map[string]string) Result {
	g.t.Helper()
	line := map[string]string{"install": g.manifest.Install, "uninstall": g.manifest.Uninstall, "update": g.manifest.Update,
		"enable": g.manifest.Enable, "disable": g.manifest.Disable}[command]
	h := g.Handler(version)
	env := map[string]string{
		"AZURE_GUEST_AGENT_EXTENSION_PATH":               h.Dir,
		"AZURE_GUEST_AGENT_EXTENSION_VERSION":            version,
		"ConfigSequenceNumber":                           strconv.Itoa(seq),
		"AZURE_GUEST_AGENT_WIRE_PROTOCOL_ADDRESS":        "168.63.129.16",
		"AZURE_GUEST_AGENT_EXTENSION_SUPPORTED_FEATURES": `[{"Key":"ExtensionTelemetryPipeline","Value":"1.0"}]`,
		"AZURE_GUEST_AGENT_UNINSTALL_CMD_EXIT_CODE":      NotRun,
		"AZURE_GUEST_AGENT_DISABLE_CMD_EXIT_CODE":        NotRun,
		"AZURE_GUEST_AGENT_UPDATING_FROM_VERSION":        NotRun,
		"VERSION": NotRun,
	}
	for k, v := range vars {
		env[k] = v
	}
	timeout := g.timeouts[command]
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.Command("/bin/sh", "-c", line)
	cmd.Dir = h.Dir
	cmd.Env = append(append(os.Environ(), g.env...), flatten(env)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		g.t.Fatalf("%s: %v", command, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	r := Result{Command: command}
	select {
	case err := <-done:
		r.ExitCode = exitCode(err)
	case <-ctx.Done():
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // os.killpg, as the agent does
		<-done
		r.TimedOut, r.ExitCode = true, -1
	}
	r.Elapsed, r.Output = time.Since(start), out.String()
	return r
}

func flatten(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}
