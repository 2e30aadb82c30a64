package tufrepo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/filehash"
)

// RemotePath returns where a target is published below the destination:
// targets/<dir>/<sha256>.<file>, the hash-prefixed name go-tuf clients
// fetch with consistent snapshots.
func RemotePath(targetPath, sha256Hex string) string {
	dir, file := path.Split(targetPath)
	return "targets/" + dir + sha256Hex + "." + file
}

// Publish uploads the repository in dir to `to`: an Azure Blob container
// URL (https://<account>.blob.core.windows.net/<container>[/prefix], or an
// emulator's http://127.0.0.1:PORT/<account>/<container>) opened with cred,
// or a folder (a path or file:// URL).
//
// Unless WithoutRenew is given it first re-signs metadata that is expired
// or close to expiry (see Renew). It uploads packages first, then every
// versioned metadata file, then root.json, and timestamp.json last, so an
// agent never sees metadata naming files that are not there yet. Published
// packages and versioned metadata are immutable: finding one with other
// content at the destination fails with ErrConflict and overwrites nothing.
func Publish(ctx context.Context, dir, to string, cred azstore.Credential, opts ...Option) error {
	s := newSettings(opts)
	if _, err := os.Stat(metaDir(dir)); err != nil {
		return fmt.Errorf("publish: %s: %w", dir, ErrNotRepository)
	}
	unlock, err := lock(dir)
	if err != nil {
		return err
	}
	defer unlock()
	if !s.noRenew {
		if _, err := renew(dir, s); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	r, err := load(dir, s)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	d, err := openDest(ctx, to, cred, s)
	if err != nil {
		return fmt.Errorf("publish to %s: %w", azstore.Redact(to), err)
	}
	p := publisher{d: d, s: s}

	for _, t := range r.list() {
		local := filepath.Join(targetsDir(dir), filepath.FromSlash(t.Path))
		if err := p.putTarget(ctx, local, RemotePath(t.Path, t.SHA256), t); err != nil {
			return fmt.Errorf("publish to %s: %w", d, err)
		}
	}
	versioned, err := versionedMetadata(metaDir(dir))
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	for _, name := range versioned {
		if err := p.putImmutable(ctx, filepath.Join(metaDir(dir), name), "metadata/"+name); err != nil {
			return fmt.Errorf("publish to %s: %w", d, err)
		}
	}
	for _, name := range []string{"root.json", "timestamp.json"} {
		if err := d.put(ctx, "metadata/"+name, filepath.Join(metaDir(dir), name), "application/json", "", true); err != nil {
			return fmt.Errorf("publish to %s: %w", d, err)
		}
	}
	s.log.Info("published release repository", "to", d.String(), "packages", len(r.targets.Signed.Targets),
		"uploaded", p.uploaded, "unchanged", p.unchanged,
		"timestampVersion", r.timestamp.Signed.Version, "timestampExpires", r.timestamp.Signed.Expires)
	return nil
}

var versionedRe = regexp.MustCompile(`^([0-9]+)\.(root|targets|snapshot)\.json$`)

// versionedMetadata lists N.root.json, N.targets.json and N.snapshot.json in
// upload order: roots, then targets, then snapshots, each by version.
func versionedMetadata(md string) ([]string, error) {
	entries, err := os.ReadDir(md)
	if err != nil {
		return nil, err
	}
	type vf struct {
		name string
		role int
		v    int64
	}
	order := map[string]int{RoleRoot: 0, RoleTargets: 1, RoleSnapshot: 2}
	var files []vf
	for _, e := range entries {
		m := versionedRe.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() {
			continue
		}
		v, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			continue
		}
		files = append(files, vf{e.Name(), order[m[2]], v})
	}
	sort.Slice(files, func(i, j int) bool {
		if files[i].role != files[j].role {
			return files[i].role < files[j].role
		}
		return files[i].v < files[j].v
	})
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.name
	}
	return out, nil
}

type publisher struct {
	d                   dest
	s                   settings
	uploaded, unchanged int
}

// putTarget uploads a package unless the destination holds it already; a
// different object under its name is a conflict.
func (p *publisher) putTarget(ctx context.Context, local, remote string, t Target) error {
	sum, n, err := filehash.SHA256(local)
	if err != nil {
		return fmt.Errorf("package %s: %w", t.Path, err)
	}
	if sum != t.SHA256 || n != t.Length {
		return fmt.Errorf("package %s: the repository's copy %s does not match its signed hash: restore it from the original file", t.Path, local)
	}
	st, err := p.d.stat(ctx, remote)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	default:
		same := st.size == t.Length
		if same {
			if st.sha256 != "" {
				same = st.sha256 == t.SHA256
			} else {
				same, err = p.remoteHashIs(ctx, remote, t.SHA256)
				if err != nil {
					return err
				}
			}
		}
		if !same {
			return fmt.Errorf("%w: %s already exists there with other content; refusing to overwrite a published package (remove it by hand only if you know why it differs)", ErrConflict, remote)
		}
		p.unchanged++
		return nil
	}
	if err := p.d.put(ctx, remote, local, contentType(t.Path), t.SHA256, false); err != nil {
		if errors.Is(err, azstore.ErrExists) || errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s appeared there while publishing; publish again", ErrConflict, remote)
		}
		return err
	}
	p.s.log.Info("uploaded package", "target", t.Path, "to", remote, "length", t.Length)
	p.uploaded++
	return nil
}

