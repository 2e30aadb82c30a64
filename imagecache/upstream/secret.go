package upstream

import (
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/berthhq/berth/internal/secret"
)

// readSecretFile reads a credential file, dropping one trailing line end.
func readSecretFile(key, path string) (secret.Value, error) {
	if path == "" {
		return "", fmt.Errorf("%s is required for basic auth", key)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", fmt.Errorf("%s %s is empty", key, path)
	}
	if strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("%s %s holds more than one line", key, path)
	}
	return secret.Value(s), nil
}

// safeURL renders u for logs: scheme, host and path, without user info
// and without the query, which for storage redirects holds a signature.
func safeURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	v := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	s := v.String()
	if u.RawQuery != "" {
		s += "?" + secret.Redacted
	}
	return s
}

// redactingLogger wraps retryablehttp's logger so that the URLs it logs
// lose their query strings and user info.
type redactingLogger struct{ inner retryablehttp.LeveledLogger }

// Error, Info, Debug and Warn implement retryablehttp.LeveledLogger.
func (l redactingLogger) Error(msg string, kv ...any) { l.inner.Error(msg, redactKV(kv)...) }
func (l redactingLogger) Info(msg string, kv ...any)  { l.inner.Info(msg, redactKV(kv)...) }
func (l redactingLogger) Debug(msg string, kv ...any) { l.inner.Debug(msg, redactKV(kv)...) }
func (l redactingLogger) Warn(msg string, kv ...any)  { l.inner.Warn(msg, redactKV(kv)...) }

func redactKV(kv []any) []any {
	out := make([]any, len(kv))
	for i, v := range kv {
		switch x := v.(type) {
		case *url.URL:
			out[i] = safeURL(x)
		case url.URL:
			out[i] = safeURL(&x)
		case string:
			if u, err := url.Parse(x); err == nil && u.Host != "" && (u.RawQuery != "" || u.User != nil) {
				out[i] = safeURL(u)
			} else {
				out[i] = x
			}
		case error:
			out[i] = redactError(x)
		default:
			out[i] = v
		}
	}
	return out
}

// redactError hides the query of a *url.Error's URL.
func redactError(err error) error {
	var ue *url.Error
	if e, ok := err.(*url.Error); ok {
		ue = e
	}
	if ue == nil {
		return err
	}
	u, perr := url.Parse(ue.URL)
	if perr != nil {
		return err
	}
	return &url.Error{Op: ue.Op, URL: safeURL(u), Err: ue.Err}
}
