package server_test

import (
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/control/server"
	"github.com/berthhq/berth/control/wire"
)

func TestParseHostFilter(t *testing.T) {
	for _, tc := range []struct {
		query   string
		want    wire.HostFilter
		wantErr string
	}{
		{query: "", want: wire.HostFilter{}},
		{query: "state=unhealthy&engineVersion=24.0.7", want: wire.HostFilter{State: "Unhealthy", EngineVersion: "24.0.7"}},
		{query: "state=STALE", want: wire.HostFilter{State: "Stale"}},
		{query: "engine=24.0.7&agent=1.2", want: wire.HostFilter{EngineVersion: "24.0.7", AgentVersion: "1.2"}},
		{query: "engine_version=24.0.7&agent-version=1.2", want: wire.HostFilter{EngineVersion: "24.0.7", AgentVersion: "1.2"}},
		{query: "label=pool=web&labels=ring=canary", want: wire.HostFilter{Labels: map[string]string{"pool": "web", "ring": "canary"}}},
		{query: "label=k=a=b", want: wire.HostFilter{Labels: map[string]string{"k": "a=b"}}},
		{query: "sort=-lastReport&limit=5&cursor=abc", want: wire.HostFilter{Sort: "-lastReport", Limit: 5, Cursor: "abc"}},
		{query: "engine=1&engineVersion=2", wantErr: "engineVersion given 2 times"},
		{query: "label=nokey", wantErr: "want label=KEY=VALUE"},
		{query: "label==v", wantErr: "want label=KEY=VALUE"},
		{query: "label=k=a&label=k=b", wantErr: "given twice with different values"},
		{query: "limit=0", wantErr: "from 1 to"},
		{query: "limit=1001", wantErr: "from 1 to"},
		{query: "limit=x", wantErr: "from 1 to"},
		{query: "color=red", wantErr: `unknown query parameter "color"`},
	} {
		t.Run(tc.query, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := server.ParseHostFilter(q)
			if tc.wantErr != "" {
				if err == nil || !contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseHostFilter(%q) error = %v, want one saying %q", tc.query, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseHostFilter(%q): %v", tc.query, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseHostFilter(%q) (-want +got):\n%s", tc.query, diff)
			}
		})
	}
}
