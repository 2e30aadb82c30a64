package winhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/Microsoft/hcsshim"
	"github.com/Microsoft/hcsshim/hcn"
	"github.com/Microsoft/hcsshim/osversion"
	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
)

// Build returns the host's Windows version from hcsshim's osversion. The
// revision (UBR) comes from the registry and is 0 when it cannot be read.
func Build() (OSVersion, error) {
	v := osversion.Get()
	out := OSVersion{Major: v.MajorVersion, Minor: v.MinorVersion, Build: v.Build}
	if rev, err := osversion.BuildRevision(); err == nil {
		out.Revision = rev
	}
	return out, nil
}

// ContainersFeature returns the state of the Containers feature, from
// `dism /Online /Get-FeatureInfo`.
func ContainersFeature(ctx context.Context) (FeatureState, error) {
	return featureState(ctx, runDISM, FeatureContainers)
}

// Feature returns the state of the named feature (FeatureContainers,
// FeatureHyperV), from `dism /Online /Get-FeatureInfo`.
func Feature(ctx context.Context, name string) (FeatureState, error) {
	return featureState(ctx, runDISM, name)
}

// EnableContainersFeature enables the Containers feature, and Microsoft-
// Hyper-V too when hyperV is true, with `dism /Online /Enable-Feature /All
// /NoRestart`; features already enabled are left alone. rebootNeeded says
// the host must restart before they work: DISM exited with 3010, or a
// feature was already waiting for a reboot. It never restarts the host.
func EnableContainersFeature(ctx context.Context, hyperV bool) (rebootNeeded bool, err error) {
	names := []string{FeatureContainers}
	if hyperV {
		names = append(names, FeatureHyperV)
	}
	return enableFeatures(ctx, runDISM, names)
}

// HCSCheck checks the Host Compute Service: the vmcompute service exists
// and HCS lists its compute systems. The error is ErrNotWindows elsewhere
// and always nil here: a failure is a CheckResult with StatusFail. The
// HCS call takes no context; when ctx ends first the check fails and the
// call finishes in the background.
func HCSCheck(ctx context.Context) (CheckResult, error) {
	st := queryService("vmcompute")
	if st.err != nil || !st.installed {
		return evalHCS(st, nil, nil), nil
	}
	systems, err := callWithContext(ctx, func() ([]ComputeSystem, error) {
		props, err := hcsshim.GetContainers(hcsshim.ComputeSystemQuery{})
		if err != nil {
			return nil, err
		}
		out := make([]ComputeSystem, len(props))
		for i, p := range props {
			out[i] = ComputeSystem{ID: p.ID, Owner: p.Owner, SystemType: p.SystemType, State: p.State}
		}
		return out, nil
	})
	if st.state != "running" {
		// Listing starts vmcompute on demand; report what it is now.
		if now := queryService("vmcompute"); now.err == nil && now.installed {
			st.state = now.state
		}
	}
	return evalHCS(st, systems, err), nil
}

// HNSCheck checks the Host Networking Service by listing its networks
// through hcsshim's hcn. The error is ErrNotWindows elsewhere and always
// nil here: a failure is a CheckResult with StatusFail or StatusWarn.
func HNSCheck(ctx context.Context) (CheckResult, error) {
	networks, err := callWithContext(ctx, func() ([]Network, error) {
		nets, err := hcn.ListNetworks()
		if err != nil {
			return nil, err
		}
		out := make([]Network, len(nets))
		for i, n := range nets {
			out[i] = Network{Name: n.Name, Type: string(n.Type)}
		}
		return out, nil
	})
	return evalHNS(networks, err), nil
}

// runDISM runs %SystemRoot%\System32\dism.exe.
func runDISM(ctx context.Context, args ...string) (uint32, string, error) {
	root := os.Getenv("SystemRoot")
	if root == "" {
		root = `C:\Windows`
	}
	cmd := exec.CommandContext(ctx, filepath.Join(root, "System32", "dism.exe"), args...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out), nil
	case ctx.Err() != nil:
		return 0, string(out), fmt.Errorf("run dism: %w", ctx.Err())
	case errors.As(err, &ee):
		return uint32(ee.ExitCode()), string(out), nil
	default:
		return 0, string(out), fmt.Errorf("run dism: %w", err)
	}
}

// queryService reads a service's state with query rights only.
func queryService(name string) serviceState {
	m, err := windows.OpenSCManager(nil, nil, windows.SC_MANAGER_CONNECT)
	if err != nil {
		return serviceState{err: fmt.Errorf("connect to the service manager: %w", err)}
	}
	defer windows.CloseServiceHandle(m)
	p, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return serviceState{err: err}
	}
	h, err := windows.OpenService(m, p, windows.SERVICE_QUERY_STATUS)
	if errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
		return serviceState{}
	}
	if err != nil {
		return serviceState{err: fmt.Errorf("open service %s: %w", name, err)}
	}
	defer windows.CloseServiceHandle(h)
	var st windows.SERVICE_STATUS
	if err := windows.QueryServiceStatus(h, &st); err != nil {
		return serviceState{err: fmt.Errorf("query service %s: %w", name, err)}
	}
	return serviceState{installed: true, state: stateName(svc.State(st.CurrentState))}
}

func stateName(s svc.State) string {
	switch s {
	case svc.Stopped:
		return "stopped"
	case svc.StartPending:
		return "start-pending"
	case svc.StopPending:
		return "stop-pending"
	case svc.Running:
		return "running"
	case svc.ContinuePending:
		return "continue-pending"
	case svc.PausePending:
		return "pause-pending"
	case svc.Paused:
		return "paused"
	}
	return fmt.Sprintf("state-%d", s)
}
