package winhost

import (
	"encoding/json"
	"fmt"
)

// PickFromIndex returns the digest of the entry of a manifest list (an
// image index) that runs on a Windows host of build host, or "" when body is
// a single manifest.
func PickFromIndex(body []byte, host OSVersion, arch string) (string, error) {
	var idx struct {
		Manifests []struct {
			Digest   string `json:"digest"`
			Platform struct {
				OS           string `json:"os"`
				Architecture string `json:"architecture"`
				OSVersion    string `json:"os.version"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(body, &idx); err != nil {
		return "", fmt.Errorf("manifest: %w", err)
	}
	if len(idx.Manifests) == 0 {
		return "", nil
	}
	platforms := make([]Platform, len(idx.Manifests))
	for i, m := range idx.Manifests {
		platforms[i] = Platform{OS: m.Platform.OS, Architecture: m.Platform.Architecture, OSVersion: m.Platform.OSVersion}
	}
	choice, err := PickImage(platforms, host, arch)
	if err != nil {
		return "", err
	}
	// The caller checks the digest before it names an image by it.
	return idx.Manifests[choice.Index].Digest, nil
}
