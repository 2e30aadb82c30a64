// Package rollout is the control endpoint's rollout controller: it moves
// the hosts a label selector picks to a version of the engine or the
// agent in waves, each wave told only once the one before it baked
// healthy, halting (and rolling back if asked) when failures pass a
// threshold; and it answers each host's desired state, from its pins and
// the rollouts that hold it, with long polls woken on any replica.
//
// The decisions are pure functions of a rollout's stored snapshot (see
// step and plan); control/store runs each as one transaction with a
// revision check, so that several serve replicas on one PostgreSQL decide
// each step exactly once.
package rollout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
)

// Errors of Service, checked with errors.Is.
var (
	// ErrNotFound: no such rollout or host.
	ErrNotFound = wire.ErrNotFound
	// ErrInvalid: a request the service refuses as it stands (400): a bad
	// spec, a selector that matches no host, a version not signed for a
	// selected host's platform, a bad pin. It is also wire.ErrInvalidSpec.
	ErrInvalid error = invalidSentinel{}
	// ErrConflict: a request the rollout's state or another rollout
	// forbids (409): an overlapping active rollout of the same kind, the
	// pause of a rollout that is not running, …
	ErrConflict = errors.New("conflict")
)

type invalidSentinel struct{}

func (invalidSentinel) Error() string { return "invalid request" }

// Is makes ErrInvalid match wire.ErrInvalidSpec too.
func (invalidSentinel) Is(target error) bool { return target == wire.ErrInvalidSpec }

// invalidError is an error that is ErrInvalid, with its own message.
type invalidError struct{ err error }

func (e invalidError) Error() string   { return e.err.Error() }
func (e invalidError) Unwrap() []error { return []error{e.err, ErrInvalid} }

func invalidf(format string, args ...any) error {
	return invalidError{fmt.Errorf(format, args...)}
}

// Releases says which packages the release keys signed.
type Releases interface {
	// Signed says whether a package of kind (engine|agent), flavor (""
	// for agent), version is signed for os/arch; nil when it is. The
	// error says what is missing.
	Signed(ctx context.Context, kind, flavor, version, os, arch string) error
}

// Options configure a Service.
type Options struct {
	Store *store.Store
	// Releases checks rollout and pin versions; nil: versions are not
	// checked (logged loudly once).
	Releases Releases
	Logger   *slog.Logger
	Now      func() time.Time
	// Tick is the controller's evaluation period; 0 means 1s.
	Tick time.Duration
	// Holder names this replica in logs.
	Holder string
}

// Service runs rollouts and answers desired states.
type Service struct {
	st       *store.Store
	releases Releases
	log      *slog.Logger
	now      func() time.Time
	tick     time.Duration
	noCheck  sync.Once

	waiters waiters
}

// New returns a Service on o.Store; Run starts its controller.
func New(o Options) *Service {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Tick <= 0 {
		o.Tick = time.Second
	}
	log := o.Logger.With("component", "rollout")
	if o.Holder != "" {
		log = log.With("holder", o.Holder)
	}
	return &Service{st: o.Store, releases: o.Releases, log: log, now: o.Now, tick: o.Tick,
		waiters: waiters{m: map[string]map[*waiter]struct{}{}}}
}

// newID returns a new rollout id: "r-" and 12 random hex digits.
func newID() string {
	b := make([]byte, 6)
	rand.Read(b) // never fails (crypto/rand panics rather)
	return "r-" + hex.EncodeToString(b)
}

// checkSigned checks, when the service has release metadata, that the
// package is signed for every platform of platforms.
func (s *Service) checkSigned(ctx context.Context, kind, flavor, version string, platforms map[[2]string]bool) error {
	if s.releases == nil {
		s.noCheck.Do(func() {
			s.log.Warn("no release metadata given (serve --releases): rollout and pin versions are NOT checked against the signed releases; an agent still refuses a version its own metadata does not sign")
		})
		return nil
	}
	for p := range platforms {
		if err := s.releases.Signed(ctx, kind, flavor, version, p[0], p[1]); err != nil {
			return invalidf("%w: version: %s %s%s is not signed for %s/%s, the platform of a selected host: %v",
				wire.ErrInvalidSpec, kind, flavorPrefix(flavor), version, p[0], p[1], err)
		}
	}
	return nil
}

// platforms are the (os, arch) the hosts report, those that do.
func platforms(hosts []store.Facts) map[[2]string]bool {
	out := map[[2]string]bool{}
	for _, h := range hosts {
		if h.OS != "" && h.Arch != "" {
			out[[2]string{h.OS, h.Arch}] = true
		}
	}
	return out
}
