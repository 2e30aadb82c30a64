package engine

import (
	"context"
	"fmt"

	"github.com/berthhq/berth/engine/winhost"
)

// hostChecks adds what Windows needs besides the engine: HCS (vmcompute)
// must answer and HNS must have its networks.
func hostChecks(ctx context.Context) []HostCheck {
	var out []HostCheck
	for _, c := range []struct {
		name string
		f    func(context.Context) (winhost.CheckResult, error)
	}{{"hcs", winhost.HCSCheck}, {"hns", winhost.HNSCheck}} {
		r, err := c.f(ctx)
		if err != nil {
			out = append(out, HostCheck{Name: c.name, Status: "fail", Message: err.Error()})
			continue
		}
		out = append(out, HostCheck{Name: c.name, Status: string(r.Status), Message: r.Message})
	}
	return out
}

// prerequisites enables the Containers feature before the first engine is
// started. Enabling it needs a reboot, which is not the engine's to make:
// the caller gets ErrRebootRequired and provision decides.
func prerequisites(ctx context.Context) error {
	state, err := winhost.ContainersFeature(ctx)
	if err != nil {
		return fmt.Errorf("check the Windows Containers feature: %w", err)
	}
	switch state {
	case winhost.FeatureEnabled:
		return nil
	case winhost.FeatureEnablePending:
		return fmt.Errorf("the Windows Containers feature is enabled but waits for a reboot: %w", ErrRebootRequired)
	}
	reboot, err := winhost.EnableContainersFeature(ctx, false)
	if err != nil {
		return fmt.Errorf("enable the Windows Containers feature: %w", err)
	}
	if reboot {
		return fmt.Errorf("enabled the Windows Containers feature: %w", ErrRebootRequired)
	}
	return nil
}
