package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// Every way a Value can be rendered must show Redacted and never the value,
// its hex or its quoted form.
func TestValueNeverShows(t *testing.T) {
	v := Value("hunter2")
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	log.Info("x", "v", v, "nested", map[string]any{"k": v}, "struct", struct{ V Value }{v})
	js, err := json.Marshal(struct{ V Value }{v})
	if err != nil {
		t.Fatal(err)
	}
	renders := map[string]string{"log": logs.String(), "json": string(js)}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		renders[verb] = fmt.Sprintf(verb, v)
		renders[verb+" struct"] = fmt.Sprintf(verb, struct{ V Value }{v})
	}
	for name, got := range renders {
		if strings.Contains(got, "hunter2") || strings.Contains(strings.ToLower(got), "68756e74657232") {
			t.Errorf("%s shows the secret: %s", name, got)
		}
		if !strings.Contains(got, Redacted) {
			t.Errorf("%s = %s, want %s in it", name, got, Redacted)
		}
	}
	if got := v.Reveal(); got != "hunter2" {
		t.Errorf("Reveal = %q, want hunter2", got)
	}
}
