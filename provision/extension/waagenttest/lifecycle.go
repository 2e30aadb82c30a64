//go:build !windows

package waagenttest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// Install unpacks a version and runs its install, then enable for seq, as
// the agent does for a new handler.
func (g *Guest) Install(ctx context.Context, version, binary string, seq int) (install, enable Result) {
	g.t.Helper()
	g.Unpack(version, binary)
	install = g.Run(ctx, version, "install", seq, nil)
	if install.ExitCode != 0 {
		return install, Result{}
	}
	return install, g.Run(ctx, version, "enable", seq, nil)
}

// Update moves from one installed version to another in WALinuxAgent's
// order (anchors §1.2): unpack the new one, disable the old, update the
// new (VERSION, AZURE_GUEST_AGENT_UPDATING_FROM_VERSION,
// AZURE_GUEST_AGENT_DISABLE_CMD_EXIT_CODE), uninstall the old and remove
// its folder, copy the status files, install the new (UpdateWithInstall,
// with AZURE_GUEST_AGENT_UNINSTALL_CMD_EXIT_CODE), enable the new. The
// settings of seq are written to the new folder as the agent does.
func (g *Guest) Update(ctx context.Context, from, to, binary string, seq int, settings []byte) []Result {
	g.t.Helper()
	g.Unpack(to, binary)
	g.WriteRawSettings(to, seq, settings)
	var rs []Result
	disable := g.Run(ctx, from, "disable", seq, nil)
	rs = append(rs, disable)
	update := g.Run(ctx, to, "update", seq, map[string]string{
		"VERSION": to, "AZURE_GUEST_AGENT_UPDATING_FROM_VERSION": from,
		"AZURE_GUEST_AGENT_DISABLE_CMD_EXIT_CODE": strconv.Itoa(disable.ExitCode)})
	rs = append(rs, update)
	if update.ExitCode != 0 {
		return rs
	}
	uninstall := g.Run(ctx, from, "uninstall", seq, nil)
	rs = append(rs, uninstall)
	old := g.Handler(from)
	g.copyStatus(old, g.Handler(to))
	if err := os.RemoveAll(old.Dir); err != nil {
		g.t.Fatal(err)
	}
	if g.manifest.UpdateMode != "UpdateWithoutInstall" {
		rs = append(rs, g.Run(ctx, to, "install", seq, map[string]string{"AZURE_GUEST_AGENT_UNINSTALL_CMD_EXIT_CODE": strconv.Itoa(uninstall.ExitCode)}))
	}
	return append(rs, g.Run(ctx, to, "enable", seq, nil))
}

// copyStatus is copy_status_files: the old version's status files go to
// the new one.
func (g *Guest) copyStatus(from, to Handler) {
	entries, _ := os.ReadDir(from.StatusFolder)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(from.StatusFolder, e.Name()))
		if err == nil {
			os.WriteFile(filepath.Join(to.StatusFolder, e.Name()), data, 0o644)
		}
	}
}

// Build compiles a main package (the test handler, or ./cmd/agent for an
// end-to-end test) to out, for Unpack.
func Build(pkg, out string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, msg)
	}
	return nil
}
