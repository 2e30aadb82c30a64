package store

import (
	"encoding/base64"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/control/wire"
)

// The steps of planHosts, each as a got/want table; TestPlanHosts checks
// them together.

func TestOrderOf(t *testing.T) {
	for _, c := range []struct {
		name  string
		sort  string
		limit int
		want  hostOrder
		err   string
	}{
		{"defaults", "", 0, hostOrder{sort: "id", key: "id", limit: wire.DefaultLimit}, ""},
		{"reversed", "-lastReport", 7, hostOrder{sort: "-lastReport", key: "lastReport", desc: true, limit: 7}, ""},
		{"largest page", "state", wire.MaxLimit, hostOrder{sort: "state", key: "state", limit: wire.MaxLimit}, ""},
		{"unknown sort", "size", 0, hostOrder{}, `sort "size": want one of id, state`},
		{"reversed unknown sort", "-size", 0, hostOrder{}, `sort "-size"`},
		{"sort named before limit", "size", -1, hostOrder{}, `sort "size"`},
		{"negative limit", "id", -1, hostOrder{}, "limit -1: want 1..1000 (0 for 100)"},
		{"limit too large", "", wire.MaxLimit + 1, hostOrder{}, "limit 1001"},
	} {
		got, err := orderOf(c.sort, c.limit)
		if !wantBadFilter(t, c.name+": orderOf", err, c.err) {
			continue
		}
		if diff := cmp.Diff(c.want, got, cmp.AllowUnexported(hostOrder{})); diff != "" {
			t.Errorf("%s: orderOf (-want +got):\n%s", c.name, diff)
		}
	}
}

// wantBadFilter checks a step's error: none when want is "", else
// ErrBadFilter saying want. It reports whether the step succeeded as
// wanted, so its result is worth comparing.
func wantBadFilter(t *testing.T, step string, err error, want string) bool {
	t.Helper()
	switch {
	case want != "" && (!errors.Is(err, ErrBadFilter) || !contains(err, want)):
		t.Errorf("%s = %v, want ErrBadFilter saying %q", step, err, want)
	case want == "" && err != nil:
		t.Errorf("%s: %v", step, err)
	}
	return want == "" && err == nil
}

// planArgs is what a step wrote and the arguments it bound.
type planArgs struct {
	SQL  []string
	Args []any
}

func TestKeyExpr(t *testing.T) {
	stateSQL := "(CASE WHEN h.last_report_ms + 3 * h.interval_ms < $2 THEN 'Stale' ELSE h.state END)"
	for _, c := range []struct {
		key  string
		want planArgs
	}{
		{"id", planArgs{[]string{"h.id"}, []any{"x"}}},
		{"engineVersion", planArgs{[]string{"h.engine_version"}, []any{"x"}}},
		{"agentVersion", planArgs{[]string{"h.agent_version"}, []any{"x"}}},
		{"lastReport", planArgs{[]string{"h.last_report_ms"}, []any{"x"}}},
		// Only the effective state binds now.
		{"state", planArgs{[]string{stateSQL}, []any{"x", int64(9)}}},
	} {
		a := &sqlArgs{now: 9}
		a.add("x")
		got := planArgs{[]string{hostOrder{key: c.key}.keyExpr(a)}, a.vals}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%s: keyExpr (-want +got):\n%s", c.key, diff)
		}
	}
}

func TestSQLArgs(t *testing.T) {
	for _, c := range []struct {
		name  string
		steps []string // "now" binds the current time, anything else itself
		want  planArgs
	}{
		{"none", nil, planArgs{}},
		{"values in order", []string{"a", "b"}, planArgs{[]string{"$1", "$2"}, []any{"a", "b"}}},
		{"now bound once", []string{"now", "a", "now"}, planArgs{[]string{"$1", "$2", "$1"}, []any{int64(5), "a"}}},
		{"now after a value", []string{"a", "now"}, planArgs{[]string{"$1", "$2"}, []any{"a", int64(5)}}},
	} {
		a := &sqlArgs{now: 5}
		var got planArgs
		for _, s := range c.steps {
			if s == "now" {
				got.SQL = append(got.SQL, a.nowArg())
			} else {
				got.SQL = append(got.SQL, a.add(s))
			}
		}
		got.Args = a.vals
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%s: placeholders (-want +got):\n%s", c.name, diff)
		}
	}
}

