package logging

import (
	"fmt"
	"io"
	"log/slog"

	"golang.org/x/sys/windows/registry"
	"golang.org/x/sys/windows/svc/eventlog"
)

// openSystemLog opens the Event Log under EventSource. Windows would
// accept an unregistered source and show "the description for Event ID …
// cannot be found" beside every message, so the registration is checked
// first and its absence is an error (the caller then logs to files only).
func openSystemLog(min slog.Level) (slog.Handler, io.Closer, error) {
	key := `SYSTEM\CurrentControlSet\Services\EventLog\Application\` + EventSource
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, key, registry.QUERY_VALUE)
	if err != nil {
		return nil, nil, fmt.Errorf("the Event Log source %s is not registered (HKLM\\%s: %w); `berth-agent service install` or the MSI registers it", EventSource, key, err)
	}
	k.Close()
	l, err := eventlog.Open(EventSource)
	if err != nil {
		return nil, nil, fmt.Errorf("open the Event Log source %s: %w", EventSource, err)
	}
	return newEventHandler(l, min), l, nil
}
