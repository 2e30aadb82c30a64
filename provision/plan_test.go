package provision

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gofrs/flock"

	"github.com/berthhq/berth/internal/statedb"
)

// fakeStep is a step whose goal holds after applies Applies (0: holds
// from the start); needReboot makes its first Apply need a reboot.
type fakeStep struct {
	name       string
	applies    int // Applies needed before Check passes
	applied    int
	checked    int
	applyErr   error
	needReboot int // Applies that answer ErrRebootRequired
	onApply    func()
}

func (s *fakeStep) Name() string { return s.name }
func (s *fakeStep) Check(context.Context) (bool, string, error) {
	s.checked++
	if s.applied >= s.applies {
		return true, s.name + " ok", nil
	}
	return false, s.name + " to do", nil
}
func (s *fakeStep) Apply(context.Context) error {
	if s.onApply != nil {
		s.onApply()
	}
	if s.needReboot > 0 {
		s.needReboot--
		return fmt.Errorf("%s: %w", s.name, ErrRebootRequired)
	}
	if s.applyErr != nil {
		return s.applyErr
	}
	s.applied++
	return nil
}

type fakeRebooter struct{ asked []string }

func (r *fakeRebooter) Reboot(_ context.Context, reason string) error {
	r.asked = append(r.asked, reason)
	return nil
}

type recorder struct {
	steps    []string
	finished []Result
}

func (r *recorder) Step(_ context.Context, s StepResult) {
	r.steps = append(r.steps, s.Name+":"+string(s.State))
}
func (r *recorder) Finished(_ context.Context, res Result) { r.finished = append(r.finished, res) }

