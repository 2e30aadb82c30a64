package provision

import (
	"context"
	"fmt"

	"github.com/berthhq/berth/engine/winhost"
)

func (s prereqStep) facts(ctx context.Context) (WindowsFacts, error) {
	var f WindowsFacts
	var err error
	if f.Containers, err = winhost.Feature(ctx, winhost.FeatureContainers); err != nil {
		return f, fmt.Errorf("check the Windows Containers feature: %w", err)
	}
	if s.hyperV {
		if f.HyperV, err = winhost.Feature(ctx, winhost.FeatureHyperV); err != nil {
			return f, fmt.Errorf("check the Windows Hyper-V feature: %w", err)
		}
	}
	return f, nil
}

func (s prereqStep) check(ctx context.Context) (bool, string, error) {
	f, err := s.facts(ctx)
	if err != nil {
		return false, "", err
	}
	switch judgeWindows(f, s.hyperV) {
	case winReady:
		return true, "Windows features enabled", nil
	case winReboot:
		return false, "", fmt.Errorf("the Windows features are enabled and wait for a reboot: %w", ErrRebootRequired)
	}
	return false, fmt.Sprintf("Windows features to enable (Containers %s, Hyper-V asked: %v)", f.Containers, s.hyperV), nil
}

// apply enables the features with DISM; its exit code 3010 says a reboot
// is required.
func (s prereqStep) apply(ctx context.Context) error {
	reboot, err := winhost.EnableContainersFeature(ctx, s.hyperV)
	if err != nil {
		return fmt.Errorf("enable the Windows features: %w", err)
	}
	if reboot {
		return fmt.Errorf("enabled the Windows features: %w", ErrRebootRequired)
	}
	return nil
}
