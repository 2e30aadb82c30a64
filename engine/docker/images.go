package docker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// PullEvent is one line of dockerd's pull progress.
type PullEvent struct {
	ID      string `json:"id"` // the layer, for per-layer progress
	Status  string `json:"status"`
	Current int64  `json:"current"`
	Total   int64  `json:"total"`
}

// Pull asks dockerd to pull ref (name[:tag][@digest]), telling onEvent of
// each progress line. An error line from dockerd is returned as an error.
func (c *Client) Pull(ctx context.Context, ref string, onEvent func(PullEvent)) error {
	q := url.Values{"fromImage": {ref}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/images/create?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("docker pull %s: %w", ref, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return fmt.Errorf("docker pull %s: %s: %s", ref, resp.Status, apiMessage(body))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			ID             string `json:"id"`
			Status         string `json:"status"`
			Error          string `json:"error"`
			ProgressDetail struct {
				Current int64 `json:"current"`
				Total   int64 `json:"total"`
			} `json:"progressDetail"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		if line.Error != "" {
			return fmt.Errorf("docker pull %s: %s", ref, line.Error)
		}
		if onEvent != nil {
			onEvent(PullEvent{ID: line.ID, Status: line.Status, Current: line.ProgressDetail.Current, Total: line.ProgressDetail.Total})
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("docker pull %s: %w", ref, err)
	}
	return nil
}

// Tag gives the image src the name repo:tag.
func (c *Client) Tag(ctx context.Context, src, repo, tag string) error {
	q := url.Values{"repo": {repo}, "tag": {tag}}
	return c.do(ctx, http.MethodPost, "/images/"+url.PathEscape(src)+"/tag?"+q.Encode(), http.StatusCreated)
}

// Untag removes the name ref; the image stays while other names hold it.
func (c *Client) Untag(ctx context.Context, ref string) error {
	return c.do(ctx, http.MethodDelete, "/images/"+url.PathEscape(ref)+"?noprune=1", http.StatusOK)
}

// ImageID returns the id of the image named ref, or an error if none is.
func (c *Client) ImageID(ctx context.Context, ref string) (string, error) {
	body, err := c.get(ctx, "/images/"+url.PathEscape(ref)+"/json")
	if err != nil {
		return "", err
	}
	var img struct {
		ID string `json:"Id"`
	}
	if err := json.Unmarshal(body, &img); err != nil {
		return "", fmt.Errorf("docker API image %s: %w", ref, err)
	}
	return img.ID, nil
}

func (c *Client) do(ctx context.Context, method, path string, want int) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("docker API %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != want {
		return fmt.Errorf("docker API %s %s: %s: %s", method, path, resp.Status, apiMessage(body))
	}
	return nil
}

// apiMessage takes the message out of a Docker API error body.
func apiMessage(body []byte) string {
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		return e.Message
	}
	return string(bytes.TrimSpace(body))
}
