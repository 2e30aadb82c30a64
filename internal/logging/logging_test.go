package logging

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/secret"
)

func TestSecretNeverLogged(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("auth", "key", secret.Value("hunter2"), slog.Any("nested", map[string]any{"k": secret.Value("hunter2")}))
	if strings.Contains(buf.String(), "hunter2") {
		t.Fatalf("secret reached the log: %s", buf.String())
	}
}

func TestNewRefusesBadSettings(t *testing.T) {
	if _, err := New(os.Stderr, "xml", "info"); err == nil {
		t.Error("format xml accepted")
	}
	if _, err := New(os.Stderr, "json", "loud"); err == nil {
		t.Error("level loud accepted")
	}
}
