package winhost

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/Microsoft/hcsshim/osversion"
)

// needWindowsCI gates the tests that read the real host: they need an
// administrator (DISM) and the Containers feature, as on the Windows CI
// runners.
func needWindowsCI(t *testing.T) {
	t.Helper()
	if os.Getenv("BERTH_WINDOWS_CI") != "true" {
		t.Skip("reads the host's features and HCS; set BERTH_WINDOWS_CI=true on a Windows container host")
	}
}

func TestHostBuild(t *testing.T) {
	v, err := Build()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("host %s", v)
	if v.Major != 10 || v.Build < osversion.RS1 {
		t.Errorf("Build() = %s; want 10.0 and a build from 2016 on", v)
	}
}

func TestHostChecks(t *testing.T) {
	needWindowsCI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := ContainersFeature(ctx)
	if err != nil {
		t.Fatalf("ContainersFeature: %v", err)
	}
	t.Logf("Containers feature: %s", st)
	for name, check := range map[string]func(context.Context) (CheckResult, error){"HCS": HCSCheck, "HNS": HNSCheck} {
		r, err := check(ctx)
		if err != nil {
			t.Fatalf("%s check: %v", name, err)
		}
		t.Logf("%s: %s: %s", name, r.Status, r.Message)
		if st == FeatureEnabled && r.Status == StatusFail {
			t.Errorf("%s check fails with the Containers feature enabled: %s", name, r.Message)
		}
	}
}
