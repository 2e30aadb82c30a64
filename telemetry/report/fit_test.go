package report

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/berthhq/berth/telemetry"

	"github.com/berthhq/berth/internal/clip"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/berthhq/berth/control/wire"
)

func errorsAs(err error, target any) bool { return errors.As(err, target) }

func TestNameLimitIsTheWires(t *testing.T) {
	if telemetry.MaxNameLen != wire.MaxIDLen {
		t.Fatalf("telemetry.MaxNameLen = %d, wire.MaxIDLen = %d: names would be cut to other lengths than control accepts", telemetry.MaxNameLen, wire.MaxIDLen)
	}
}

func TestClipString(t *testing.T) {
	tests := []struct {
		in    string
		limit int
	}{
		{"short", 10},
		{strings.Repeat("é", 100), 51},
		{"bad \xff utf8", 100},
		{strings.Repeat("x", 5000), wire.MaxMessageLen},
	}
	for _, tt := range tests {
		got := clip.String(tt.in, tt.limit)
		if len(got) > tt.limit || !utf8.ValidString(got) {
			t.Errorf("clip.String(%.20q, %d) = %.20q (%d bytes)", tt.in, tt.limit, got, len(got))
		}
	}
}

// A heartbeat over every limit is fitted into one the wire accepts.
func TestFitHeartbeat(t *testing.T) {
	hb := wire.Heartbeat{State: "Healthy", Cache: map[string]float64{"nan": math.NaN(), "hits.blob:a/b": 3}, Labels: map[string]string{"ok/key": strings.Repeat("v", 500), "bad key": "x"}}
	for i := range 100 {
		hb.Checks = append(hb.Checks, wire.Check{Name: "check number " + string(rune('a'+i%26)), Status: "ok", Message: strings.Repeat("m", 5000), Time: time.Unix(1, 0)})
	}
	for i := range 200 {
		hb.Cache["figure."+strings.Repeat("f", i%50)+string(rune('a'+i%26))+strings.Repeat("z", i/26)] = float64(i)
	}
	hb.IntervalSeconds = 1 << 40
	fitHeartbeat(&hb)
	rec := wire.Record{Seq: 1, Kind: wire.KindHeartbeat, Time: time.Now(), Heartbeat: &hb}
	if err := rec.Validate(time.Now()); err != nil {
		t.Fatalf("fitted heartbeat is refused: %v", err)
	}
	if _, ok := hb.Labels["bad key"]; ok {
		t.Error("a label with a bad key was kept")
	}
}

func TestFitEvent(t *testing.T) {
	e := wire.Event{Kind: "engine.failed", Message: strings.Repeat("\xff", 5000), Fields: map[string]string{}}
	for i := range 50 {
		e.Fields[string(rune('a'+i%26))+strings.Repeat("k", i)] = strings.Repeat("v", 2000)
	}
	fitEvent(&e)
	rec := wire.Record{Seq: 1, Kind: wire.KindEvent, Time: time.Now(), Event: &e}
	if err := rec.Validate(time.Now()); err != nil {
		t.Fatalf("fitted event is refused: %v", err)
	}
}

// credential records what azidentity would be asked.
type credential struct{ got []policy.TokenRequestOptions }

func (c *credential) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.got = append(c.got, o)
	return azcore.AccessToken{Token: "t", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func TestAzureTokenScope(t *testing.T) {
	tests := []struct{ audience, scope string }{
		{"api://berth-control", "api://berth-control/.default"},
		{"api://berth-control/", "api://berth-control/.default"},
		{"api://berth-control/.default", "api://berth-control/.default"},
		{"https://control.example.com", "https://control.example.com/.default"},
	}
	for _, tt := range tests {
		cred := &credential{}
		a, err := NewAzureToken(cred, tt.audience)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Token(context.Background(), false); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Token(context.Background(), true); err != nil {
			t.Fatal(err)
		}
		if got := cred.got[0].Scopes; len(got) != 1 || got[0] != tt.scope {
			t.Errorf("audience %q: scopes %v, want [%s]", tt.audience, got, tt.scope)
		}
		if cred.got[0].Claims != "" || cred.got[1].Claims == "" {
			t.Errorf("claims = %q then %q; want none, then some to skip the cache", cred.got[0].Claims, cred.got[1].Claims)
		}
	}
	if _, err := NewAzureToken(&credential{}, " "); err == nil || !strings.Contains(err.Error(), "control.audience") {
		t.Errorf("empty audience: err = %v", err)
	}
	// The real managed identity credential builds without touching the
	// network; getting a token is left to the fake-Entra tests.
	if _, err := NewManagedIdentity("api://berth-control", "00000000-0000-0000-0000-000000000001", nil); err != nil {
		t.Errorf("NewManagedIdentity: %v", err)
	}
}

func TestJitter(t *testing.T) {
	for _, lo := range []time.Duration{time.Millisecond, time.Second, time.Minute} {
		for attempt := range 70 {
			d := jitter(lo, time.Minute, attempt)
			if d < lo || d > time.Minute {
				t.Fatalf("jitter(%s, attempt %d) = %s, outside %s..1m", lo, attempt, d, lo)
			}
		}
	}
}

func TestRetryAfterParse(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		h    string
		want time.Duration
	}{
		{"", 0},
		{"5", 5 * time.Second},
		{"-3", 0},
		{"99999999999999", 86400 * time.Second},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"soon", 0},
	}
	for _, tt := range tests {
		if got := retryAfter(tt.h, now); got != tt.want {
			t.Errorf("retryAfter(%q) = %s, want %s", tt.h, got, tt.want)
		}
	}
}
