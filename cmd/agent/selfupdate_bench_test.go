//go:build linux

package main

import (
	"context"
	"testing"
	"time"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/provision/selfupdate"
)

// BenchmarkSelfUpdate is issue 11's figure (c): one host, from an agent
// release being published (signed into the repository and published) to
// the new agent reporting Healthy at control, printed with its parts:
// publish; find and stage (metadata refresh, download, verification,
// unpack, hash); switch (the launcher sees the selection and stops the old
// agent); the new agent from its start to control storing its Healthy
// heartbeat. The launcher's gate (Healthy with a report acknowledged,
// seen on its next probe) is printed beside. Here
// `self-update` starts the update at once; through a rollout, the desired
// state's long poll adds its answer time before "find and stage".
func BenchmarkSelfUpdate(b *testing.B) {
	for range b.N {
		r := newSURig(b)
		r.build(su1, "")
		r.build(su2, "")
		r.publish(su1)
		r.startLauncher()
		r.waitReporting(su1, time.Time{}, 60*time.Second)

		t0 := time.Now()
		r.publish(su2)
		published := time.Now()
		if code, out, errOut := r.agent("self-update"); code != 0 {
			b.Fatalf("self-update: exit %d\n%s\n%s", code, out, errOut)
		}
		seen := r.waitReporting(su2, published, 60*time.Second)
		staged := r.waitEvent("agent.update.staged", map[string]string{"to": su2})
		passed := r.waitEvent("agent.update.succeeded", map[string]string{"to": su2})
		run, _, err := selfupdate.LoadRunning(context.Background(), r.db())
		if err != nil || run.Version != su2 {
			b.Fatalf("running %+v, %v", run, err)
		}
		stage := field(b, staged, "took")
		gate := field(b, passed, "took")
		switchT := run.Since.Sub(staged.Time)
		b.Logf("self-update, publish → new agent Healthy at control: %s = publish %s + command start %s + find and stage %s + switch %s + new agent's first Healthy heartbeat stored %s (the launcher's gate passed %s after its start)",
			seen.Sub(t0).Round(time.Millisecond), published.Sub(t0).Round(time.Millisecond),
			(staged.Time.Sub(published) - stage).Round(time.Millisecond), stage, switchT.Round(time.Millisecond),
			seen.Sub(run.Since).Round(time.Millisecond), gate)
		b.ReportMetric(seen.Sub(t0).Seconds(), "s-publish-to-reporting")
		b.ReportMetric(stage.Seconds(), "s-stage")
		b.ReportMetric(gate.Seconds(), "s-gate")
		r.stopLauncher()
	}
}

func field(b *testing.B, e wire.EventRecord, k string) time.Duration {
	d, err := time.ParseDuration(e.Fields[k])
	if err != nil {
		b.Fatalf("event %s field %s=%q: %v", e.Kind, k, e.Fields[k], err)
	}
	return d
}
