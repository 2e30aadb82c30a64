package extension

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/berthhq/berth/internal/atomicfile"
	"github.com/berthhq/berth/provision"
)

// HeartbeatInterval is how often the agent rewrites the heartbeat file; the
// guest agent calls a handler unresponsive after 600 s without one.
const HeartbeatInterval = 60 * time.Second

// Attach returns the observer through which the agent service reports its
// provisioning plan to the guest agent, and the heartbeat loop to run as
// one of its goroutines (it returns when ctx is done). It returns nil, nil,
// nil when the host was not provisioned through the extension (no
// <stateDir>/extension.json).
func Attach(ctx context.Context, stateDir string, log *slog.Logger) (provision.Observer, func(context.Context), error) {
	_, ok, err := ReadHandlerState(stateDir)
	if err != nil {
		return nil, nil, fmt.Errorf("attach to the extension: %w", err)
	}
	if !ok {
		return nil, nil, nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o := &observer{stateDir: stateDir, log: log.With("component", "extension"), now: time.Now, lastEvent: map[string]provision.StepState{}}
	return o, o.heartbeatLoop, nil
}

// observer writes the status file from the plan's steps. It reads
// extension.json on every write: a new sequence number, or a new handler
// version after an update, moves the status without restarting the agent.
type observer struct {
	stateDir string
	log      *slog.Logger
	now      func() time.Time

	mu    sync.Mutex
	steps []provision.StepResult
	// ended is set once a run of the plan ended in this process: later runs
	// (the daemon's loop) no longer flip the status back to transitioning,
	// they only replace it when they end.
	ended     bool
	summary   string
	lastEvent map[string]provision.StepState
}

func (o *observer) Step(ctx context.Context, r provision.StepResult) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.steps = mergeStep(o.steps, r)
	st, ok := o.handlerState()
	if !ok {
		return
	}
	if !o.ended {
		s := NewStatus(OpEnable, StateTransitioning, 0, fmt.Sprintf("Berth is provisioning the host: %s %s", r.Name, r.State))
		s.Substatus = stepSubstatus(o.steps)
		o.write(st, s)
	}
	// Events follow the first run, then only failures: the daemon runs the
	// plan again on its loop, and the guest agent takes 360 events a period.
	if o.lastEvent[r.Name] != r.State && (!o.ended || r.State == provision.Failed) {
		o.lastEvent[r.Name] = r.State
		o.event(st, r.Name, levelOf(r.State), stepText(r))
	}
}

func (o *observer) Finished(ctx context.Context, r provision.Result) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(r.Steps) > 0 {
		o.steps = append([]provision.StepResult(nil), r.Steps...)
	}
	st, ok := o.handlerState()
	if !ok {
		return
	}
	s := FinalStatus(r)
	s.Substatus = append(stepSubstatus(o.steps), s.Substatus...)
	o.write(st, s)
	o.summary = s.FormattedMessage.Message
	if s.Status == StateTransitioning {
		return // a reboot is pending: the work has not ended
	}
	o.ended = true
	if _, err := writeJSON(filepath.Join(o.stateDir, resultFile), lastResult{Sequence: st.Sequence, Status: s}, 0o644); err != nil {
		o.log.Warn("cannot keep the provisioning result", "err", err)
	}
	level := LevelInformational
	if s.Status == StateError {
		level = LevelError
	}
	o.event(st, "provision", level, s.FormattedMessage.Message)
}

// FinalStatus is the status a run of the plan ends with: success when the
// host is ready; transitioning while a reboot is pending (the service
// resumes after it); error with CodeProvision naming the failed step.
func FinalStatus(r provision.Result) Status {
	switch {
	case r.Ready:
		return NewStatus(OpEnable, StateSuccess, 0, "Berth provisioned the host: it is ready")
	case r.RebootPending:
		return NewStatus(OpEnable, StateTransitioning, 0, fmt.Sprintf("Berth is waiting for a reboot before step %s; provisioning resumes after it", r.Failed))
	}
	msg := "Berth provisioning failed"
	if r.Failed != "" {
		msg += " at step " + r.Failed
		for _, s := range r.Steps {
			if s.Name == r.Failed && s.Error != "" {
				msg += ": " + s.Error
			}
		}
	}
	return NewStatus(OpEnable, StateError, CodeProvision, msg)
}

