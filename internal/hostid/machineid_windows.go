package hostid

import (
	"fmt"
	"strings"

	"github.com/Microsoft/hcsshim/osversion"
	"golang.org/x/sys/windows/registry"
)

// MachineID returns MachineGuid from HKLM\SOFTWARE\Microsoft\Cryptography,
// read from the 64-bit view of the registry whatever this binary's bitness.
func MachineID() (string, error) {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, `SOFTWARE\Microsoft\Cryptography`, registry.QUERY_VALUE|registry.WOW64_64KEY)
	if err != nil {
		return "", fmt.Errorf(`machine id: open HKLM\SOFTWARE\Microsoft\Cryptography: %w`, err)
	}
	defer k.Close()
	v, _, err := k.GetStringValue("MachineGuid")
	if err != nil {
		return "", fmt.Errorf("machine id: read MachineGuid: %w", err)
	}
	return v, nil
}

// OSBuild describes the OS for heartbeats: the product name from the
// registry and the build from hcsshim's osversion with the update revision
// (UBR), for example "Windows Server 2022 Datacenter 10.0.20348.2849". The
// build with UBR is what picks matching Windows container images.
func OSBuild() string {
	v := osversion.Get()
	build := fmt.Sprintf("%d.%d.%d", v.MajorVersion, v.MinorVersion, v.Build)
	if rev, err := osversion.BuildRevision(); err == nil {
		build += fmt.Sprintf(".%d", rev)
	}
	name := "Windows"
	if k, err := registry.OpenKey(registry.LOCAL_MACHINE, `SOFTWARE\Microsoft\Windows NT\CurrentVersion`, registry.QUERY_VALUE|registry.WOW64_64KEY); err == nil {
		if p, _, err := k.GetStringValue("ProductName"); err == nil && strings.TrimSpace(p) != "" {
			name = strings.TrimSpace(p)
		}
		k.Close()
	}
	return name + " " + build
}
