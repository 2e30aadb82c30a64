package chromium

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestStart loads a page in the harness's browser and checks the
// screenshot lands in the artifact directory.
func TestStart(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><title>harness</title><p id="p">hello from the test</p>`)
	}))
	defer srv.Close()

	ctx := Start(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#p")))
	if err != nil {
		t.Fatalf("read the page: %v", err)
	}
	if text != "hello from the test" {
		t.Errorf("text = %q, want %q", text, "hello from the test")
	}
	path := SaveScreenshot(t, ctx, "harness.png")
	if fi, err := os.Stat(path); err != nil {
		t.Errorf("screenshot: %v", err)
	} else if fi.Size() == 0 {
		t.Errorf("screenshot %s is empty", path)
	}
}