// putImmutable uploads a versioned metadata file unless the destination
// holds the same bytes already.
func (p *publisher) putImmutable(ctx context.Context, local, remote string) error {
	want, err := os.ReadFile(local)
	if err != nil {
		return err
	}
	_, err = p.d.stat(ctx, remote)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := p.d.put(ctx, remote, local, "application/json", "", false); err != nil {
			if errors.Is(err, azstore.ErrExists) || errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%w: %s appeared there while publishing; publish again", ErrConflict, remote)
			}
			return err
		}
		p.uploaded++
		return nil
	case err != nil:
		return err
	}
	rc, err := p.d.open(ctx, remote)
	if err != nil {
		return err
	}
	defer rc.Close()
	got, err := io.ReadAll(io.LimitReader(rc, int64(len(want))+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", remote, err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("%w: %s already exists there with other content: the destination holds another repository's releases, or this repository was initialised again; publish to an empty container or folder", ErrConflict, remote)
	}
	p.unchanged++
	return nil
}

func (p *publisher) remoteHashIs(ctx context.Context, remote, want string) (bool, error) {
	rc, err := p.d.open(ctx, remote)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return false, fmt.Errorf("read %s: %w", remote, err)
	}
	return hex.EncodeToString(h.Sum(nil)) == want, nil
}

func contentType(name string) string {
	switch {
	case strings.HasSuffix(name, ".zip"):
		return "application/zip"
	case strings.HasSuffix(name, ".tar.gz"), strings.HasSuffix(name, ".tgz"):
		return "application/gzip"
	case strings.HasSuffix(name, ".json"):
		return "application/json"
	}
	return "application/octet-stream"
}

// dest is where Publish writes: a blob container or a folder.
type dest interface {
	stat(ctx context.Context, name string) (destInfo, error)
	open(ctx context.Context, name string) (io.ReadCloser, error)
	// put uploads local as name; without overwrite an existing name fails
	// with an error wrapping azstore.ErrExists or fs.ErrExist.
	put(ctx context.Context, name, local, contentType, sha256Hex string, overwrite bool) error
	String() string
}

type destInfo struct {
	size   int64
	sha256 string // "" when the destination does not know it
}

func openDest(ctx context.Context, to string, cred azstore.Credential, s settings) (dest, error) {
	if folder, ok := azstore.FolderPath(to); ok {
		if err := os.MkdirAll(folder, 0o755); err != nil {
			return nil, err
		}
		return folderDest(folder), nil
	}
	c, err := azstore.New(to, cred, azstore.Options{HTTPClient: s.httpClient, Logger: s.log})
	if err != nil {
		return nil, err
	}
	if err := c.EnsureContainer(ctx); err != nil {
		return nil, err
	}
	return blobDest{c}, nil
}

type blobDest struct{ c *azstore.Container }

// String names the container for messages.
func (b blobDest) String() string { return b.c.Location().String() }

func (b blobDest) stat(ctx context.Context, name string) (destInfo, error) {
	bi, err := b.c.Stat(ctx, name)
	if err != nil {
		return destInfo{}, err
	}
	return destInfo{size: bi.Size, sha256: bi.Metadata["sha256"]}, nil
}

func (b blobDest) open(ctx context.Context, name string) (io.ReadCloser, error) {
	rc, _, err := b.c.Open(ctx, name, 0)
	return rc, err
}

func (b blobDest) put(ctx context.Context, name, local, ct, sum string, overwrite bool) error {
	o := azstore.UploadOptions{ContentType: ct, Overwrite: overwrite}
	if sum != "" {
		o.Metadata = map[string]string{"sha256": sum}
	}
	return b.c.UploadFile(ctx, name, local, o)
}

type folderDest string

// String names the folder for messages.
func (f folderDest) String() string { return string(f) }

func (f folderDest) path(name string) string {
	return filepath.Join(string(f), filepath.FromSlash(name))
}

func (f folderDest) stat(_ context.Context, name string) (destInfo, error) {
	fi, err := os.Stat(f.path(name))
	if err != nil {
		return destInfo{}, err
	}
	return destInfo{size: fi.Size()}, nil
}

func (f folderDest) open(_ context.Context, name string) (io.ReadCloser, error) {
	return os.Open(f.path(name))
}

func (f folderDest) put(_ context.Context, name, local, _, _ string, overwrite bool) error {
	dst := f.path(name)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if !overwrite {
		if _, err := os.Lstat(dst); err == nil {
			return fmt.Errorf("%s: %w", dst, fs.ErrExist)
		}
	}
	tmp, _, _, err := copyHashed(local, filepath.Dir(dst))
	if err != nil {
		return fmt.Errorf("copy %s: %w", name, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("copy %s: %w", name, err)
	}
	return nil
}
