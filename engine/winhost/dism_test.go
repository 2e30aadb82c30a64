package winhost

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func sample(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "dism", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseFeatureInfo(t *testing.T) {
	tests := []struct {
		file    string
		want    FeatureState
		wantErr string
	}{
		{file: "info-enabled.txt", want: FeatureEnabled},
		{file: "info-disabled.txt", want: FeatureDisabled},
		{file: "info-enable-pending.txt", want: FeatureEnablePending},
		{file: "info-payload-removed.txt", want: FeatureDisabled},
		{file: "info-hyperv-disable-pending.txt", want: FeatureDisabled},
		{file: "info-unknown-feature.txt", wantErr: "no feature state"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			got, err := parseFeatureInfo(sample(t, tc.file))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrDISM) {
					t.Fatalf("parseFeatureInfo = %q, %v; want an ErrDISM containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("parseFeatureInfo = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := parseFeatureInfo("State : Superseded\n"); err == nil {
		t.Error("an unknown state parsed")
	}
}

func TestParseEnableResult(t *testing.T) {
	tests := []struct {
		name       string
		code       uint32
		file       string
		wantReboot bool
		wantErr    []string // substrings of the error
	}{
		{name: "enabled, reboot", code: 3010, file: "enable-reboot.txt", wantReboot: true},
		{name: "enabled", code: 0, file: "enable-ok.txt"},
		{name: "enabled, zero but restart asked", code: 0, file: "enable-reboot.txt", wantReboot: true},
		{name: "elevation", code: 740, file: "elevation.txt", wantErr: []string{"exit code 740", "administrator", "Elevated permissions are required"}},
		{name: "feature failed", code: 0x800f0922, file: "enable-failed.txt", wantErr: []string{"0x800F0922", "nested virtualization", "A Windows feature could not be enabled"}},
		{name: "unknown feature", code: 0x800f080c, file: "info-unknown-feature.txt", wantErr: []string{"0x800F080C", "unknown on this Windows edition", "Feature name Containerz is unknown."}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reboot, err := parseEnableResult(tc.code, sample(t, tc.file))
			if len(tc.wantErr) > 0 {
				if !errors.Is(err, ErrDISM) {
					t.Fatalf("parseEnableResult = %v, %v; want ErrDISM", reboot, err)
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q lacks %q", err, s)
					}
				}
				if strings.Contains(err.Error(), "dism.log") || strings.Contains(err.Error(), "Deployment Image") {
					t.Errorf("error %q keeps DISM's banner or log line", err)
				}
				return
			}
			if err != nil || reboot != tc.wantReboot {
				t.Errorf("parseEnableResult = %v, %v; want %v", reboot, err, tc.wantReboot)
			}
		})
	}
}

// fakeDISM answers like DISM from a table of feature states and records
// the commands it ran.
type fakeDISM struct {
	t          *testing.T
	states     map[string]string // feature → info sample file
	enableCode uint32
	enableOut  string
	runErr     error
	ran        [][]string
}

func (f *fakeDISM) run(_ context.Context, args ...string) (uint32, string, error) {
	f.ran = append(f.ran, args)
	if f.runErr != nil {
		return 0, "", f.runErr
	}
	for _, a := range args {
		if strings.EqualFold(a, "/Enable-Feature") {
			return f.enableCode, sample(f.t, f.enableOut), nil
		}
	}
	for _, a := range args {
		if name, ok := strings.CutPrefix(a, "/FeatureName:"); ok {
			file, ok := f.states[name]
			if !ok {
				return 0x800f080c, sample(f.t, "info-unknown-feature.txt"), nil
			}
			return 0, sample(f.t, file), nil
		}
	}
	f.t.Fatalf("unexpected dism call %v", args)
	return 0, "", nil
}

func TestEnableFeatures(t *testing.T) {
	info := func(name string) []string { return featureInfoArgs(name) }
	tests := []struct {
		name       string
		states     map[string]string
		features   []string
		enableCode uint32
		enableOut  string
		wantReboot bool
		wantErr    bool
		wantRan    [][]string
	}{
		{
			name:     "already enabled",
			states:   map[string]string{"Containers": "info-enabled.txt"},
			features: []string{"Containers"},
			wantRan:  [][]string{info("Containers")},
		},
		{
			name:       "pending reboot",
			states:     map[string]string{"Containers": "info-enable-pending.txt"},
			features:   []string{"Containers"},
			wantReboot: true,
			wantRan:    [][]string{info("Containers")},
		},
		{
			name:       "enable, 3010",
			states:     map[string]string{"Containers": "info-disabled.txt"},
			features:   []string{"Containers"},
			enableCode: 3010, enableOut: "enable-reboot.txt",
			wantReboot: true,
			wantRan: [][]string{info("Containers"),
				{"/Online", "/English", "/Enable-Feature", "/FeatureName:Containers", "/All", "/NoRestart"}},
		},
		{
			name:       "enable Hyper-V only, containers pending",
			states:     map[string]string{"Containers": "info-enable-pending.txt", "Microsoft-Hyper-V": "info-hyperv-disable-pending.txt"},
			features:   []string{"Containers", "Microsoft-Hyper-V"},
			enableCode: 0, enableOut: "enable-ok.txt",
			wantReboot: true,
			wantRan: [][]string{info("Containers"), info("Microsoft-Hyper-V"),
				{"/Online", "/English", "/Enable-Feature", "/FeatureName:Microsoft-Hyper-V", "/All", "/NoRestart"}},
		},
		{
			name:       "enable both",
			states:     map[string]string{"Containers": "info-disabled.txt", "Microsoft-Hyper-V": "info-payload-removed.txt"},
			features:   []string{"Containers", "Microsoft-Hyper-V"},
			enableCode: 0, enableOut: "enable-ok.txt",
			wantRan: [][]string{info("Containers"), info("Microsoft-Hyper-V"),
				{"/Online", "/English", "/Enable-Feature", "/FeatureName:Containers", "/FeatureName:Microsoft-Hyper-V", "/All", "/NoRestart"}},
		},
		{
			name:       "enable fails",
			states:     map[string]string{"Containers": "info-disabled.txt"},
			features:   []string{"Containers"},
			enableCode: 0x800f0922, enableOut: "enable-failed.txt",
			wantErr: true,
		},
		{
			name:     "unknown feature",
			states:   map[string]string{},
			features: []string{"Containers"},
			wantErr:  true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeDISM{t: t, states: tc.states, enableCode: tc.enableCode, enableOut: tc.enableOut}
			reboot, err := enableFeatures(context.Background(), f.run, tc.features)
			if tc.wantErr {
				if !errors.Is(err, ErrDISM) {
					t.Fatalf("enableFeatures = %v, %v; want ErrDISM", reboot, err)
				}
				t.Logf("enableFeatures: %v", err)
				return
			}
			if err != nil || reboot != tc.wantReboot {
				t.Errorf("enableFeatures = %v, %v; want %v", reboot, err, tc.wantReboot)
			}
			if diff := cmp.Diff(tc.wantRan, f.ran); diff != "" {
				t.Errorf("dism calls (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFeatureStateRunError(t *testing.T) {
	boom := errors.New("exec: dism.exe: file does not exist")
	f := &fakeDISM{t: t, runErr: boom}
	if _, err := featureState(context.Background(), f.run, FeatureContainers); !errors.Is(err, boom) {
		t.Errorf("featureState = %v; want %v", err, boom)
	}
}
