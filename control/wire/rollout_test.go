package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const goodSpec = `{"selector": {"pool": "web"}, "kind": "engine", "flavor": "docker",
  "version": "25.0.1", "waves": [1, 10, 50, 100], "bake": "10m",
  "maxFailures": 2, "maxFailurePercent": 5, "rollbackOnHalt": true}`

func TestDecodeRolloutSpecGood(t *testing.T) {
	two, five := 2, 5.0
	for _, c := range []struct {
		name, body string
		want       RolloutSpec
	}{
		{"SPEC's example", goodSpec, RolloutSpec{Selector: map[string]string{"pool": "web"}, Kind: KindEngine, Flavor: "docker",
			Version: "25.0.1", Waves: []float64{1, 10, 50, 100}, Bake: Duration(10 * time.Minute),
			MaxFailures: &two, MaxFailurePercent: &five, RollbackOnHalt: true}},
		{"defaults filled", `{"selector": {"berth.io/ring": "1"}, "kind": "agent", "version": "1.4.0"}`,
			RolloutSpec{Selector: map[string]string{"berth.io/ring": "1"}, Kind: KindAgent, Version: "1.4.0",
				Waves: DefaultWaves, Bake: Duration(DefaultBake)}},
		{"one wave, bounds of bake", `{"selector": {"a": "b"}, "kind": "agent", "version": "1", "waves": [100], "bake": "24h"}`,
			RolloutSpec{Selector: map[string]string{"a": "b"}, Kind: KindAgent, Version: "1", Waves: []float64{100}, Bake: Duration(24 * time.Hour)}},
		{"fractional waves, zero thresholds", `{"selector": {"a": "b"}, "kind": "agent", "version": "1", "waves": [0.5, 33.3, 100], "bake": "1s", "maxFailures": 0, "maxFailurePercent": 0}`,
			RolloutSpec{Selector: map[string]string{"a": "b"}, Kind: KindAgent, Version: "1", Waves: []float64{0.5, 33.3, 100}, Bake: Duration(time.Second),
				MaxFailures: new(int), MaxFailurePercent: new(float64)}},
		{"whitespace around", " \n\t" + goodSpec + "\n\n", RolloutSpec{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := DecodeRolloutSpec(strings.NewReader(c.body))
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if c.want.Kind == "" {
				return
			}
			if d := cmp.Diff(c.want, got); d != "" {
				t.Fatalf("(-want +got):\n%s", d)
			}
		})
	}
}

