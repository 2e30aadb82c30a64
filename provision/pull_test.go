package provision

import (
	"errors"
	"strings"
	"testing"

	"github.com/berthhq/berth/engine/winhost"
	"github.com/berthhq/berth/imagecache/cas"
)

func TestPickFromIndex(t *testing.T) {
	d2022 := cas.FromBytes([]byte("2022"))
	d2019 := cas.FromBytes([]byte("2019"))
	dLinux := cas.FromBytes([]byte("linux"))
	index := []byte(`{"schemaVersion":2,"manifests":[
		{"digest":"` + string(dLinux) + `","platform":{"os":"linux","architecture":"amd64"}},
		{"digest":"` + string(d2019) + `","platform":{"os":"windows","architecture":"amd64","os.version":"10.0.17763.5576"}},
		{"digest":"` + string(d2022) + `","platform":{"os":"windows","architecture":"amd64","os.version":"10.0.20348.2340"}}]}`)
	for _, tc := range []struct {
		host winhost.OSVersion
		want cas.Digest
		err  error
	}{
		{winhost.OSVersion{Major: 10, Build: 20348, Revision: 2340}, d2022, nil},
		{winhost.OSVersion{Major: 10, Build: 17763, Revision: 100}, d2019, nil},
		{winhost.OSVersion{Major: 10, Build: 14393}, "", winhost.ErrNoMatchingImage},
	} {
		got, err := PickFromIndex(index, tc.host, "amd64")
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("host %s: got %s, %v; want %s, %v", tc.host, got, err, tc.want, tc.err)
		}
	}
	if d, err := PickFromIndex([]byte(`{"schemaVersion":2,"config":{}}`), winhost.OSVersion{Build: 20348}, "amd64"); d != "" || err != nil {
		t.Errorf("single manifest: %s, %v; want nothing to pick", d, err)
	}
	if _, err := PickFromIndex([]byte(`{`), winhost.OSVersion{}, "amd64"); err == nil {
		t.Error("broken JSON accepted")
	}
}

func FuzzPickFromIndex(f *testing.F) {
	f.Add([]byte(`{"manifests":[{"digest":"sha256:`+strings.Repeat("a", 64)+`","platform":{"os":"windows","architecture":"amd64","os.version":"10.0.20348.1"}}]}`), uint16(20348))
	f.Add([]byte(`{"manifests":[{"platform":{}}]}`), uint16(0))
	f.Fuzz(func(t *testing.T, body []byte, build uint16) {
		d, err := PickFromIndex(body, winhost.OSVersion{Major: 10, Build: build}, "amd64")
		if err == nil && d != "" {
			if _, perr := cas.ParseDigest(string(d)); perr != nil {
				t.Fatalf("picked an invalid digest %q", d)
			}
		}
	})
}
