package extension

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berthhq/berth/agent/config"
	"github.com/berthhq/berth/internal/paths"
)

// HandlerName is the name status files carry.
const HandlerName = "Berth.ContainerHost"

// Variables the guest agent sets (anchors §1.3).
const (
	EnvExtensionVersion = "AZURE_GUEST_AGENT_EXTENSION_VERSION"
	EnvUpdatingFrom     = "AZURE_GUEST_AGENT_UPDATING_FROM_VERSION"
)

// Handler runs the extension commands for one handler folder.
type Handler struct {
	Env Env
	// Version is the extension's version (the guest agent's variable, else
	// the handler folder's name); Env.Version is the file format's.
	Version    string
	ConfigPath string
	// Executable is this binary; enable copies it under <stateDir>/bin.
	Executable string
	Getenv     func(string) string
	Now        func() time.Time
	Log        *slog.Logger
	Services   ServiceFactory
	// Decrypt turns protectedSettings into JSON; default the platform's
	// (the certificate files on Linux, the LocalMachine\My store on Windows).
	Decrypt func(configFolder, thumbprint, b64 string) ([]byte, error)
	Seq     SeqStore
}

// Options are what New needs besides the handler folder.
type Options struct {
	ConfigPath string
	Executable string
	Getenv     func(string) string
	Log        *slog.Logger
	Services   ServiceFactory
}