// mergeStep replaces the step of the same name, or appends it.
func mergeStep(steps []provision.StepResult, r provision.StepResult) []provision.StepResult {
	for i := range steps {
		if steps[i].Name == r.Name {
			steps[i] = r
			return steps
		}
	}
	return append(steps, r)
}

// stepSubstatus is one substatus per step.
func stepSubstatus(steps []provision.StepResult) []Substatus {
	out := make([]Substatus, 0, len(steps))
	for _, s := range steps {
		out = append(out, Substatus{Name: s.Name, Status: stateOf(s.State), FormattedMessage: &Message{Lang: statusFileLanguage, Message: stepText(s)}})
	}
	return out
}

func stateOf(s provision.StepState) State {
	switch s {
	case provision.Done:
		return StateSuccess
	case provision.Failed:
		return StateError
	}
	return StateTransitioning
}

func levelOf(s provision.StepState) string {
	switch s {
	case provision.Failed:
		return LevelError
	case provision.Reboot:
		return LevelWarning
	}
	return LevelInformational
}

func stepText(s provision.StepResult) string {
	text := string(s.State)
	if s.Message != "" {
		text += ": " + s.Message
	}
	if s.Error != "" {
		text += ": " + s.Error
	}
	if s.Seconds > 0 {
		text += fmt.Sprintf(" (%.1fs)", s.Seconds)
	}
	return text
}

func (o *observer) handlerState() (HandlerState, bool) {
	st, ok, err := ReadHandlerState(o.stateDir)
	if err != nil || !ok {
		o.log.Warn("extension state unreadable; status not written", "err", err)
		return HandlerState{}, false
	}
	return st, true
}

func (o *observer) write(st HandlerState, s Status) {
	if st.StatusFolder == "" {
		return
	}
	if err := WriteStatus(st.StatusFolder, st.Sequence, s, o.now()); err != nil {
		o.log.Warn("cannot write the extension status", "err", err)
	}
}

func (o *observer) event(st HandlerState, task, level, msg string) {
	if st.EventsFolder == "" {
		return
	}
	e := Event{Version: st.Version, TaskName: task, EventLevel: level, Message: msg, OperationId: "seq-" + strconv.Itoa(st.Sequence)}
	if err := WriteEvent(st.EventsFolder, e, o.now()); err != nil {
		o.log.Debug("extension event not written", "err", err)
	}
}

// heartbeatLoop keeps the heartbeat file fresh until ctx is done.
func (o *observer) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(HeartbeatInterval)
	defer t.Stop()
	for {
		o.heartbeat()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (o *observer) heartbeat() {
	st, ok := o.handlerState()
	if !ok || st.HeartbeatFile == "" {
		return
	}
	o.mu.Lock()
	msg := "Berth agent running; provisioning in progress"
	if o.summary != "" {
		msg = "Berth agent running; " + o.summary
	}
	o.mu.Unlock()
	if err := atomicfile.Write(st.HeartbeatFile, EncodeHeartbeat(msg), 0o644); err != nil {
		o.log.Warn("cannot write the extension heartbeat", "err", err)
	}
}

// EncodeHeartbeat renders the heartbeat file (design-details.md): the agent
// runs, so the handler is ready; the provisioning result is in the status.
func EncodeHeartbeat(msg string) []byte {
	type hb struct {
		Status           string  `json:"status"`
		Code             int     `json:"code"`
		FormattedMessage Message `json:"formattedMessage"`
	}
	data, _ := json.Marshal([]struct {
		Version   float64 `json:"version"`
		Heartbeat hb      `json:"heartbeat"`
	}{{Version: 1.0, Heartbeat: hb{Status: "ready", FormattedMessage: Message{Lang: statusFileLanguage, Message: truncate(msg, maxTopMessage)}}}})
	return data
}
