//go:build !windows

package winhost

import (
	"context"
	"errors"
	"testing"
)

func TestNotWindows(t *testing.T) {
	ctx := context.Background()
	if _, err := Build(); !errors.Is(err, ErrNotWindows) {
		t.Errorf("Build: %v", err)
	}
	if _, err := ContainersFeature(ctx); !errors.Is(err, ErrNotWindows) {
		t.Errorf("ContainersFeature: %v", err)
	}
	if _, err := EnableContainersFeature(ctx, true); !errors.Is(err, ErrNotWindows) {
		t.Errorf("EnableContainersFeature: %v", err)
	}
	if _, err := HCSCheck(ctx); !errors.Is(err, ErrNotWindows) {
		t.Errorf("HCSCheck: %v", err)
	}
	if _, err := HNSCheck(ctx); !errors.Is(err, ErrNotWindows) {
		t.Errorf("HNSCheck: %v", err)
	}
}
