package winhost

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestEvalHCS(t *testing.T) {
	running := serviceState{installed: true, state: "running"}
	tests := []struct {
		name    string
		svc     serviceState
		systems []ComputeSystem
		listErr error
		want    Status
		msg     string
	}{
		{"no systems", running, nil, nil, StatusOK, "0 compute systems"},
		{"systems", running, []ComputeSystem{
			{ID: "a", State: "Running", SystemType: "Container"},
			{ID: "b", State: "Running", SystemType: "Container"},
			{ID: "c", State: "Stopped", SystemType: "VirtualMachine"},
		}, nil, StatusOK, "3 compute systems (2 running, 1 stopped)"},
		{"demand start", serviceState{installed: true, state: "stopped"}, nil, nil, StatusOK, "vmcompute stopped"},
		{"not installed", serviceState{}, nil, nil, StatusFail, "Containers feature"},
		{"query failed", serviceState{err: errors.New("access denied")}, nil, nil, StatusFail, "access denied"},
		{"hcs fails", running, nil, errors.New("HCS_E_SERVICE_NOT_AVAILABLE"), StatusFail, "HCS_E_SERVICE_NOT_AVAILABLE"},
		{"hcs timeout", running, nil, context.DeadlineExceeded, StatusFail, "deadline exceeded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := evalHCS(tc.svc, tc.systems, tc.listErr)
			if got.Status != tc.want || !strings.Contains(got.Message, tc.msg) {
				t.Errorf("evalHCS = %+v; want %s containing %q", got, tc.want, tc.msg)
			}
		})
	}
}

func TestEvalHNS(t *testing.T) {
	tests := []struct {
		name     string
		networks []Network
		listErr  error
		want     Status
		msg      string
	}{
		{"nat", []Network{{Name: "nat", Type: "NAT"}}, nil, StatusOK, "1 networks: nat (NAT)"},
		{"nat and more", []Network{{Name: "ext", Type: "Transparent"}, {Name: "nat", Type: "nat"}}, nil, StatusOK, "ext (Transparent), nat (nat)"},
		{"none", nil, nil, StatusWarn, "no networks"},
		{"no nat", []Network{{Name: "l2", Type: "L2Bridge"}}, nil, StatusWarn, "no NAT network"},
		{"hns down", nil, errors.New("hnsCall failed in Win32: The RPC server is unavailable"), StatusFail, "RPC server"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := evalHNS(tc.networks, tc.listErr)
			if got.Status != tc.want || !strings.Contains(got.Message, tc.msg) {
				t.Errorf("evalHNS = %+v; want %s containing %q", got, tc.want, tc.msg)
			}
		})
	}
}

func TestCallWithContext(t *testing.T) {
	v, err := callWithContext(context.Background(), func() (int, error) { return 7, nil })
	if v != 7 || err != nil {
		t.Errorf("callWithContext = %v, %v; want 7, nil", v, err)
	}
	release := make(chan struct{})
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = callWithContext(ctx, func() (int, error) { <-release; return 1, nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("callWithContext of a hung call = %v; want DeadlineExceeded", err)
	}
}
