package release

import "strings"

// CompareVersions orders release versions the semver way, leniently: a
// leading "v" is ignored, missing numeric parts count as 0 (1.2 = 1.2.0),
// numeric parts compare as numbers of any length, a pre-release (-rc.1)
// sorts before its release, and build metadata (+…) is ignored. Versions
// equal by those rules are ordered by their text, so the order is total.
// It returns -1, 0 or +1.
func CompareVersions(a, b string) int {
	if c := compareSemverish(a, b); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func compareSemverish(a, b string) int {
	am, ap := splitVersion(a)
	bm, bp := splitVersion(b)
	as, bs := strings.Split(am, "."), strings.Split(bm, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		x, y := "0", "0"
		if i < len(as) {
			x = as[i]
		}
		if i < len(bs) {
			y = bs[i]
		}
		if c := compareIdent(x, y); c != 0 {
			return c
		}
	}
	switch {
	case ap == "" && bp == "":
		return 0
	case ap == "":
		return 1
	case bp == "":
		return -1
	}
	as, bs = strings.Split(ap, "."), strings.Split(bp, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if c := compareIdent(as[i], bs[i]); c != 0 {
			return c
		}
	}
	return cmpInt(len(as), len(bs))
}

// splitVersion returns the main part and the pre-release of v.
func splitVersion(v string) (string, string) {
	v = strings.TrimPrefix(strings.TrimPrefix(v, "v"), "V")
	v, _, _ = strings.Cut(v, "+")
	main, pre, _ := strings.Cut(v, "-")
	return main, pre
}

// compareIdent compares numbers numerically (numbers sort before words, as
// in semver pre-releases) and words by text.
func compareIdent(x, y string) int {
	xn, yn := isDigits(x), isDigits(y)
	switch {
	case xn && yn:
		x, y = strings.TrimLeft(x, "0"), strings.TrimLeft(y, "0")
		if c := cmpInt(len(x), len(y)); c != 0 {
			return c
		}
		return strings.Compare(x, y)
	case xn:
		return -1
	case yn:
		return 1
	}
	return strings.Compare(x, y)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
