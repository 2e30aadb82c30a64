package distbuild

import "context"

// windowsInstaller builds the MSI. packaging/msi has not landed on this
// branch yet; make package says so.
func (b *builder) windowsInstaller(context.Context) error {
	if b.o.Progress != nil {
		b.o.Progress("not built yet: the MSI (packaging/msi)")
	}
	return nil
}

// debianPackage builds the .deb. packaging/deb has not landed on this
// branch yet; make package says so.
func (b *builder) debianPackage(context.Context) error {
	if b.o.Progress != nil {
		b.o.Progress("not built yet: the .deb (packaging/deb)")
	}
	return nil
}
