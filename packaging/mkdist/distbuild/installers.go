package distbuild

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/berthhq/berth/packaging/deb"
	"github.com/berthhq/berth/packaging/msi"
)

// windowsInstaller builds the MSI around the (signed) agent exe, then
// signs the MSI: every table edit is done by msi.Build, before the
// signature (packaging-anchors §2).
func (b *builder) windowsInstaller(ctx context.Context) error {
	start := time.Now()
	name := fmt.Sprintf("berth-agent-%s-x64.msi", b.v.Name)
	dst := filepath.Join(b.o.Out, name)
	built := dst
	if b.o.SignCert != "" {
		built = filepath.Join(b.work, name)
	}
	if err := msi.Build(ctx, msi.Options{
		Version: b.v.Name, ProductVersion: b.v.MSI, AgentExe: b.agents["windows"],
		Out: built, SourceDate: b.o.SourceDate,
	}); err != nil {
		return err
	}
	if built != dst {
		if err := b.sign(ctx, built, dst, "Berth Agent installer"); err != nil {
			return err
		}
	}
	return b.wrote(dst, start)
}

// debianPackage builds the .deb, named with the Debian version as dpkg
// names packages.
func (b *builder) debianPackage(ctx context.Context) error {
	start := time.Now()
	dst := filepath.Join(b.o.Out, fmt.Sprintf("berth-agent_%s_amd64.deb", b.v.Debian))
	if err := deb.Build(ctx, deb.Options{Version: b.v.Debian, Binary: b.agents["linux"], Out: dst, SourceDate: b.o.SourceDate}); err != nil {
		return err
	}
	return b.wrote(dst, start)
}
