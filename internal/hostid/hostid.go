// Package hostid decides the agent's id, the name under which the control
// endpoint knows this host, and describes the host's OS build.
//
// The id is, in order: agent.id from the config when it is set; else the id
// remembered in agent.db by an earlier run; else the Azure VM's vmId from the
// Instance Metadata Service (IMDS); else the machine id (/etc/machine-id on
// Linux, MachineGuid in the registry on Windows); else a random id. A derived
// id is remembered in agent.db, so a host whose IMDS is briefly unreachable at
// boot keeps the id it had instead of flipping between vmId and machine id.
//
// The remembered id is tied to the machine id it was resolved beside: a disk
// cloned into another VM (a golden image made from a host that had run the
// agent) gets a new machine id on first boot, and then the id is resolved
// again rather than shared by every clone.
package hostid

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/berthhq/berth/internal/httpclient"
	"github.com/berthhq/berth/internal/statedb"
)

// IMDSEnv names the environment variable that replaces the IMDS base
// address (http://169.254.169.254), for tests and for hosts that reach IMDS
// through a relay.
const IMDSEnv = "BERTH_IMDS_ENDPOINT"

// DefaultIMDS is the Azure Instance Metadata Service's address.
const DefaultIMDS = "http://169.254.169.254"

// vmIDPath asks IMDS for the VM's unique id as plain text.
const vmIDPath = "/metadata/instance/compute/vmId?api-version=2021-02-01&format=text"

// DefaultIMDSTimeout bounds the whole IMDS lookup: IMDS answers in
// milliseconds on Azure, and off Azure the address is usually black-holed,
// so waiting longer only delays start-up.
const DefaultIMDSTimeout = 2 * time.Second

// MaxLen is the longest id the control endpoint accepts (wire.MaxIDLen).
const MaxLen = 128

// Source says where an id came from.
type Source string

// The sources of an id, in the order they are tried.
const (
	FromConfig    Source = "config"
	FromIMDS      Source = "imds"
	FromMachineID Source = "machine-id"
	FromRandom    Source = "random"
)

// ID is the resolved agent id.
type ID struct {
	Value  string `json:"id"`
	Source Source `json:"source"`
	// Remembered is true when the id was read back from agent.db.
	Remembered bool `json:"-"`
}

// Options tune Resolve. Only Configured and DB matter outside tests.
type Options struct {
	// Configured is agent.id; when set it wins and nothing is looked up.
	Configured string
	// DB remembers a derived id; nil resolves afresh every time.
	DB *statedb.DB
	// IMDS is the base address of IMDS; empty means $BERTH_IMDS_ENDPOINT,
	// else DefaultIMDS.
	IMDS string
	// IMDSTimeout bounds the IMDS lookup (DefaultIMDSTimeout when 0).
	IMDSTimeout time.Duration
	// MachineID reads the platform's machine id; MachineID (this
	// package's function) when nil.
	MachineID func() (string, error)
	Logger    *slog.Logger
}

// remembered is what agent.db keeps under bucket "identity", key "agent".
type remembered struct {
	ID        string `json:"id"`
	Source    Source `json:"source"`
	MachineID string `json:"machineId"`
}

const (
	dbBucket = "identity"
	dbKey    = "agent"
)

// ErrInvalid is wrapped by the errors of Validate.
var ErrInvalid = errors.New("invalid agent id")

