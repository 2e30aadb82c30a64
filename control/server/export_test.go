package server

import (
	"time"

	"github.com/berthhq/berth/control/auth"
)

// SetSlotWait shortens the wait for a report slot and returns the undo.
func SetSlotWait(d time.Duration) func() {
	old := slotWait
	slotWait = d
	return func() { slotWait = old }
}

// SetConnTimeout shortens the connections' read and write timeouts and
// returns the undo.
func SetConnTimeout(d time.Duration) func() {
	old := connTimeout
	connTimeout = d
	return func() { connTimeout = old }
}

// ParseWait is parseWait, for its table test.
var ParseWait = parseWait

// ParseIfNoneMatch is parseIfNoneMatch, for its table test.
var ParseIfNoneMatch = parseIfNoneMatch

// ParseDropHistory is parseDropHistory, for its table test.
var ParseDropHistory = parseDropHistory

// GCRA is gcra, for its table test.
var GCRA = gcra

// IdentityOf is identityOf, as the text its 429 names it by ("" for none).
func IdentityOf(p auth.Principal) string {
	if id := identityOf(p); id != (identity{}) {
		return id.String()
	}
	return ""
}