// New finds HandlerEnvironment.json from the executable's folder and
// returns the handler with the platform's decrypter and sequence store.
func New(ctx context.Context, o Options) (*Handler, error) {
	env, err := FindHandlerEnv(ctx, filepath.Dir(o.Executable))
	if err != nil {
		return nil, err
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	version := handlerVersion(env, o.Getenv(EnvExtensionVersion))
	return &Handler{Env: env, Version: version, ConfigPath: o.ConfigPath, Executable: o.Executable, Getenv: o.Getenv,
		Now: time.Now, Log: o.Log, Services: o.Services, Decrypt: platformDecrypt, Seq: newSeqStore(env, version)}, nil
}

// handlerVersion is the extension version: the guest agent's variable, else
// the folder name (<Publisher.Type>-<version> on Linux, <version> on
// Windows).
func handlerVersion(env Env, fromEnv string) string {
	if fromEnv != "" {
		return fromEnv
	}
	base := filepath.Base(env.Root)
	if env.Name != "" && strings.HasPrefix(base, env.Name+"-") {
		return strings.TrimPrefix(base, env.Name+"-")
	}
	return base
}

// sequence is the sequence number this command works on.
func (h *Handler) sequence() (int, error) {
	files, err := settingsFiles(h.Env.ConfigFolder)
	if err != nil {
		return 0, err
	}
	return PickSequence(h.Getenv(SeqEnv), files)
}

// writeStatus writes a status, logging rather than failing: a status that
// cannot be written must not hide the error it was about.
func (h *Handler) writeStatus(seq int, s Status) {
	if err := WriteStatus(h.Env.StatusFolder, seq, s, h.Now()); err != nil {
		h.Log.Error("cannot write the extension status", "seq", seq, "err", err)
	}
}

// event writes a telemetry event of the handler's own when the guest agent
// gave an events folder; a failure to write one is only logged.
func (h *Handler) event(task, level, msg string, seq int) {
	if h.Env.EventsFolder == "" {
		return
	}
	e := Event{Version: h.Version, TaskName: task, EventLevel: level, Message: msg, OperationId: "seq-" + strconv.Itoa(seq)}
	if err := WriteEvent(h.Env.EventsFolder, e, h.Now()); err != nil {
		h.Log.Debug("extension event not written", "err", err)
	}
}

// Install does nothing on the host: enable does the work, within its own
// time limit, and install must not leave a half-configured host if the
// guest agent never runs enable.
func (h *Handler) Install(ctx context.Context) error {
	h.Log.Info("extension install: nothing to do until enable", "version", h.Version)
	return nil
}

// Enable applies the settings of the current sequence number: the agent's
// config and secrets, the agent service started (restarted only when what
// it runs with changed). An already-applied sequence number changes nothing.
// The status says transitioning until the agent service reports the end of
// provisioning; a failure here writes error with its clarification code.
func (h *Handler) Enable(ctx context.Context) error {
	seq, err := h.sequence()
	if err != nil {
		return err
	}
	if err := h.enable(ctx, seq); err != nil {
		msg := "Berth enable failed: " + err.Error()
		h.writeStatus(seq, NewStatus(OpEnable, StateError, CodeOf(err), msg))
		h.event("enable", LevelError, fmt.Sprintf("%s [%s]", msg, CodeOf(err)), seq)
		return err
	}
	h.event("enable", LevelInformational, fmt.Sprintf("settings of sequence number %d applied", seq), seq)
	return nil
}

func (h *Handler) enable(ctx context.Context, seq int) error {
	applied, ok, err := h.Seq.Get()
	if err != nil {
		return fail(CodeHostWrite, err)
	}
	if ok && applied == seq {
		cfg, err := config.Load(h.ConfigPath)
		if err != nil {
			// Applying again is no cure: the protected settings were removed
			// from the settings file once applied, so the secrets would be
			// lost with them.
			return failf(CodeConfigInvalid, "the settings of sequence number %d were applied, but the agent config they wrote is now unusable: %w; restore it, or apply the settings again under a new sequence number (any change to the extension's settings)", seq, err)
		}
		return h.reenable(ctx, seq, cfg.StateDir())
	}
	h.writeStatus(seq, NewStatus(OpEnable, StateTransitioning, 0, fmt.Sprintf("Berth is applying the settings of sequence number %d", seq)))
	in, err := h.prepare(seq)
	if err != nil {
		return err
	}
	changed, err := h.writeInputs(in, seq)
	if err != nil {
		return err
	}
	msg, err := ensureAgent(ctx, h.Services(h.agentBinary(in.stateDir), h.ConfigPath, in.stateDir), changed)
	if err != nil {
		return err
	}
	if err := h.Seq.Set(seq); err != nil {
		return err
	}
	os.Remove(filepath.Join(in.stateDir, updateFile)) // the update, if any, is complete
	h.reportStarted(seq, in.stateDir, changed, msg)
	h.scrub(seq)
	h.Log.Info("extension enable: settings applied", "seq", seq, "changed", changed, "service", msg)
	return nil
}

// reenable is enable for a sequence number already applied: it leaves the
// config and secrets alone and makes sure the agent runs (after a disable,
// a reboot, or an update that brought a new binary).
func (h *Handler) reenable(ctx context.Context, seq int, stateDir string) error {
	binChanged, err := h.installBinary(stateDir)
	if err != nil {
		return err
	}
	if _, err := writeJSON(filepath.Join(stateDir, StateFile), h.state(seq), 0o644); err != nil {
		return err
	}
	os.Remove(filepath.Join(stateDir, updateFile)) // the update, if any, is complete
	msg, err := ensureAgent(ctx, h.Services(h.agentBinary(stateDir), h.ConfigPath, stateDir), binChanged)
	if err != nil {
		return err
	}
	h.reportStarted(seq, stateDir, binChanged, msg)
	h.scrub(seq)
	h.Log.Info("extension enable: sequence number already applied; nothing changed", "seq", seq, "service", msg)
	return nil
}

func (h *Handler) state(seq int) HandlerState {
	s := stateFor(h.Env, seq)
	s.Version = h.Version
	return s
}

// reportStarted writes enable's own status: when the agent did not have to
// restart and has reported a result before, that result (provisioning is
// not redone); else transitioning, until the agent reports.
func (h *Handler) reportStarted(seq int, stateDir string, restarted bool, serviceMsg string) {
	last, ok := readResult(stateDir)
	if ok && restarted && last.Sequence == seq {
		// The restarted agent was quicker (a host already provisioned ends
		// its plan within a second) and wrote its final status for seq: a
		// transitioning written over it would stay, since the daemon tells
		// the status file only of changes.
		return
	}
	if ok && !restarted {
		st := last.Status
		st.Operation = OpEnable
		h.writeStatus(seq, st)
		return
	}
	h.writeStatus(seq, NewStatus(OpEnable, StateTransitioning, 0,
		fmt.Sprintf("Berth settings of sequence number %d applied; %s; the agent provisions the host and reports here", seq, serviceMsg)))
}

// scrub removes the protected settings from the settings file once applied.
func (h *Handler) scrub(seq int) {
	if _, err := ScrubSettings(SettingsPath(h.Env.ConfigFolder, seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
		h.Log.Warn("cannot remove the protected settings from the settings file", "err", err)
	}
}

// inputs is what enable derived from the settings.
type inputs struct {
	config   []byte
	secrets  []Secret
	stateDir string
}

// prepare reads, decrypts and checks the settings of seq without writing
// anything, so that bad settings leave the host as it was.
func (h *Handler) prepare(seq int) (inputs, error) {
	s, err := ReadSettings(h.Env.ConfigFolder, seq)
	if err != nil {
		return inputs{}, err
	}
	var p Protected
	if s.Protected != "" {
		plain, err := h.Decrypt(h.Env.ConfigFolder, s.Thumbprint, s.Protected)
		if err != nil {
			return inputs{}, fail(CodeDecrypt, err)
		}
		if p, err = ParseProtected(plain); err != nil {
			return inputs{}, err
		}
	}
	stateDir := publicStateDir(s.Public)
	cfgBytes, secrets, err := ComposeConfig(s.Public, p, filepath.Join(stateDir, SecretsDir))
	if err != nil {
		return inputs{}, err
	}
	cfg, err := config.Parse("publicSettings", cfgBytes)
	if err != nil {
		return inputs{}, failf(CodeConfigInvalid, "publicSettings are not a valid agent config (the agent.yaml schema as JSON): %w", err)
	}
	if cfg.StateDir() != stateDir {
		return inputs{}, failf(CodeConfigInvalid, "agent.stateDir %q resolves to %q", stateDir, cfg.StateDir())
	}
	return inputs{config: cfgBytes, secrets: secrets, stateDir: stateDir}, nil
}

// publicStateDir is agent.stateDir from public settings, else the
// platform's; a malformed value is left for the config parse to report.
func publicStateDir(public json.RawMessage) string {
	var v struct {
		Agent struct {
			StateDir string `json:"stateDir"`
		} `json:"agent"`
	}
	if !isNull(public) && json.Unmarshal(public, &v) == nil && v.Agent.StateDir != "" {
		return v.Agent.StateDir
	}
	return paths.StateDir()
}

// writeInputs writes the secrets, the config, the agent binary and the
// handler state, each only when different, and reports whether anything the
// agent runs with changed.
func (h *Handler) writeInputs(in inputs, seq int) (bool, error) {
	secretsChanged, err := WriteSecrets(filepath.Join(in.stateDir, SecretsDir), in.secrets)
	if err != nil {
		return false, err
	}
	cfgChanged, err := writeConfig(h.ConfigPath, in.config)
	if err != nil {
		return false, err
	}
	binChanged, err := h.installBinary(in.stateDir)
	if err != nil {
		return false, err
	}
	if _, err := writeJSON(filepath.Join(in.stateDir, StateFile), h.state(seq), 0o644); err != nil {
		return false, err
	}
	return secretsChanged || cfgChanged || binChanged, nil
}

// Commands are the handler's commands, as HandlerManifest.json names them.
var Commands = []string{"install", "enable", "disable", "uninstall", "update"}

// Run runs one of Commands.
func (h *Handler) Run(ctx context.Context, command string) error {
	switch command {
	case "install":
		return h.Install(ctx)
	case "enable":
		return h.Enable(ctx)
	case "disable":
		return h.Disable(ctx)
	case "uninstall":
		return h.Uninstall(ctx)
	case "update":
		return h.Update(ctx)
	}
	return fmt.Errorf("unknown extension command %q; want one of %s", command, strings.Join(Commands, ", "))
}
