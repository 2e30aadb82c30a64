package main

import (
	"fmt"

	"github.com/berthhq/berth/internal/svc"
)

// scriptCondition answers the testscript conditions of cmd/agent's
// scripts: [servicemanager] holds where internal/svc finds one (systemd
// running on Linux, the SCM on Windows).
func scriptCondition(cond string) (bool, error) {
	if cond == "servicemanager" {
		return svc.HasServiceManager(), nil
	}
	return false, fmt.Errorf("unknown condition %q", cond)
}
