package server

import "time"

// SetSlotWait shortens the wait for a report slot and returns the undo.
func SetSlotWait(d time.Duration) func() {
	old := slotWait
	slotWait = d
	return func() { slotWait = old }
}

// ParseDropHistory is parseDropHistory, for its table test.
var ParseDropHistory = parseDropHistory

// GCRA is gcra, for its table test.
var GCRA = gcra