// Resolve returns the agent id; see the package comment for the order. Its
// only error is a bad agent.id (wrapping ErrInvalid): IMDS and machine-id
// failures move on to the next source, and an agent.db that cannot be read
// or written is logged and resolved around (the agent must start to say
// what is wrong with it). An id lost with agent.db (a damaged file is
// replaced by an empty one) comes back from IMDS or the machine id; a
// random one does not, which is why agent.id should be set where neither
// exists.
func Resolve(ctx context.Context, o Options) (ID, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "hostid")
	if c := strings.TrimSpace(o.Configured); c != "" {
		if err := Validate(c); err != nil {
			return ID{}, fmt.Errorf("agent.id: %w; fix agent.id in the config, or leave it empty to use the VM id", err)
		}
		return ID{Value: c, Source: FromConfig}, nil
	}
	readMachine := o.MachineID
	if readMachine == nil {
		readMachine = MachineID
	}
	machine, merr := readMachine()
	if merr == nil {
		machine, merr = normalize(machine)
	}
	if merr != nil {
		machine = ""
	}

	if o.DB != nil {
		var rem remembered
		found, err := o.DB.Get(ctx, dbBucket, dbKey, &rem)
		if err != nil {
			// agent.db unusable (its error says why and what to do):
			// the id is resolved afresh, as on a first boot, rather
			// than the agent not starting.
			log.Error("cannot read the remembered agent id; resolving it again", "err", err)
		}
		switch {
		case found && Validate(rem.ID) == nil && rem.MachineID == machine:
			return ID{Value: rem.ID, Source: rem.Source, Remembered: true}, nil
		case found:
			log.Warn("the machine id changed since the agent id was remembered (a cloned disk?); resolving the agent id again",
				"old_id", rem.ID, "old_source", rem.Source)
		}
	}

	var id ID
	vm, err := VMID(ctx, o.IMDS, o.IMDSTimeout)
	switch {
	case err == nil:
		id = ID{Value: vm, Source: FromIMDS}
	case machine != "":
		log.Info("IMDS gave no VM id; using the machine id", "imds_err", err)
		id = ID{Value: machine, Source: FromMachineID}
	default:
		// Neither source answered (a container without /etc/machine-id,
		// say): a random id, remembered below, still names the host
		// stably for as long as agent.db lives.
		log.Warn("neither IMDS nor the machine id gave an id; using a random one (set agent.id to choose it)", "imds_err", err, "machine_id_err", merr)
		var b [16]byte
		_, _ = rand.Read(b[:])
		id = ID{Value: hex.EncodeToString(b[:]), Source: FromRandom}
	}
	if o.DB != nil {
		if err := o.DB.Put(ctx, dbBucket, dbKey, remembered{ID: id.Value, Source: id.Source, MachineID: machine}); err != nil {
			log.Error("cannot remember the agent id; it is resolved again at the next start", "err", err)
		}
	}
	log.Info("agent id resolved", "id", id.Value, "source", id.Source)
	return id, nil
}

// VMID asks IMDS at base (empty: $BERTH_IMDS_ENDPOINT, else DefaultIMDS)
// for the VM's vmId, within timeout (DefaultIMDSTimeout when 0). It never
// goes through a proxy: IMDS is link-local and refuses forwarded requests.
func VMID(ctx context.Context, base string, timeout time.Duration) (string, error) {
	if base == "" {
		base = os.Getenv(IMDSEnv)
	}
	if base == "" {
		base = DefaultIMDS
	}
	if timeout <= 0 {
		timeout = DefaultIMDSTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// A transport of its own, without ProxyFromEnvironment: an
	// HTTP_PROXY set for the registries must not swallow IMDS.
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	hc := httpclient.New(httpclient.Options{RetryMax: 3, WaitMin: 100 * time.Millisecond, WaitMax: 400 * time.Millisecond, Transport: tr})
	url := strings.TrimSuffix(base, "/") + vmIDPath
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("IMDS %s: %w", base, err)
	}
	req.Header.Set("Metadata", "true")
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("IMDS %s: %w", base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if err != nil {
		return "", fmt.Errorf("IMDS %s: read the answer: %w", base, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("IMDS %s answered %s", base, resp.Status)
	}
	id, err := normalize(string(body))
	if err != nil {
		return "", fmt.Errorf("IMDS %s: vmId: %w", base, err)
	}
	return id, nil
}

// normalize makes a derived id (vmId, machine id) comparable: trimmed and
// lower case, since IMDS and the registry spell the same GUID in either
// case. The result is checked against Validate.
func normalize(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if err := Validate(s); err != nil {
		return "", err
	}
	return s, nil
}

// Validate checks the control endpoint's rule for an agent id: 1 to MaxLen
// bytes of letters, digits, '.', '_' and '-', starting with a letter or
// digit. Its errors wrap ErrInvalid and say what is allowed.
func Validate(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrInvalid)
	}
	if len(id) > MaxLen {
		return fmt.Errorf("%w: %d bytes, over the limit of %d", ErrInvalid, len(id), MaxLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			shown := id
			if len(shown) > 64 {
				shown = shown[:64] + "…"
			}
			return fmt.Errorf("%w: %q has %q at byte %d; allowed are letters, digits and . _ - (not first)", ErrInvalid, shown, rune(c), i)
		}
	}
	return nil
}
