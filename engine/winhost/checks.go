package winhost

import (
	"fmt"
	"sort"
	"strings"
)

// ComputeSystem is what HCSCheck learns of one HCS compute system.
type ComputeSystem struct {
	ID         string
	Owner      string // the runtime that created it: docker, containerd-shim-runhcs-v1.exe, …
	SystemType string // Container or VirtualMachine
	State      string
}

// Network is what HNSCheck learns of one HNS network.
type Network struct {
	Name string
	Type string // NAT, Transparent, L2Bridge, Overlay, ICS, …
}

// serviceState is the state of a Windows service (vmcompute) as a check
// saw it.
type serviceState struct {
	installed bool
	state     string // running, stopped, start-pending, …
	err       error  // the service could not be queried
}

// evalHCS judges HCS from the vmcompute service and from listing compute
// systems. vmcompute starts on demand, so "stopped" alone is no fault:
// listing the compute systems starts it, and the listing is the verdict.
func evalHCS(svc serviceState, systems []ComputeSystem, listErr error) CheckResult {
	switch {
	case svc.err != nil:
		return CheckResult{StatusFail, fmt.Sprintf("query the vmcompute service: %v", svc.err)}
	case !svc.installed:
		return CheckResult{StatusFail, "the vmcompute service (Hyper-V Host Compute Service) is not installed: is the Containers feature enabled?"}
	case listErr != nil:
		return CheckResult{StatusFail, fmt.Sprintf("HCS does not answer (vmcompute %s): list compute systems: %v", svc.state, listErr)}
	}
	byState := map[string]int{}
	for _, s := range systems {
		byState[strings.ToLower(s.State)]++
	}
	msg := fmt.Sprintf("HCS answers (vmcompute %s); %d compute systems", svc.state, len(systems))
	if len(byState) > 0 {
		states := make([]string, 0, len(byState))
		for st := range byState {
			states = append(states, st)
		}
		sort.Strings(states)
		for i, st := range states {
			states[i] = fmt.Sprintf("%d %s", byState[st], st)
		}
		msg += " (" + strings.Join(states, ", ") + ")"
	}
	return CheckResult{StatusOK, msg}
}

// evalHNS judges HNS from its list of networks. Docker and the containerd
// NAT CNI need a network of type NAT; Docker creates "nat" when it starts,
// so a missing one is a warning, not a failure.
func evalHNS(networks []Network, listErr error) CheckResult {
	if listErr != nil {
		return CheckResult{StatusFail, fmt.Sprintf("HNS does not answer: list networks: %v", listErr)}
	}
	if len(networks) == 0 {
		return CheckResult{StatusWarn, "HNS answers but has no networks; containers get no network until the engine creates one (Docker makes \"nat\" when it starts)"}
	}
	names := make([]string, len(networks))
	hasNAT := false
	for i, n := range networks {
		names[i] = fmt.Sprintf("%s (%s)", n.Name, n.Type)
		if strings.EqualFold(n.Type, "NAT") {
			hasNAT = true
		}
	}
	sort.Strings(names)
	list := strings.Join(names, ", ")
	if !hasNAT {
		return CheckResult{StatusWarn, fmt.Sprintf("HNS has no NAT network, the default for containers: %d networks: %s", len(networks), list)}
	}
	return CheckResult{StatusOK, fmt.Sprintf("HNS answers; %d networks: %s", len(networks), list)}
}
