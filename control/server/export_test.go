package server

import "time"

// SetSlotWait shortens the wait for a report slot and returns the undo.
func SetSlotWait(d time.Duration) func() {
	old := slotWait
	slotWait = d
	return func() { slotWait = old }
}
