package measure

import (
	"testing"
	"time"
)

func TestMedianAndRates(t *testing.T) {
	ds := []time.Duration{3 * time.Second, time.Second, 2 * time.Second}
	if m := Median(ds); m != 2*time.Second {
		t.Errorf("Median = %v", m)
	}
	if ds[0] != 3*time.Second {
		t.Error("Median sorted the caller's slice")
	}
	if r := Rates(4<<20, []time.Duration{time.Second, 2 * time.Second}); r != "[4 2]" {
		t.Errorf("Rates = %s", r)
	}
	if Verdict(true) != "met" || Verdict(false) != "NOT met" {
		t.Error("Verdict")
	}
}
