package extension

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/berthhq/berth/internal/atomicfile"
)

// State is the value of a status file's status field.
type State string

// The four states the guest agent accepts; anything else it coerces to
// error.
const (
	StateTransitioning State = "transitioning"
	StateSuccess       State = "success"
	StateWarning       State = "warning"
	StateError         State = "error"
)

// Operation names the command a status belongs to (azure-extension-platform's
// names).
const (
	OpInstall   = "Install"
	OpEnable    = "Enable"
	OpDisable   = "Disable"
	OpUninstall = "Uninstall"
	OpUpdate    = "Update"
)

// Limits the guest agent puts on a status file (WALinuxAgent
// _MAX_STATUS_FILE_SIZE_IN_BYTES). Staying under them ourselves means the
// agent never truncates, and the JSON is never cut: messages are.
const (
	MaxStatusFileSize  = 128 << 10
	maxTopMessage      = 1 << 10
	maxSubstatusText   = 10 << 10
	truncatedSuffix    = " ... [TRUNCATED]"
	statusFileVersion  = 1.0
	statusFileLanguage = "en"
)

// Message is a status's formattedMessage.
type Message struct {
	Lang    string `json:"lang"`
	Message string `json:"message"`
}

// Substatus is one entry of a status's substatus list: a provisioning step,
// or the ErrorClarification of an error.
type Substatus struct {
	Name             string   `json:"name"`
	Status           State    `json:"status"`
	Code             int      `json:"code"`
	FormattedMessage *Message `json:"formattedMessage,omitempty"`
}

// Status is the status element of a status file.
type Status struct {
	Name                     string      `json:"name,omitempty"`
	Operation                string      `json:"operation,omitempty"`
	ConfigurationAppliedTime string      `json:"configurationAppliedTime,omitempty"`
	Status                   State       `json:"status"`
	Code                     int         `json:"code"`
	FormattedMessage         *Message    `json:"formattedMessage,omitempty"`
	Substatus                []Substatus `json:"substatus"`
}

// statusItem is the one element of the array a status file holds.
type statusItem struct {
	Version      float64 `json:"version"`
	TimestampUTC string  `json:"timestampUTC"`
	Status       Status  `json:"status"`
}

// NewStatus builds a status with its message; code is an ErrorClarification
// code for StateError (0 otherwise), added as the substatus the Azure
// extensions use for it.
func NewStatus(op string, st State, code Code, msg string) Status {
	s := Status{Name: HandlerName, Operation: op, Status: st, FormattedMessage: &Message{Lang: statusFileLanguage, Message: msg}}
	if st == StateError && code != 0 {
		s.Code = int(code)
		s.Substatus = append(s.Substatus, Substatus{Name: "ErrorClarification", Status: StateError, Code: int(code),
			FormattedMessage: &Message{Lang: statusFileLanguage, Message: code.String()}})
	}
	return s
}

// StatusPath returns the status file of a sequence number.
func StatusPath(statusFolder string, seq int) string {
	return filepath.Join(statusFolder, strconv.Itoa(seq)+".status")
}

// EncodeStatus renders the status file: a JSON array of one element, at most
// MaxStatusFileSize bytes. Messages are cut to the guest agent's own limits
// (1 KB on top, 10 KB per substatus field); if that is still too large,
// substatus entries are dropped from the end and the last kept one says so.
// The result is always valid JSON.
func EncodeStatus(s Status, now time.Time) []byte {
	s = boundStatus(s)
	for {
		data, err := json.Marshal([]statusItem{{Version: statusFileVersion, TimestampUTC: now.UTC().Format(time.RFC3339), Status: s}})
		if err != nil {
			// Only strings, numbers and slices: Marshal cannot fail on them.
			panic(fmt.Sprintf("status: %v", err))
		}
		if len(data) <= MaxStatusFileSize || len(s.Substatus) == 0 {
			return data
		}
		dropped := len(s.Substatus)/2 + 1
		s.Substatus = append(s.Substatus[:len(s.Substatus)-dropped:len(s.Substatus)-dropped],
			Substatus{Name: "Truncated", Status: StateWarning, FormattedMessage: &Message{Lang: statusFileLanguage,
				Message: fmt.Sprintf("%d more substatus entries were left out to keep the status within 128 KB", dropped)}})
	}
}

// boundStatus cuts every text to the guest agent's limits.
func boundStatus(s Status) Status {
	s.Name = truncate(s.Name, maxSubstatusText)
	if s.FormattedMessage != nil {
		m := *s.FormattedMessage
		m.Message = truncate(m.Message, maxTopMessage)
		s.FormattedMessage = &m
	}
	subs := make([]Substatus, len(s.Substatus))
	for i, sub := range s.Substatus {
		sub.Name = truncate(sub.Name, maxSubstatusText)
		sub.Status = validState(sub.Status)
		if sub.FormattedMessage != nil {
			m := *sub.FormattedMessage
			m.Message = truncate(m.Message, maxSubstatusText)
			sub.FormattedMessage = &m
		}
		subs[i] = sub
	}
	s.Substatus = subs
	s.Status = validState(s.Status)
	return s
}

// validState is st when the guest agent knows it, else error (what the
// agent would make of it; for a substatus it would refuse the file).
func validState(st State) State {
	switch st {
	case StateTransitioning, StateSuccess, StateWarning, StateError:
		return st
	}
	return StateError
}

// truncate cuts s to at most max bytes (suffix included) on a rune boundary,
// and replaces invalid UTF-8 so that JSON escaping cannot grow it unseen.
func truncate(s string, max int) string {
	if !utf8.ValidString(s) {
		s = string([]rune(s)) // invalid bytes become U+FFFD
	}
	if len(s) <= max {
		return s
	}
	cut := max - len(truncatedSuffix)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncatedSuffix
}

// WriteStatus writes the status file of seq atomically (a temporary file in
// the same folder renamed over it), as every Azure Go extension does, so the
// guest agent never reads half a file.
func WriteStatus(statusFolder string, seq int, s Status, now time.Time) error {
	if err := os.MkdirAll(statusFolder, 0o755); err != nil {
		return fmt.Errorf("write status of sequence %d: %w", seq, err)
	}
	if err := atomicfile.Write(StatusPath(statusFolder, seq), EncodeStatus(s, now), 0o644); err != nil {
		return fmt.Errorf("write status of sequence %d: %w", seq, err)
	}
	return nil
}

// ReadStatus reads a status file back (the agent's observer uses it to keep
// the step list of a run).
func ReadStatus(statusFolder string, seq int) (Status, error) {
	data, err := os.ReadFile(StatusPath(statusFolder, seq))
	if err != nil {
		return Status{}, err
	}
	var items []statusItem
	if err := json.Unmarshal(data, &items); err != nil || len(items) == 0 {
		return Status{}, fmt.Errorf("status file %s is not a status array", StatusPath(statusFolder, seq))
	}
	return items[0].Status, nil
}
