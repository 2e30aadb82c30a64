package auth

import (
	"strings"
	"testing"
)

func TestParseResourceID(t *testing.T) {
	const sub = "0b1c2d3e-aaaa-4bbb-8ccc-1234567890ab"
	vm := "/subscriptions/" + sub + "/resourcegroups/RG/providers/Microsoft.Compute/virtualMachines/VM-1"
	for _, tt := range []struct{ in, want, wantErr string }{
		{vm, strings.ToLower(vm), ""},
		{"/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/ss/virtualMachines/3",
			"/subscriptions/" + sub + "/resourcegroups/rg/providers/microsoft.compute/virtualmachinescalesets/ss/virtualmachines/3", ""},
		{"", "", "is not /subscriptions"},
		{"/", "", "is not /subscriptions"},
		{vm + "/", "", "is not /subscriptions"},
		{vm + "/extensions", "", "is not /subscriptions"},
		{strings.TrimPrefix(vm, "/"), "", "is not /subscriptions"},
		{"/subscriptions/" + sub + "/resourcegroups/RG/providers/Microsoft.Compute/virtualMachines", "", "is not /subscriptions"},
		{"/tenants/" + sub + "/resourcegroups/RG/providers/Microsoft.Compute/virtualMachines/vm", "", "is not /subscriptions"},
		{"/subscriptions/" + sub + "/resourcegroup/RG/providers/Microsoft.Compute/virtualMachines/vm", "", "is not /subscriptions"},
		{"/subscriptions/" + sub + "/resourcegroups/RG/provider/Microsoft.Compute/virtualMachines/vm", "", "is not /subscriptions"},
		{"/subscriptions/prod/resourcegroups/RG/providers/Microsoft.Compute/virtualMachines/vm", "", "not a GUID"},
		{"/subscriptions/" + sub + "/resourcegroups/../providers/Microsoft.Compute/virtualMachines/vm", "", "dot segment"},
		{"/subscriptions/" + sub + "/resourcegroups//providers/Microsoft.Compute/virtualMachines/vm", "", "empty"},
		{"/subscriptions/" + sub + "/resourcegroups/RG/providers/Microsoft.Compute/virtualMachines/v m", "", "byte 0x20"},
		{"/subscriptions/" + sub + "/resourcegroups/RG/providers/Microsoft.Compute/virtualMachines/vm\x00", "", "byte 0x0"},
		{"/subscriptions/" + sub + "/resourcegroups/RG/providers/Microsoft.Compute/virtualMachines/vm%2F", "", "byte 0x25"},
		{"/subscriptions/" + sub + "/resourcegroups/RG/providers/Microsoft.Compute/virtualMachines/" + strings.Repeat("v", 1100), "", "longer than any"},
	} {
		got, err := parseResourceID(tt.in)
		if got != tt.want || (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("parseResourceID(%q) = %q, %v; want %q, %q", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestScopeContains(t *testing.T) {
	sc, err := parseAgentScope("/subscriptions/0b1c2d3e-aaaa-4bbb-8ccc-1234567890ab/resourceGroups/rg")
	if err != nil {
		t.Fatal(err)
	}
	for res, want := range map[string]bool{
		"/subscriptions/0b1c2d3e-aaaa-4bbb-8ccc-1234567890ab/resourcegroups/rg/providers/a/b/c":  true,
		"/subscriptions/0b1c2d3e-aaaa-4bbb-8ccc-1234567890ab/resourcegroups/rg2/providers/a/b/c": false,
		"/subscriptions/0b1c2d3e-aaaa-4bbb-8ccc-1234567890ab/resourcegroups/rg":                  false,
		"": false,
	} {
		if got := sc.contains(res); got != want {
			t.Errorf("contains(%q) = %v, want %v", res, got, want)
		}
	}
}

// FuzzResourceID: whatever xms_mirid a token carries, the parser accepts
// only ids that stay the same when parsed again and never contain bytes
// that change how a prefix comparison reads.
func FuzzResourceID(f *testing.F) {
	f.Add("/subscriptions/0b1c2d3e-aaaa-4bbb-8ccc-1234567890ab/resourcegroups/RG/providers/Microsoft.Compute/virtualMachines/vm")
	f.Add("/subscriptions/0b1c2d3e-aaaa-4bbb-8ccc-1234567890ab/resourcegroups/../providers/a/b/c")
	f.Add("/subscriptions//resourcegroups")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseResourceID(s)
		if err != nil {
			return
		}
		if again, err := parseResourceID(got); err != nil || again != got {
			t.Fatalf("parseResourceID(%q) = %q, which parses again as %q, %v", s, got, again, err)
		}
		if strings.Contains(got, "/../") || strings.Contains(got, "//") || strings.ContainsAny(got, " %?#\\\x00") || got != strings.ToLower(got) {
			t.Fatalf("parseResourceID(%q) accepted %q", s, got)
		}
	})
}
