//go:build !windows

package waagenttest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// maxStatusFileSize is WALinuxAgent's _MAX_STATUS_FILE_SIZE_IN_BYTES.
const maxStatusFileSize = 128 << 10

// Status is a status file as WALinuxAgent's parse_ext_status reads it.
type Status struct {
	Operation string
	Status    string // coerced to error when not one of the four
	Code      int
	Message   string
	Substatus []Substatus
	// Size is the file's size; Oversize is true when the agent would have
	// truncated it (more than 128 KB).
	Size     int
	Oversize bool
}

// Substatus is one substatus entry.
type Substatus struct {
	Name    string
	Status  string
	Code    int
	Message string
}

// Clarification returns the ErrorClarification code, 0 when none.
func (s Status) Clarification() int {
	for _, sub := range s.Substatus {
		if sub.Name == "ErrorClarification" {
			return sub.Code
		}
	}
	return 0
}

var validStatus = map[string]bool{"transitioning": true, "warning": true, "error": true, "success": true}

// ErrNoStatus is returned when the handler wrote no status file; the agent
// then reports transitioning itself.
var ErrNoStatus = errors.New("no status file")

// ReadStatus reads statusFolder/<seq>.status like the agent: a JSON array
// whose first element is used; status required; substatus entries need a
// valid status.
func ReadStatus(statusFolder string, seq int) (Status, error) {
	data, err := os.ReadFile(filepath.Join(statusFolder, strconv.Itoa(seq)+".status"))
	if errors.Is(err, os.ErrNotExist) {
		return Status{}, ErrNoStatus
	}
	if err != nil {
		return Status{}, err
	}
	return ParseStatus(data)
}

// ParseStatus parses a status file's bytes like parse_ext_status.
func ParseStatus(data []byte) (Status, error) {
	var arr []map[string]json.RawMessage
	if err := json.Unmarshal(data, &arr); err != nil {
		return Status{}, fmt.Errorf("StatusFileMalformed: not a JSON array: %w", err)
	}
	if len(arr) == 0 {
		return Status{}, errors.New("StatusFileMalformed: empty array")
	}
	var top struct {
		Operation        string          `json:"operation"`
		Status           *string         `json:"status"`
		Code             int             `json:"code"`
		FormattedMessage *msg            `json:"formattedMessage"`
		Substatus        json.RawMessage `json:"substatus"`
	}
	if err := json.Unmarshal(arr[0]["status"], &top); err != nil || top.Status == nil {
		return Status{}, fmt.Errorf("StatusFileMalformed: status.status missing: %v", err)
	}
	s := Status{Operation: top.Operation, Status: *top.Status, Code: top.Code, Size: len(data), Oversize: len(data) > maxStatusFileSize}
	if !validStatus[s.Status] {
		s.Status = "error"
	}
	if top.FormattedMessage != nil {
		if err := top.FormattedMessage.check(); err != nil {
			return Status{}, err
		}
		s.Message = *top.FormattedMessage.Message
	}
	subs, err := parseSubstatus(top.Substatus)
	if err != nil {
		return Status{}, err
	}
	s.Substatus = subs
	return s, nil
}

type msg struct {
	Lang    *string `json:"lang"`
	Message *string `json:"message"`
}

func (m msg) check() error {
	if m.Lang == nil || m.Message == nil {
		return errors.New("StatusFileMalformed: formattedMessage needs lang and message")
	}
	return nil
}

func parseSubstatus(raw json.RawMessage) ([]Substatus, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil // a null substatus list is tolerated
	}
	var list []struct {
		Name             string `json:"name"`
		Status           string `json:"status"`
		Code             int    `json:"code"`
		FormattedMessage *msg   `json:"formattedMessage"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("StatusFileMalformed: substatus: %w", err)
	}
	out := make([]Substatus, 0, len(list))
	for _, l := range list {
		if !validStatus[l.Status] {
			return nil, fmt.Errorf("StatusFileMalformed: substatus %q has status %q", l.Name, l.Status)
		}
		sub := Substatus{Name: l.Name, Status: l.Status, Code: l.Code}
		if l.FormattedMessage != nil {
			if err := l.FormattedMessage.check(); err != nil {
				return nil, err
			}
			sub.Message = *l.FormattedMessage.Message
		}
		out = append(out, sub)
	}
	return out, nil
}

// WaitStatus polls the status of seq until ok accepts it (the agent reads
// it every goal-state period, 6 s; the harness polls faster).
func WaitStatus(ctx context.Context, statusFolder string, seq int, ok func(Status) bool) (Status, error) {
	var last Status
	var lastErr error
	for {
		s, err := ReadStatus(statusFolder, seq)
		if err == nil && ok(s) {
			return s, nil
		}
		last, lastErr = s, err
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("status of sequence %d not reached (last %+v, %v): %w", seq, last, lastErr, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Heartbeat reads the heartbeat file as collect_heartbeat does: the status
// of json[0].heartbeat, and whether the file is fresh (< 600 s).
func Heartbeat(path string, now time.Time) (status string, fresh bool, err error) {
	info, err := os.Stat(path)
	if err != nil {
		return "", false, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", false, err
	}
	var hb []struct {
		Heartbeat struct {
			Status string `json:"status"`
		} `json:"heartbeat"`
	}
	if err := json.Unmarshal(data, &hb); err != nil || len(hb) == 0 {
		return "", false, fmt.Errorf("heartbeat file malformed: %v", err)
	}
	return hb[0].Heartbeat.Status, now.Sub(info.ModTime()) < 600*time.Second, nil
}

// Events reads the events folder as the telemetry collector does: *.json
// files, each a list of events or one event, within the size limits.
func Events(folder string) ([]map[string]any, error) {
	entries, err := os.ReadDir(folder)
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(folder, e.Name()))
		if err != nil {
			return nil, err
		}
		if len(data) > 4<<20 {
			return nil, fmt.Errorf("%s: over 4 MB", e.Name())
		}
		var list []map[string]any
		if json.Unmarshal(data, &list) != nil {
			var one map[string]any
			if err := json.Unmarshal(data, &one); err != nil {
				return nil, fmt.Errorf("%s: %w", e.Name(), err)
			}
			list = []map[string]any{one}
		}
		out = append(out, list...)
	}
	return out, nil
}