func openDB(t *testing.T, dir string) *statedb.DB {
	t.Helper()
	db, err := statedb.Open(filepath.Join(dir, "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func newTestPlan(t *testing.T, dir string, steps []Step, mod func(*Options)) *Plan {
	t.Helper()
	o := Options{Steps: steps, DB: openDB(t, dir), StateDir: dir, Rebooter: &fakeRebooter{}, BootID: func() (string, error) { return "boot-1", nil }}
	if mod != nil {
		mod(&o)
	}
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func states(r Result) string {
	var out []string
	for _, s := range r.Steps {
		out = append(out, s.Name+"="+string(s.State))
	}
	return strings.Join(out, " ")
}

// TestPlanChecksBeforeItActs: a step whose goal holds is not applied; a
// failed step stops the plan and names itself; the steps after it stay
// pending.
func TestPlanChecksBeforeItActs(t *testing.T) {
	boom := errors.New("boom")
	a := &fakeStep{name: "a"}
	b := &fakeStep{name: "b", applies: 1}
	c := &fakeStep{name: "c", applies: 1, applyErr: boom}
	d := &fakeStep{name: "d"}
	p := newTestPlan(t, t.TempDir(), []Step{a, b, c, d}, nil)
	r, err := p.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := states(r), "a=done b=done c=failed d=pending"; got != want {
		t.Fatalf("states = %s, want %s", got, want)
	}
	if r.Ready || r.Failed != "c" || !strings.Contains(r.Steps[2].Error, "boom") {
		t.Fatalf("result = %+v", r)
	}
	if a.applied != 0 || b.applied != 1 || d.checked != 0 {
		t.Fatalf("applied a=%d b=%d, d checked %d; want 0, 1, 0", a.applied, b.applied, d.checked)
	}
	if j, _ := p.loadJournal(context.Background()); j.Step != "" {
		t.Fatalf("journal after c failed = %+v; a step that ended is not an interrupted one", j)
	}
}

// TestPlanJournalsBeforeActing: when a step acts, agent.db already names
// it, so that a crash in the step is known at the next start.
func TestPlanJournalsBeforeActing(t *testing.T) {
	dir := t.TempDir()
	var p *Plan
	var seen journal
	b := &fakeStep{name: "b", applies: 1}
	b.onApply = func() {
		var err error
		if seen, err = p.loadJournal(context.Background()); err != nil {
			t.Error(err)
		}
	}
	p = newTestPlan(t, dir, []Step{&fakeStep{name: "a"}, b}, nil)
	if _, err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if seen.Step != "b" {
		t.Fatalf("journal while b acted = %+v, want step b", seen)
	}
	after, _ := p.loadJournal(context.Background())
	if after != (journal{}) {
		t.Fatalf("journal after a ready run = %+v, want empty", after)
	}
}

// TestPlanRebootResume: a step that needs a reboot, with
// provision.allowReboot, journals "reboot at step", asks the Rebooter, and
// stops; a new process after the reboot (new boot id, same agent.db)
// resumes at that step without redoing the ones before, and finishes.
func TestPlanRebootResume(t *testing.T) {
	dir := t.TempDir()
	a := &fakeStep{name: "a", applies: 1}
	b := &fakeStep{name: "b", applies: 1, needReboot: 1}
	svc := &fakeStep{name: StepService, applies: 1}
	c := &fakeStep{name: "c", applies: 1}
	rb := &fakeRebooter{}
	p := newTestPlan(t, dir, []Step{a, b, svc, c}, func(o *Options) { o.AllowReboot, o.Rebooter = true, rb })
	r, err := p.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := states(r), "a=done b=reboot service=pending c=pending"; got != want || !r.RebootPending || r.Ready {
		t.Fatalf("first run: %s (%+v), want %s", got, r, want)
	}
	if len(rb.asked) != 1 || !strings.Contains(rb.asked[0], "b needs a reboot") {
		t.Fatalf("rebooter asked %q, want once for b", rb.asked)
	}
	if svc.applied != 1 {
		t.Fatalf("the service step was applied %d times before the reboot, want 1 (it resumes the plan)", svc.applied)
	}
	j, _ := p.loadJournal(context.Background())
	if j.RebootAt != "b" || j.RebootBoot != "boot-1" {
		t.Fatalf("journal = %+v, want reboot at b in boot-1", j)
	}

	// The host reboots: a new agent process, a new boot.
	a2 := &fakeStep{name: "a", applies: 1}
	rb2 := &fakeRebooter{}
	p2 := newTestPlan(t, dir, []Step{a2, b, svc, c}, func(o *Options) {
		o.AllowReboot, o.Rebooter = true, rb2
		o.BootID = func() (string, error) { return "boot-2", nil }
	})
	r, err = p2.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := states(r), "a=done b=done service=done c=done"; got != want || !r.Ready {
		t.Fatalf("after the reboot: %s, want %s", got, want)
	}
	if a2.checked != 0 || a2.applied != 0 {
		t.Fatalf("step a was checked %d and applied %d times after the reboot; the plan should resume at b", a2.checked, a2.applied)
	}
	if len(rb2.asked) != 0 {
		t.Fatalf("rebooted again: %q", rb2.asked)
	}
	if j, _ := p2.loadJournal(context.Background()); j != (journal{}) {
		t.Fatalf("journal after the plan finished = %+v, want empty", j)
	}
}

// TestPlanRebootRefused: without provision.allowReboot the step fails,
// says what to do, nothing reboots, and the one-shot stops at once.
func TestPlanRebootRefused(t *testing.T) {
	rb := &fakeRebooter{}
	b := &fakeStep{name: "b", applies: 1, needReboot: 5}
	p := newTestPlan(t, t.TempDir(), []Step{b}, func(o *Options) { o.Rebooter = rb })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := p.Until(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Failed != "b" || r.RebootPending || len(rb.asked) != 0 {
		t.Fatalf("result %+v, rebooter %q; want b failed, no reboot", r, rb.asked)
	}
	if msg := r.Steps[0].Error; !strings.Contains(msg, "provision.allowReboot") || !strings.Contains(msg, "reboot") {
		t.Fatalf("error %q does not tell the operator to reboot or set provision.allowReboot", msg)
	}
	if b.needReboot != 4 {
		t.Fatalf("step applied %d times; a refused reboot is final, want 1", 5-b.needReboot)
	}
}

func TestDecideReboot(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		j       journal
		boot    string
		allow   bool
		want    rebootAction
		reboots int
	}{
		{name: "not allowed", allow: false, want: rebootRefused},
		{name: "first ask", allow: true, boot: "b1", want: rebootAsk},
		{name: "asked a moment ago in this boot", allow: true, boot: "b1", j: journal{RebootAt: "s", RebootBoot: "b1", RebootAsked: now.Add(-time.Minute)}, want: rebootWait},
		{name: "asked long ago in this boot", allow: true, boot: "b1", j: journal{RebootAt: "s", RebootBoot: "b1", RebootAsked: now.Add(-time.Hour)}, want: rebootAsk},
		{name: "rebooted and asks again", allow: true, boot: "b2", j: journal{RebootAt: "s", RebootBoot: "b1", RebootAsked: now.Add(-time.Minute)}, want: rebootAsk, reboots: 1},
		{name: "rebooted too often", allow: true, boot: "b5", j: journal{RebootAt: "s", RebootBoot: "b4", Reboots: maxReboots - 1}, want: rebootGiveUp, reboots: maxReboots},
		{name: "another step asked before", allow: true, boot: "b2", j: journal{RebootAt: "other", RebootBoot: "b1", Reboots: 2}, want: rebootAsk},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, j := decideReboot(tc.j, "s", tc.boot, now, tc.allow)
			if got != tc.want || (got != rebootRefused && j.Reboots != tc.reboots) {
				t.Fatalf("decideReboot = %s (reboots %d), want %s (%d)", got, j.Reboots, tc.want, tc.reboots)
			}
			if got == rebootAsk && (j.RebootAt != "s" || j.RebootBoot != tc.boot || !j.RebootAsked.Equal(now)) {
				t.Fatalf("journal to save = %+v", j)
			}
		})
	}
}

// TestObserversSeeChanges: observers are told of each step's moves and of
// results that change, not of every round of the daemon's loop.
func TestObserversSeeChanges(t *testing.T) {
	rec := &recorder{}
	b := &fakeStep{name: "b", applies: 1}
	c := &fakeStep{name: "c", applies: 1, applyErr: errors.New("broken")}
	p := newTestPlan(t, t.TempDir(), []Step{&fakeStep{name: "a"}, b, c}, func(o *Options) { o.Observers = []Observer{rec} })
	for range 3 {
		if _, err := p.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := strings.Join(rec.steps, " "), "a:done b:running b:done c:running c:failed"; got != want {
		t.Fatalf("steps observed = %s, want %s", got, want)
	}
	if len(rec.finished) != 1 || rec.finished[0].Failed != "c" {
		t.Fatalf("finished observed %d times (%+v), want once, c failed", len(rec.finished), rec.finished)
	}
	c.applyErr = nil
	if _, err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(rec.steps[5:], " "), "c:done"; got != want {
		t.Fatalf("steps observed once c works = %s, want %s", got, want)
	}
	if len(rec.finished) != 2 || !rec.finished[1].Ready {
		t.Fatalf("finished observed %+v; want a second, ready result", rec.finished)
	}
	if j, _ := p.loadJournal(context.Background()); j != (journal{}) {
		t.Fatalf("journal after a failed step and a ready run = %+v", j)
	}
}

// TestUntilRetries: the one-shot runs the plan again after a passing
// failure, until it is ready.
func TestUntilRetries(t *testing.T) {
	flaky := &fakeStep{name: "flaky", applies: 1, applyErr: errors.New("not yet")}
	flaky.onApply = func() {
		if flaky.checked > 2 {
			flaky.applyErr = nil
		}
	}
	p := newTestPlan(t, t.TempDir(), []Step{flaky}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := p.Until(ctx)
	if err != nil || !r.Ready {
		t.Fatalf("Until = %+v, %v; want ready", r, err)
	}
}

// TestTryRunLeavesALockedPlan: the daemon skips its round while another
// process (the one-shot) holds the plan's lock.
func TestTryRunLeavesALockedPlan(t *testing.T) {
	dir := t.TempDir()
	fl := flock.New(filepath.Join(dir, LockFile))
	if ok, err := fl.TryLock(); !ok || err != nil {
		t.Fatal(ok, err)
	}
	defer fl.Unlock()
	a := &fakeStep{name: "a"}
	p := newTestPlan(t, dir, []Step{a}, nil)
	_, ran, err := p.TryRun(context.Background())
	if err != nil || ran || a.checked != 0 {
		t.Fatalf("TryRun ran=%v err=%v checked=%d; want it to leave the plan to the lock holder", ran, err, a.checked)
	}
}
