package repocheck

import (
	"strings"
	"testing"
)

// agentConfig is the agent's whole config schema. A subsystem takes its
// own block's type (engine.Config, azstore.Credential, …), never the
// whole schema: only the binary, the composition root and the
// provisioning/extension code see it.
const agentConfig = "github.com/berthhq/berth/agent/config"

// mayImportAgentConfig reports whether the package at path may import
// agent/config.
func mayImportAgentConfig(path string) bool {
	const mod = "github.com/berthhq/berth/"
	rel, ok := strings.CutPrefix(path, mod)
	if !ok {
		return false
	}
	rel = strings.TrimSuffix(rel, "_test") // an external test package
	for _, allowed := range []string{"cmd/agent", "agent", "provision"} {
		if rel == allowed || strings.HasPrefix(rel, allowed+"/") {
			return true
		}
	}
	return false
}

func TestMayImportAgentConfig(t *testing.T) {
	for path, want := range map[string]bool{
		"github.com/berthhq/berth/cmd/agent":           true,
		"github.com/berthhq/berth/agent":               true,
		"github.com/berthhq/berth/agent/config":        true,
		"github.com/berthhq/berth/provision":           true,
		"github.com/berthhq/berth/provision/extension": true,
		"github.com/berthhq/berth/provision_test":      true,
		"github.com/berthhq/berth/cmd/control":         false,
		"github.com/berthhq/berth/agentx":              false,
		"github.com/berthhq/berth/provisioner":         false,
		"github.com/berthhq/berth/engine/release":      false,
		"github.com/berthhq/berth/internal/azstore":    false,
		"github.com/berthhq/berth/imagecache/upstream": false,
		"github.com/berthhq/berth/packaging/tufrepo":   false,
		"github.com/berthhq/berth/imagecache_test":     false,
		"example.com/other/agent":                      false,
	} {
		if got := mayImportAgentConfig(path); got != want {
			t.Errorf("mayImportAgentConfig(%q) = %v, want %v", path, got, want)
		}
	}
}

// TestAgentConfigImporters fails when a package other than cmd/agent,
// agent/... and provision/... imports agent/config, in its code or its
// tests.
func TestAgentConfigImporters(t *testing.T) {
	out := goList(t, "-f", `{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}} {{join .XTestImports " "}}`, "github.com/berthhq/berth/...")
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || mayImportAgentConfig(fields[0]) {
			continue
		}
		for _, imp := range fields[1:] {
			if imp == agentConfig {
				t.Errorf("%s imports %s; take the block's own type from its subsystem instead (only cmd/agent, agent/... and provision/... may see the whole schema)", fields[0], agentConfig)
				break
			}
		}
	}
}
