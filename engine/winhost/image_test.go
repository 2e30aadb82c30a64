package winhost

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseOSVersion(t *testing.T) {
	tests := []struct {
		in      string
		want    OSVersion
		wantErr bool
	}{
		{in: "10.0.20348.2227", want: OSVersion{10, 0, 20348, 2227}},
		{in: "10.0.17763", want: OSVersion{10, 0, 17763, 0}},
		{in: " 10.0.26100.1742 ", want: OSVersion{10, 0, 26100, 1742}},
		{in: "", wantErr: true},
		{in: "10.0", wantErr: true},
		{in: "10.0.99999", wantErr: true},
		{in: "10.0.x.1", wantErr: true},
		{in: "10.0.1.2.3", wantErr: true},
	}
	for _, tc := range tests {
		got, err := ParseOSVersion(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseOSVersion(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
	if s := (OSVersion{10, 0, 20348, 2227}).String(); s != "10.0.20348.2227" {
		t.Errorf("String() = %q", s)
	}
}

// servercore is the shape of mcr.microsoft.com/windows/servercore:ltsc*
// style multi-build manifest lists.
var servercore = []Platform{
	{OS: "linux", Architecture: "amd64"},
	{OS: "windows", Architecture: "amd64", OSVersion: "10.0.17763.5329"},
	{OS: "windows", Architecture: "amd64", OSVersion: "10.0.20348.2227"},
	{OS: "windows", Architecture: "amd64", OSVersion: "10.0.20348.2113"},
	{OS: "windows", Architecture: "arm64", OSVersion: "10.0.26100.1742"},
	{OS: "windows", Architecture: "amd64", OSVersion: "10.0.26100.1742"},
	{OS: "windows", Architecture: "amd64"},
}

func TestPickImage(t *testing.T) {
	tests := []struct {
		name      string
		list      []Platform
		host      OSVersion
		arch      string
		wantIndex int
		wantExact bool
		wantIso   Isolation
		wantErr   bool
	}{
		{name: "2022 host, same revision", list: servercore, host: OSVersion{10, 0, 20348, 2113}, wantIndex: 3, wantExact: true, wantIso: IsolationProcess},
		{name: "2022 host, newest revision", list: servercore, host: OSVersion{10, 0, 20348, 2500}, wantIndex: 2, wantExact: true, wantIso: IsolationProcess},
		{name: "2019 host", list: servercore, host: OSVersion{10, 0, 17763, 1}, wantIndex: 1, wantExact: true, wantIso: IsolationProcess},
		{name: "2025 host", list: servercore, host: OSVersion{10, 0, 26100, 2000}, arch: "amd64", wantIndex: 5, wantExact: true, wantIso: IsolationProcess},
		{name: "2025 host arm64", list: servercore, host: OSVersion{10, 0, 26100, 2000}, arch: "arm64", wantIndex: 4, wantExact: true, wantIso: IsolationProcess},
		{
			name: "2025 host, only 2022 and 2019 images: 2022 runs process-isolated",
			list: servercore[:4], host: OSVersion{10, 0, 26100, 1}, wantIndex: 2, wantIso: IsolationProcess,
		},
		{
			name: "23H2 host, 2022 image is compatible",
			list: servercore[:4], host: OSVersion{10, 0, 25398, 1}, wantIndex: 2, wantIso: IsolationProcess,
		},
		{
			name: "2022 host, only 2019 image: Hyper-V",
			list: servercore[:2], host: OSVersion{10, 0, 20348, 1}, wantIndex: 1, wantIso: IsolationHyperV,
		},
		{name: "2019 host, only newer images", list: servercore[2:4], host: OSVersion{10, 0, 17763, 1}, wantErr: true},
		{name: "linux only", list: servercore[:1], host: OSVersion{10, 0, 20348, 1}, wantErr: true},
		{name: "empty list", host: OSVersion{10, 0, 20348, 1}, wantErr: true},
		{name: "other major.minor", list: []Platform{{OS: "windows", Architecture: "amd64", OSVersion: "6.3.9600"}}, host: OSVersion{10, 0, 20348, 1}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PickImage(tc.list, tc.host, tc.arch)
			if tc.wantErr {
				if !errors.Is(err, ErrNoMatchingImage) {
					t.Fatalf("PickImage = %+v, %v; want ErrNoMatchingImage", got, err)
				}
				t.Logf("PickImage: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("PickImage: %v", err)
			}
			want := Choice{Index: tc.wantIndex, Platform: tc.list[tc.wantIndex], ExactBuild: tc.wantExact, Isolation: tc.wantIso}
			want.Version, _ = ParseOSVersion(want.Platform.OSVersion)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("PickImage (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProcessCompatible(t *testing.T) {
	tests := []struct {
		host, image uint16
		want        bool
	}{
		{17763, 17763, true},
		{17763, 14393, false},
		{20348, 17763, false},
		{20348, 20348, true},
		{25398, 20348, true},
		{26100, 20348, true},
		{26100, 25398, true},
		{27000, 20348, false},
		{27000, 26100, true},
		{20348, 26100, false},
	}
	for _, tc := range tests {
		if got := processCompatible(tc.host, tc.image); got != tc.want {
			t.Errorf("processCompatible(%d, %d) = %v; want %v", tc.host, tc.image, got, tc.want)
		}
	}
}
