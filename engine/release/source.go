package release

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/berthhq/berth/internal/azstore"
)

// source reads a published repository: metadata/… and targets/… below a
// base, from Azure Blob Storage, an HTTP server or a folder.
type source interface {
	// open returns the object's bytes from offset on, and the object's
	// total size, or -1 when unknown. A missing object gives an error
	// wrapping fs.ErrNotExist.
	open(ctx context.Context, name string, offset int64) (io.ReadCloser, int64, error)
	String() string
}

// newSource picks how to read rawURL: an Azure Blob URL in host form, or
// any URL with shared-key or sas auth (an emulator's path form), goes
// through azblob with the credential; another https (or loopback http)
// URL is plain HTTP through hc; anything else is a folder.
func newSource(rawURL string, cred azstore.Credential, hc *http.Client, log *slog.Logger) (source, error) {
	if folder, ok := azstore.FolderPath(rawURL); ok {
		fi, err := os.Stat(folder)
		if err != nil {
			return nil, fmt.Errorf("releases folder: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("releases folder %s is not a folder", folder)
		}
		return dirSource(folder), nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("releases URL %q: %w", azstore.Redact(rawURL), err)
	}
	if azstore.IsAzureHost(u.Host) || cred.Auth == azstore.AuthSharedKey || cred.Auth == azstore.AuthSAS {
		c, err := azstore.New(rawURL, cred, azstore.Options{HTTPClient: hc, Logger: log})
		if err != nil {
			return nil, err
		}
		return blobSource{c}, nil
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && azstore.IsLoopback(u.Host):
	case u.Scheme == "http":
		return nil, fmt.Errorf("releases URL %q: plain http is allowed only to loopback; use https", azstore.Redact(rawURL))
	default:
		return nil, fmt.Errorf("releases URL %q: want https://…, an Azure Blob container URL or a folder", azstore.Redact(rawURL))
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("releases URL %q: must not carry credentials, a query or a fragment", azstore.Redact(rawURL))
	}
	if cred.Auth == azstore.AuthManagedIdentity && log != nil {
		log.Debug("releases URL is not Azure Blob Storage: reading it without managed-identity auth", "url", rawURL)
	}
	if hc == nil {
		hc = &http.Client{}
	}
	return httpSource{base: strings.TrimSuffix(u.String(), "/") + "/", client: hc}, nil
}

type blobSource struct{ c *azstore.Container }

// String names the container for messages.
func (b blobSource) String() string { return b.c.Location().String() }

func (b blobSource) open(ctx context.Context, name string, offset int64) (io.ReadCloser, int64, error) {
	return b.c.Open(ctx, name, offset)
}

type httpSource struct {
	base   string
	client *http.Client
}

// String names the base URL for messages.
func (h httpSource) String() string { return h.base }

func (h httpSource) open(ctx context.Context, name string, offset int64) (io.ReadCloser, int64, error) {
	u := h.base + escapePath(name)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("get %s: %w", u, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		total := resp.ContentLength
		if offset > 0 {
			// The server ignored the range: skip what we have.
			if _, err := io.CopyN(io.Discard, resp.Body, offset); err != nil {
				resp.Body.Close()
				if errors.Is(err, io.EOF) {
					return io.NopCloser(strings.NewReader("")), total, nil
				}
				return nil, 0, fmt.Errorf("get %s: %w", u, err)
			}
		}
		return resp.Body, total, nil
	case http.StatusPartialContent:
		total := int64(-1)
		if cr := resp.Header.Get("Content-Range"); cr != "" {
			if _, after, ok := strings.Cut(cr, "/"); ok {
				if n, err := strconv.ParseInt(after, 10, 64); err == nil {
					total = n
				}
			}
		}
		return resp.Body, total, nil
	case http.StatusRequestedRangeNotSatisfiable:
		resp.Body.Close()
		total := int64(-1)
		if _, after, ok := strings.Cut(resp.Header.Get("Content-Range"), "/"); ok {
			if n, err := strconv.ParseInt(after, 10, 64); err == nil {
				total = n
			}
		}
		return io.NopCloser(strings.NewReader("")), total, nil
	case http.StatusNotFound, http.StatusGone:
		resp.Body.Close()
		return nil, 0, fmt.Errorf("get %s: %s: %w", u, resp.Status, fs.ErrNotExist)
	default:
		resp.Body.Close()
		return nil, 0, fmt.Errorf("get %s: %s", u, resp.Status)
	}
}

func escapePath(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

type dirSource string

// String names the folder for messages.
func (d dirSource) String() string { return string(d) }

func (d dirSource) open(_ context.Context, name string, offset int64) (io.ReadCloser, int64, error) {
	if !fs.ValidPath(name) {
		return nil, 0, fmt.Errorf("invalid name %q", name)
	}
	f, err := os.Open(filepath.Join(string(d), filepath.FromSlash(name)))
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, 0, err
		}
	}
	return f, fi.Size(), nil
}

// tufFetcher adapts a source to go-tuf's Fetcher, keeping go-tuf's
// endless-data limits: nothing longer than maxLength is read.
type tufFetcher struct {
	ctx context.Context
	src source
}

// DownloadFile implements fetcher.Fetcher.
func (f tufFetcher) DownloadFile(urlPath string, maxLength int64, _ time.Duration) ([]byte, error) {
	rc, total, err := f.src.open(f.ctx, urlPath, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// go-tuf stops walking root versions on a 404.
			return nil, &metadata.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: urlPath}
		}
		return nil, fmt.Errorf("fetch %s from %s: %w", urlPath, f.src, err)
	}
	defer rc.Close()
	if total > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s is %d bytes, more than the %d allowed", urlPath, total, maxLength)}
	}
	data, err := io.ReadAll(io.LimitReader(rc, maxLength+1))
	if err != nil {
		return nil, fmt.Errorf("fetch %s from %s: %w", urlPath, f.src, err)
	}
	if int64(len(data)) > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s is more than the %d bytes allowed", urlPath, maxLength)}
	}
	return data, nil
}
