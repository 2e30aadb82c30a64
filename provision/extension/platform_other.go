//go:build !windows

package extension

// platformDecrypt reads the certificate files WALinuxAgent lays out.
func platformDecrypt(configFolder, thumbprint, b64 string) ([]byte, error) {
	return DecryptWithFiles(configFolder, thumbprint, b64)
}

// newSeqStore keeps the applied sequence number in mrseq beside
// HandlerEnvironment.json.
func newSeqStore(env Env, version string) SeqStore {
	return mrseqFile{root: env.Root, name: env.Name}
}

// protectDir has nothing to add to the folder's 0700 mode.
func protectDir(string) error { return nil }
