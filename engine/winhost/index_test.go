package winhost

import (
	"errors"
	"strings"
	"testing"
)

func TestPickFromIndex(t *testing.T) {
	d2022 := "sha256:" + strings.Repeat("22", 32)
	d2019 := "sha256:" + strings.Repeat("19", 32)
	dLinux := "sha256:" + strings.Repeat("00", 32)
	index := []byte(`{"schemaVersion":2,"manifests":[
		{"digest":"` + dLinux + `","platform":{"os":"linux","architecture":"amd64"}},
		{"digest":"` + d2019 + `","platform":{"os":"windows","architecture":"amd64","os.version":"10.0.17763.5576"}},
		{"digest":"` + d2022 + `","platform":{"os":"windows","architecture":"amd64","os.version":"10.0.20348.2340"}}]}`)
	for _, tc := range []struct {
		host OSVersion
		want string
		err  error
	}{
		{OSVersion{Major: 10, Build: 20348, Revision: 2340}, d2022, nil},
		{OSVersion{Major: 10, Build: 17763, Revision: 100}, d2019, nil},
		{OSVersion{Major: 10, Build: 14393}, "", ErrNoMatchingImage},
	} {
		got, err := PickFromIndex(index, tc.host, "amd64")
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("host %s: got %s, %v; want %s, %v", tc.host, got, err, tc.want, tc.err)
		}
	}
	if d, err := PickFromIndex([]byte(`{"schemaVersion":2,"config":{}}`), OSVersion{Build: 20348}, "amd64"); d != "" || err != nil {
		t.Errorf("single manifest: %s, %v; want nothing to pick", d, err)
	}
	if _, err := PickFromIndex([]byte(`{`), OSVersion{}, "amd64"); err == nil {
		t.Error("broken JSON accepted")
	}
}

func FuzzPickFromIndex(f *testing.F) {
	f.Add([]byte(`{"manifests":[{"digest":"sha256:`+strings.Repeat("a", 64)+`","platform":{"os":"windows","architecture":"amd64","os.version":"10.0.20348.1"}}]}`), uint16(20348))
	f.Add([]byte(`{"manifests":[{"platform":{}}]}`), uint16(0))
	f.Fuzz(func(t *testing.T, body []byte, build uint16) {
		d, err := PickFromIndex(body, OSVersion{Major: 10, Build: build}, "amd64")
		if err == nil && d != "" && !strings.Contains(string(body), `"`+d+`"`) {
			t.Fatalf("picked %q, which the index does not name", d)
		}
	})
}
