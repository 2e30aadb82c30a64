package svc

import "context"

// HostSetup is what `berth-agent service configure` did to the host beyond
// agent.yaml. On Linux it is empty: the .deb and the unit own the rest.
type HostSetup struct {
	// Service is "configured" when the installed service got its recovery
	// actions and delayed start, "not-installed" when there is no service
	// yet, "" where the platform has nothing to do.
	Service string `json:"service,omitempty"`
	// StateDirACL is the SDDL set on the state folder, "" when none was.
	StateDirACL string `json:"stateDirAcl,omitempty"`
	// EventSource is the Event Log source registered, "" when none was.
	EventSource string `json:"eventSource,omitempty"`
}

// StateDirSDDL is the state folder's ACL on Windows: a protected DACL
// (nothing inherited from C:\ProgramData, where Users may read) granting
// full control to SYSTEM and Administrators only, inherited by every file
// and folder below. agent.yaml and agent.db live there.
const StateDirSDDL = "D:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"

// SetupHost does, for the service of cfg and the state folder stateDir,
// what the MSI cannot express with wixl 0.101: on Windows it sets the
// installed service's recovery actions and delayed start (the same
// definition `service install` writes), locks stateDir to SYSTEM and
// Administrators, and registers the Event Log source. Elsewhere it does
// nothing.
func SetupHost(ctx context.Context, cfg Config, stateDir string) (HostSetup, error) {
	return setupHost(ctx, cfg.withDefaults(), stateDir)
}