// TestDecodeRolloutSpecHostile feeds what a careless script or a hostile
// client might send: each is refused as ErrInvalidSpec with a message
// that names the field and what is allowed.
func TestDecodeRolloutSpecHostile(t *testing.T) {
	spec := func(mod func(m map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal([]byte(goodSpec), &m); err != nil {
			t.Fatal(err)
		}
		mod(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	set := func(k string, v any) string { return spec(func(m map[string]any) { m[k] = v }) }
	del := func(k string) string { return spec(func(m map[string]any) { delete(m, k) }) }
	manyLabels := map[string]any{}
	for i := range MaxSelector + 1 {
		manyLabels["k"+strings.Repeat("x", i)] = "v"
	}
	for _, c := range []struct {
		name, body, want string
	}{
		{"empty body", "", "empty body"},
		{"null", "null", "selector: empty"},
		{"array", "[]", "JSON array where a rollout object is expected"},
		{"not JSON", "selector=pool", "invalid character"},
		{"unknown field", set("wavez", []int{100}), `unknown field "wavez"`},
		{"trailing object", goodSpec + "{}", "data after the rollout object"},
		{"trailing garbage", goodSpec + "}", "data after the rollout object"},
		{"huge body", `{"selector": {"a": "` + strings.Repeat("b", MaxSpecBytes) + `"}}`, "body over 65536 bytes"},
		{"no selector", del("selector"), "selector: empty"},
		{"empty selector", set("selector", map[string]any{}), "selector: empty"},
		{"selector of numbers", set("selector", map[string]any{"pool": 1}), "selector"},
		{"empty label value", set("selector", map[string]any{"pool": ""}), "selector[pool]: empty value"},
		{"bad label key", set("selector", map[string]any{"pool web": "x"}), `selector: key "pool web" has ' ' at byte 4`},
		{"label value too long", set("selector", map[string]any{"pool": strings.Repeat("w", MaxShortLen+1)}), "selector[pool]: 257 bytes, over the limit"},
		{"too many labels", set("selector", manyLabels), "over the limit of 16"},
		{"no kind", del("kind"), "kind: missing"},
		{"bad kind", set("kind", "kernel"), `kind: "kernel" is not engine or agent`},
		{"engine without flavor", del("flavor"), "flavor: missing"},
		{"agent with flavor", set("kind", "agent"), "only engine rollouts have a flavor"},
		{"bad flavor", set("flavor", "../docker"), "flavor"},
		{"no version", del("version"), "version: missing"},
		{"version with a slash", set("version", "25.0.1/../../x"), `has '/'`},
		{"version too long", set("version", strings.Repeat("1", MaxVersionLen+1)), "over the limit of 64"},
		{"waves not increasing", set("waves", []float64{10, 10, 100}), "not above wave 1's 10"},
		{"waves decreasing", set("waves", []float64{50, 10, 100}), "strictly increasing"},
		{"wave over 100", set("waves", []float64{10, 150}), "over 100"},
		{"last wave not 100", set("waves", []float64{1, 10, 50}), "must be 100"},
		{"zero wave", set("waves", []float64{0, 100}), "a percentage above 0"},
		{"negative wave", set("waves", []float64{-5, 100}), "a percentage above 0"},
		{"too many waves", set("waves", manyWaves(MaxWaves+1)), "over the limit of 20"},
		{"waves of strings", set("waves", []string{"1%", "100%"}), "waves"},
		{"bake too short", set("bake", "500ms"), "bake: 500ms is outside 1s to 24h"},
		{"bake too long", set("bake", "25h"), "bake: 25h0m0s is outside 1s to 24h"},
		{"negative bake", set("bake", "-10m"), "outside 1s to 24h"},
		{"bake a number", set("bake", 600), "a duration is a string"},
		{"bake not a duration", set("bake", "ten minutes"), `"ten minutes" is not a duration`},
		{"negative maxFailures", set("maxFailures", -1), "maxFailures: -1 is outside"},
		{"maxFailures a fraction", set("maxFailures", 1.5), "maxFailures"},
		{"maxFailurePercent over 100", set("maxFailurePercent", 101), "maxFailurePercent: 101 is outside 0..100"},
		{"maxFailurePercent negative", set("maxFailurePercent", -1), "outside 0..100"},
		{"rollbackOnHalt a string", set("rollbackOnHalt", "yes"), "rollbackOnHalt"},
		{"deep nesting", strings.Repeat("[", 20000), "exceeded max depth"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeRolloutSpec(strings.NewReader(c.body))
			if err == nil {
				t.Fatalf("accepted %s", clipBody(c.body))
			}
			if !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("error %v does not wrap ErrInvalidSpec", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
			if len(err.Error()) > 1024 {
				t.Errorf("error of %d bytes quotes too much of the input", len(err.Error()))
			}
		})
	}
}

func manyWaves(n int) []float64 {
	ws := make([]float64, n)
	for i := range ws {
		ws[i] = 100 * float64(i+1) / float64(n)
	}
	return ws
}

func clipBody(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// TestValidateNaN: a Go caller (the CLI builds a spec from flags) can
// hand Validate what JSON cannot carry.
func TestValidateNaN(t *testing.T) {
	nan := math.NaN()
	for name, s := range map[string]RolloutSpec{
		"NaN wave":              {Waves: []float64{nan, 100}},
		"NaN maxFailurePercent": {MaxFailurePercent: &nan},
		"infinite wave":         {Waves: []float64{10, math.Inf(1)}},
	} {
		s.Selector, s.Kind, s.Version = map[string]string{"a": "b"}, KindAgent, "1"
		if err := s.WithDefaults().Validate(); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: Validate = %v, want ErrInvalidSpec", name, err)
		}
	}
}

func FuzzDecodeRolloutSpec(f *testing.F) {
	f.Add([]byte(goodSpec))
	f.Add([]byte(`{"selector": {"a": "b"}, "kind": "agent", "version": "1"}`))
	f.Add([]byte(`{"selector": {"a": "b"}, "kind": "engine", "flavor": "docker", "version": "1", "waves": [0.1, 100], "bake": "1s"}`))
	f.Add([]byte(`{"waves": [1e308, -0, 100], "bake": "9223372036854775807ns"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := DecodeRolloutSpec(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("error of no known class: %v", err)
			}
			return
		}
		// What was accepted is valid, and survives a round trip unchanged.
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted a spec Validate refuses: %v", err)
		}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("encode an accepted spec: %v", err)
		}
		again, err := DecodeRolloutSpec(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("re-decoding an accepted spec %s: %v", b, err)
		}
		if d := cmp.Diff(s, again); d != "" {
			t.Fatalf("round trip (-first +second):\n%s", d)
		}
		last := s.Waves[len(s.Waves)-1]
		if last != 100 || time.Duration(s.Bake) < MinBake || time.Duration(s.Bake) > MaxBake {
			t.Fatalf("accepted waves %v, bake %s", s.Waves, time.Duration(s.Bake))
		}
	})
}
