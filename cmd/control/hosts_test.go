package main

import (
	"maps"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/cli"
)

func TestLabelFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want labelFlags
		ok   bool
	}{
		{[]string{"env=prod"}, labelFlags{"env": "prod"}, true},
		{[]string{"env=prod", "ring=0"}, labelFlags{"env": "prod", "ring": "0"}, true},
		{[]string{"env=prod", "env=dev"}, labelFlags{"env": "dev"}, true},
		{[]string{"empty="}, labelFlags{"empty": ""}, true},
		{[]string{"a=b=c"}, labelFlags{"a": "b=c"}, true},
		{[]string{"env"}, labelFlags{}, false},
		{[]string{"=prod"}, labelFlags{}, false},
	} {
		got := labelFlags{}
		var err error
		for _, a := range c.args {
			if err = got.Set(a); err != nil {
				break
			}
		}
		if (err == nil) != c.ok || !maps.Equal(got, c.want) {
			t.Errorf("--label %q: %v, %v; want %v, ok %v", c.args, got, err, c.want, c.ok)
		}
	}
}

func TestListFilter(t *testing.T) {
	for _, c := range []struct {
		name   string
		f      wire.HostFilter
		labels labelFlags
		want   wire.HostFilter
		exit   int
	}{
		{"no flags", wire.HostFilter{}, labelFlags{}, wire.HostFilter{}, cli.ExitOK},
		{"flags pass through", wire.HostFilter{State: "Stale", Sort: "-id", Limit: wire.MaxLimit, Cursor: "c"}, labelFlags{},
			wire.HostFilter{State: "Stale", Sort: "-id", Limit: wire.MaxLimit, Cursor: "c"}, cli.ExitOK},
		{"labels", wire.HostFilter{EngineVersion: "24.0.7"}, labelFlags{"env": "prod"},
			wire.HostFilter{EngineVersion: "24.0.7", Labels: map[string]string{"env": "prod"}}, cli.ExitOK},
		{"negative limit", wire.HostFilter{Limit: -1}, labelFlags{}, wire.HostFilter{}, cli.ExitUsage},
		{"limit too large", wire.HostFilter{Limit: wire.MaxLimit + 1}, labelFlags{"env": "prod"}, wire.HostFilter{}, cli.ExitUsage},
	} {
		got, err := listFilter(c.f, c.labels)
		if exit := cli.ExitCode(err); exit != c.exit {
			t.Errorf("%s: listFilter error %v: exit %d, want %d", c.name, err, exit, c.exit)
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%s: listFilter (-want +got):\n%s", c.name, diff)
		}
	}
}
