package extension

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berthhq/berth/internal/atomicfile"
)

// Limits of the guest agent's event collection (WALinuxAgent
// collect_telemetry_events.py): it drops a message over 3 KB, an event
// over 6 KB and a file over 4 MB, and takes 360 events per extension per
// period. Berth writes one small event per file and stops at
// maxPendingEvents uncollected files, so the agent never drops ours.
const (
	maxEventMessage  = 3 << 10
	maxEventSize     = 6 << 10
	maxPendingEvents = 300
)

// Event levels the guest agent knows.
const (
	LevelInformational = "Informational"
	LevelWarning       = "Warning"
	LevelError         = "Error"
)

// Event is one telemetry event in the guest agent's schema
// (ExtensionEventSchema; azure-extension-platform extensionevents).
type Event struct {
	Version     string `json:"Version"`
	Timestamp   string `json:"Timestamp"`
	TaskName    string `json:"TaskName"`
	EventLevel  string `json:"EventLevel"`
	Message     string `json:"Message"`
	EventPid    string `json:"EventPid"`
	EventTid    string `json:"EventTid"`
	OperationId string `json:"OperationId"`
}

// errEventsFull is returned when the folder already holds maxPendingEvents
// files the guest agent has not collected.
var errEventsFull = errors.New("the events folder is full; the guest agent has not collected it")

// EncodeEvent renders an event file: a JSON array of one event, the
// message cut so the event stays within the guest agent's limits.
func EncodeEvent(e Event) []byte {
	e.TaskName = truncate(e.TaskName, 256)
	e.OperationId = truncate(e.OperationId, 256)
	e.Version = truncate(e.Version, 64)
	e.Message = truncate(e.Message, maxEventMessage)
	for {
		data, _ := json.Marshal([]Event{e})
		// JSON escaping can grow a message (\u0000 is six bytes for one).
		if len(data) <= maxEventSize || e.Message == "" {
			return data
		}
		e.Message = truncate(e.Message, len(e.Message)/2)
	}
}

// WriteEvent writes e as a new file <unix microseconds>.json in folder,
// atomically, unless the folder is full.
func WriteEvent(folder string, e Event, now time.Time) error {
	if err := os.MkdirAll(folder, 0o755); err != nil {
		return fmt.Errorf("write event: %w", err)
	}
	entries, err := os.ReadDir(folder)
	if err != nil {
		return fmt.Errorf("write event: %w", err)
	}
	pending := 0
	for _, en := range entries {
		if strings.HasSuffix(en.Name(), ".json") {
			pending++
		}
	}
	if pending >= maxPendingEvents {
		return errEventsFull
	}
	if e.Timestamp == "" {
		e.Timestamp = now.UTC().Format(time.RFC3339Nano)
	}
	if e.EventPid == "" {
		e.EventPid = strconv.Itoa(os.Getpid())
	}
	if e.EventTid == "" {
		e.EventTid = "0" // Go has no stable thread id
	}
	id := now.UnixMicro()
	for ; ; id++ {
		path := filepath.Join(folder, strconv.FormatInt(id, 10)+".json")
		if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
			return atomicfile.Write(path, EncodeEvent(e), 0o644)
		}
	}
}
