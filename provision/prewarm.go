package provision

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/internal/statedb"
)

// What was prewarmed is remembered in agent.db, so that a restart does not
// pull again (the bucket and key of the daemon's earlier prewarmer).
const (
	prewarmBucket = "prewarm"
	prewarmKey    = "images"
)

// PrewarmOptions configure the prewarm step.
type PrewarmOptions struct {
	Engine *engine.Manager
	DB     *statedb.DB
	// Images are cache.prewarm.
	Images []string
	// CacheAddr is the cache's host:port to pull through; "" pulls from
	// the registries.
	CacheAddr string
	// Progress shows the pulls on a terminal; nil logs them.
	Progress io.Writer
	Logger   *slog.Logger
	// Retry is the pause after a failed pull before the next one: the
	// daemon runs the plan every few seconds and waits a minute; the
	// one-shot has its own pauses between runs (0).
	Retry time.Duration
}

// prewarmStep pulls cache.prewarm into the engine through the cache.
type prewarmStep struct {
	o       PrewarmOptions
	after   time.Time // after a failure, the next pull
	lastErr error
	now     func() time.Time
}

// Prewarm is the step that pulls cache.prewarm into the engine, once per
// list (and per place the images land): done when agent.db remembers the
// same list pulled.
func Prewarm(o PrewarmOptions) Step {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &prewarmStep{o: o, now: time.Now}
}

func (*prewarmStep) Name() string { return StepPrewarm }

// puller is the engine's puller; the engine must answer.
func (s *prewarmStep) puller(ctx context.Context) (engine.Puller, error) {
	return s.o.Engine.Puller(ctx, engine.PullOptions{CacheAddr: s.o.CacheAddr, Progress: s.o.Progress, Logger: s.o.Logger})
}

func (s *prewarmStep) Check(ctx context.Context) (bool, string, error) {
	if len(s.o.Images) == 0 {
		return true, "no images to prewarm (cache.prewarm is empty)", nil
	}
	pl, err := s.puller(ctx)
	if err != nil {
		return false, "", err
	}
	var done string
	if _, err := s.o.DB.Get(ctx, prewarmBucket, prewarmKey, &done); err != nil {
		return false, "", err
	}
	if done == prewarmMemo(s.o.Images, pl.Target()) {
		return true, fmt.Sprintf("%d images prewarmed", len(s.o.Images)), nil
	}
	return false, "to pull: " + strings.Join(s.o.Images, ", "), nil
}

func (s *prewarmStep) Apply(ctx context.Context) error {
	if now := s.now(); now.Before(s.after) {
		return fmt.Errorf("%w (next pull after %s)", s.lastErr, s.after.Format(time.RFC3339))
	}
	err := s.pull(ctx)
	if err != nil && ctx.Err() == nil {
		s.after, s.lastErr = s.now().Add(s.o.Retry), err
	}
	return err
}

func (s *prewarmStep) pull(ctx context.Context) error {
	pl, err := s.puller(ctx)
	if err != nil {
		return err
	}
	s.o.Logger.Info("prewarming images", "images", s.o.Images)
	if _, err := pl.Pull(ctx, s.o.Images...); err != nil {
		return fmt.Errorf("prewarm %s: %w", strings.Join(s.o.Images, ", "), err)
	}
	s.o.Logger.Info("prewarmed images", "images", s.o.Images)
	return s.o.DB.Put(ctx, prewarmBucket, prewarmKey, prewarmMemo(s.o.Images, pl.Target()))
}

// prewarmMemo is what agent.db remembers of a finished prewarm: the images
// and, where it decides anything, where they landed (containerd keeps images
// per namespace, so settings that move them pull them again).
func prewarmMemo(images []string, target string) string {
	key := strings.Join(images, "\n")
	if target != "" {
		key += "\n" + target
	}
	return key
}
