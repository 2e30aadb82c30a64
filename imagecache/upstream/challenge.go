package upstream

import "strings"

// challenge is one authentication challenge of a WWW-Authenticate header
// (RFC 9110 §11.6.1): a scheme, lower-cased, and its parameters, keys
// lower-cased.
type challenge struct {
	scheme string
	params map[string]string
}

// Bounds on what a header may make the parser hold.
const (
	maxChallengeHeader = 8 << 10
	maxChallenges      = 8
	maxChallengeParams = 16
)

// parseChallenges reads every challenge of the WWW-Authenticate header
// values. It is lenient, as clients must be with what servers send, and
// never fails: malformed parts are skipped. Headers longer than 8 KiB are
// ignored whole.
func parseChallenges(values []string) []challenge {
	var out []challenge
	for _, v := range values {
		if len(v) > maxChallengeHeader {
			continue
		}
		out = parseChallengeHeader(v, out)
		if len(out) >= maxChallenges {
			return out[:maxChallenges]
		}
	}
	return out
}

// parseChallengeHeader appends the challenges of one header value to out.
//
//	challenge   = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//	auth-param  = token BWS "=" BWS ( token / quoted-string )
//
// Challenges and parameters share the comma as separator; a token that is
// not followed by "=" starts the next challenge.
func parseChallengeHeader(s string, out []challenge) []challenge {
	cur := -1          // index in out of the challenge being filled
	afterComma := true // a comma came since the current scheme
	i := 0
	for i < len(s) && len(out) < maxChallenges {
		i = skipSpace(s, i)
		if i >= len(s) {
			break
		}
		if s[i] == ',' {
			afterComma = true
			i++
			continue
		}
		tok, j := readToken(s, i)
		if tok == "" {
			// Not a token: skip this element, up to the next comma.
			i = skipPast(s, i+1)
			afterComma = true
			continue
		}
		k := skipSpace(s, j)
		if k < len(s) && s[k] == '=' && !isToken68Tail(s, k) {
			k = skipSpace(s, k+1)
			var val string
			if k < len(s) && s[k] == '"' {
				val, k = readQuoted(s, k)
			} else {
				val, k = readBare(s, k)
			}
			if cur >= 0 {
				key := strings.ToLower(tok)
				p := out[cur].params
				if _, dup := p[key]; !dup && len(p) < maxChallengeParams {
					p[key] = val
				}
			}
			// Whatever follows a parameter up to the next comma is junk.
			k = skipSpace(s, k)
			if k < len(s) && s[k] != ',' {
				k = skipPast(s, k)
			}
			i = k
			afterComma = false
			continue
		}
		if cur >= 0 && !afterComma && len(out[cur].params) == 0 {
			// token68 right after the scheme ("Negotiate abc/def=="): skip it.
			i = skipPast(s, j)
			afterComma = true
			continue
		}
		out = append(out, challenge{scheme: strings.ToLower(tok), params: map[string]string{}})
		cur = len(out) - 1
		afterComma = false
		i = j
	}
	return out
}

// isToken68Tail reports whether the "=" at s[k] is the padding of a
// token68 ("abc==", or "abc=" at the end or before a comma) rather than the
// start of a parameter's value.
func isToken68Tail(s string, k int) bool {
	n := 0
	for k+n < len(s) && s[k+n] == '=' {
		n++
	}
	if n >= 2 {
		return true
	}
	return k+1 == len(s) || s[k+1] == ','
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// skipPast returns the index of the next comma at or after i (not inside
// a quoted string), or len(s).
func skipPast(s string, i int) int {
	for i < len(s) && s[i] != ',' {
		if s[i] == '"' {
			_, i = readQuoted(s, i)
			continue
		}
		i++
	}
	return i
}

// readToken reads an RFC 9110 token (tchar*) starting at i.
func readToken(s string, i int) (string, int) {
	j := i
	for j < len(s) && isTchar(s[j]) {
		j++
	}
	return s[i:j], j
}

func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// readBare reads an unquoted parameter value: strictly a token, but
// servers send URLs unquoted too, so everything up to a comma or a space.
func readBare(s string, i int) (string, int) {
	j := i
	for j < len(s) && s[j] != ',' && s[j] != ' ' && s[j] != '\t' && s[j] != '"' {
		j++
	}
	return s[i:j], j
}

// readQuoted reads a quoted-string starting at the quote s[i], undoing
// backslash escapes. An unterminated string runs to the end.
func readQuoted(s string, i int) (string, int) {
	var b strings.Builder
	i++ // opening quote
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			b.WriteByte(s[i+1])
			i += 2
		case c == '"':
			return b.String(), i + 1
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), i
}

// bearerChallenge returns the first Bearer challenge that names a realm.
func bearerChallenge(cs []challenge) (challenge, bool) {
	for _, c := range cs {
		if c.scheme == "bearer" && c.params["realm"] != "" {
			return c, true
		}
	}
	return challenge{}, false
}

// hasScheme reports whether any challenge uses scheme (lower-case).
func hasScheme(cs []challenge, scheme string) bool {
	for _, c := range cs {
		if c.scheme == scheme {
			return true
		}
	}
	return false
}