func TestFilterConds(t *testing.T) {
	stale := "h.last_report_ms + 3 * h.interval_ms < "
	label := func(k, v string) string {
		return "EXISTS (SELECT 1 FROM host_labels l WHERE l.host_id = h.id AND l.key = " + k + " AND l.value = " + v + ")"
	}
	for _, c := range []struct {
		name string
		f    wire.HostFilter
		want planArgs
		err  string
	}{
		{"everything", wire.HostFilter{Sort: "state", Limit: 3}, planArgs{}, ""},
		{"stale", wire.HostFilter{State: "Stale"}, planArgs{[]string{stale + "$1"}, []any{int64(8)}}, ""},
		{"a reported state excludes stale hosts", wire.HostFilter{State: "Degraded"},
			planArgs{[]string{"h.state = $1 AND NOT (" + stale + "$2)"}, []any{"Degraded", int64(8)}}, ""},
		{"versions", wire.HostFilter{EngineVersion: "24.0.7", AgentVersion: "1.2.0"},
			planArgs{[]string{"h.engine_version = $1", "h.agent_version = $2"}, []any{"24.0.7", "1.2.0"}}, ""},
		{"labels in key order", wire.HostFilter{Labels: map[string]string{"ring": "0", "env": "prod"}},
			planArgs{[]string{label("$1", "$2"), label("$3", "$4")}, []any{"env", "prod", "ring", "0"}}, ""},
		{"all of them", wire.HostFilter{State: "Stale", EngineVersion: "e", AgentVersion: "a", Labels: map[string]string{"k": "v"}},
			planArgs{[]string{stale + "$1", "h.engine_version = $2", "h.agent_version = $3", label("$4", "$5")},
				[]any{int64(8), "e", "a", "k", "v"}}, ""},
		{"unknown state", wire.HostFilter{State: "Sleepy", EngineVersion: "e"}, planArgs{},
			`state "Sleepy": want one of Healthy, Degraded, Unhealthy, Initializing, Stale`},
		{"state is case-sensitive", wire.HostFilter{State: "healthy"}, planArgs{}, `state "healthy"`},
	} {
		a := &sqlArgs{now: 8}
		where, err := filterConds(c.f, a)
		if !wantBadFilter(t, c.name+": filterConds", err, c.err) {
			continue
		}
		if diff := cmp.Diff(c.want, planArgs{where, a.vals}); diff != "" {
			t.Errorf("%s: filterConds (-want +got):\n%s", c.name, diff)
		}
	}
}

func TestReadCursor(t *testing.T) {
	byID := cursor{V: 1, Sort: "id", Key: "b", ID: "b"}
	for _, c := range []struct {
		name   string
		cursor string
		sort   string
		want   cursor
		err    string
	}{
		{"first page", "", "-state", cursor{}, ""},
		{"next page", encodeCursor(byID), "id", byID, ""},
		{"not base64", "nope!", "id", cursor{}, `cursor "nope!" is not one this store made`},
		{"not json", base64.RawURLEncoding.EncodeToString([]byte("[]")), "id", cursor{}, "is not one this store made"},
		{"unknown version", encodeCursor(cursor{V: 2, Sort: "id", ID: "b"}), "id", cursor{}, "is not one this store made"},
		{"no id", encodeCursor(cursor{V: 1, Sort: "id"}), "id", cursor{}, "is not one this store made"},
		{"another sort", encodeCursor(byID), "-id", cursor{}, `cursor made for sort "id", not "-id"`},
	} {
		got, err := readCursor(c.cursor, c.sort)
		if !wantBadFilter(t, c.name+": readCursor", err, c.err) {
			continue
		}
		if diff := cmp.Diff(c.want, got, stepOpts); diff != "" {
			t.Errorf("%s: readCursor (-want +got):\n%s", c.name, diff)
		}
	}
}

func TestCursorCond(t *testing.T) {
	for _, c := range []struct {
		name    string
		order   hostOrder
		keyExpr string
		c       cursor
		want    planArgs
	}{
		{"ascending by id", hostOrder{key: "id"}, "h.id", cursor{Key: "b", ID: "b"},
			planArgs{[]string{"(h.id > $2 OR (h.id = $2 AND h.id > $3))"}, []any{"x", "b", "b"}}},
		{"descending by version", hostOrder{key: "engineVersion", desc: true}, "h.engine_version", cursor{Key: "24.0.7", ID: "vm-1"},
			planArgs{[]string{"(h.engine_version < $2 OR (h.engine_version = $2 AND h.id < $3))"}, []any{"x", "24.0.7", "vm-1"}}},
		// The report time is a number: the cursor's Num, not its Key.
		{"by report time", hostOrder{key: "lastReport"}, "h.last_report_ms", cursor{Key: "ignored", Num: 42, ID: "vm-3"},
			planArgs{[]string{"(h.last_report_ms > $2 OR (h.last_report_ms = $2 AND h.id > $3))"}, []any{"x", int64(42), "vm-3"}}},
	} {
		a := &sqlArgs{}
		a.add("x")
		got := planArgs{[]string{cursorCond(c.order, c.keyExpr, c.c, a)}, a.vals}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%s: cursorCond (-want +got):\n%s", c.name, diff)
		}
	}
}

func TestClauses(t *testing.T) {
	for _, c := range []struct {
		name string
		got  string
		want string
	}{
		{"no conditions", whereClause(nil), ""},
		{"one condition", whereClause([]string{"a = $1"}), " WHERE a = $1"},
		{"conditions joined", whereClause([]string{"a", "b", "c"}), " WHERE a AND b AND c"},
		{"ascending", orderClause("h.state", false, "$4"), " ORDER BY h.state ASC, h.id ASC LIMIT $4"},
		{"descending", orderClause("h.id", true, "$1"), " ORDER BY h.id DESC, h.id DESC LIMIT $1"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
}
