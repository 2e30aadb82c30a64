// Package blobtier is the image cache's Azure Blob Storage tier: blobs named
// by digest (blobs/sha256/<hex>, SPEC "Image cache") and refs (refs/<name>)
// in one container, opened through internal/azstore with any of agent.yaml's
// storage credentials.
//
// A blob is committed only when its content checks out: Put streams it to a
// block blob while hashing it, and the reader handed to UploadStream fails at
// the end when the digest does not match, which stops the SDK before it
// commits the block list (staged blocks that are never committed are
// discarded by the service). The commit carries If-None-Match: *, so
// concurrent Puts of one blob race safely: the losers' 409/412 mean "already
// there". Open reads large blobs with parallel ranged GETs, reassembled in
// order with bounded memory.
package blobtier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/berthhq/berth/imagecache/cas"
	"github.com/berthhq/berth/internal/azstore"
)

// Defaults for Options.
const (
	// DefaultChunkSize is the size of one ranged GET of a large blob.
	DefaultChunkSize = 8 << 20
	// DefaultParallel is how many ranged GETs run ahead of the reader.
	DefaultParallel = 4
	// DefaultBlockSize is the size of one staged block of an upload.
	DefaultBlockSize = 4 << 20
	// DefaultUploadConcurrency is how many blocks upload at once.
	DefaultUploadConcurrency = 4
	// DefaultBackoff is how long the tier fails fast after it found the
	// storage unavailable.
	DefaultBackoff = 10 * time.Second
)

// Options configure a Tier. Zero values take the defaults above.
type Options struct {
	// URL is the container's URL, as cache.storage[].url gives it
	// (https://<account>.blob.core.windows.net/<container>[/<prefix>], or
	// an emulator's path form); see azstore.ParseURL.
	URL string
	// Credential is how to authenticate (cache.storage[] auth, clientId,
	// keyFile, sasFile); see azstore.New.
	Credential azstore.Credential
	// HTTPClient carries the requests; nil means the Azure SDK's default.
	HTTPClient *http.Client
	// ChunkSize is the size of one ranged GET; a blob (from the offset
	// asked) no longer than this is read with a single GET.
	ChunkSize int64
	// Parallel is how many chunks are fetched ahead of the reader; a reader
	// holds at most Parallel+1 chunk buffers.
	Parallel int
	// BlockSize is the size of one uploaded block (at least 1 MiB).
	BlockSize int64
	// UploadConcurrency is how many blocks of one Put upload at once; a Put
	// holds at most that many block buffers.
	UploadConcurrency int
	// Backoff is how long every operation fails at once with
	// cas.ErrUnavailable after one found the storage unreachable or
	// refusing (the SDK's own retries make such a failure take seconds; a
	// pull must not wait that long for each blob). Health ends it early.
	Backoff time.Duration
	// Logger receives the tier's logs; nil discards them.
	Logger *slog.Logger
}

// Tier is an Azure Blob container used as a cache tier. It implements
// cas.Tier; create it with New and call Start before use.
type Tier struct {
	store  *azstore.Container
	client *container.Client
	loc    azstore.Location
	name   string
	o      Options
	log    *slog.Logger
	bufs   sync.Pool // chunk buffers for parallel reads

	downMu    sync.Mutex
	downUntil time.Time // fail fast until then
	downErr   error     // why
}

var _ cas.Tier = (*Tier)(nil)

// New returns the tier of the container at o.URL. It loads the
// credential's secret and makes no request; Start checks the container.
func New(o Options) (*Tier, error) {
	store, err := azstore.New(o.URL, o.Credential, azstore.Options{HTTPClient: o.HTTPClient, Logger: o.Logger})
	if err != nil {
		return nil, fmt.Errorf("cache storage tier: %w", err)
	}
	return newTier(store, o), nil
}

// newTier returns the tier over an opened container.
func newTier(store *azstore.Container, o Options) *Tier {
	if o.ChunkSize <= 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.Parallel <= 0 {
		o.Parallel = DefaultParallel
	}
	if o.BlockSize <= 0 {
		o.BlockSize = DefaultBlockSize
	}
	o.BlockSize = max(o.BlockSize, 1<<20)
	if o.UploadConcurrency <= 0 {
		o.UploadConcurrency = DefaultUploadConcurrency
	}
	if o.Backoff <= 0 {
		o.Backoff = DefaultBackoff
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	loc := store.Location()
	name := "blob:" + loc.Account + "/" + loc.Container
	if loc.Prefix != "" {
		name += "/" + strings.TrimSuffix(loc.Prefix, "/")
	}
	t := &Tier{
		store:  store,
		client: store.Client(),
		loc:    loc,
		name:   name,
		o:      o,
		log:    log.With("component", "cache-blob", "tier", name),
	}
	chunk := o.ChunkSize
	t.bufs.New = func() any { b := make([]byte, chunk); return &b }
	return t
}

// Start creates the container when it is missing and the credential
// allows it (SPEC: otherwise the tier is reported unhealthy and skipped).
// Its error wraps cas.ErrUnavailable; the tier may be started again later,
// or Health called, to retry.
func (t *Tier) Start(ctx context.Context) error {
	if err := t.store.EnsureContainer(ctx); err != nil {
		t.log.Warn("storage tier unavailable", "err", err)
		err = fmt.Errorf("%s: %w: %w", t.name, cas.ErrUnavailable, err)
		t.trip(err)
		return err
	}
	t.untrip()
	return nil
}

// trip makes operations fail fast for Backoff after err, which wraps
// cas.ErrUnavailable.
func (t *Tier) trip(err error) {
	t.downMu.Lock()
	defer t.downMu.Unlock()
	if time.Now().After(t.downUntil) {
		t.log.Warn("storage tier unavailable; skipping it for a while", "for", t.o.Backoff, "err", err)
	}
	t.downUntil = time.Now().Add(t.o.Backoff)
	t.downErr = err
}

// untrip ends a backoff after the storage answered.
func (t *Tier) untrip() {
	t.downMu.Lock()
	defer t.downMu.Unlock()
	if !t.downUntil.IsZero() {
		t.log.Info("storage tier available again")
	}
	t.downUntil = time.Time{}
	t.downErr = nil
}

// down returns an error wrapping cas.ErrUnavailable while the tier backs off.
func (t *Tier) down() error {
	t.downMu.Lock()
	defer t.downMu.Unlock()
	if t.downErr == nil || time.Now().After(t.downUntil) {
		return nil
	}
	return fmt.Errorf("%s: skipped for %s after: %w", t.name, time.Until(t.downUntil).Round(time.Second), t.downErr)
}

// Close releases nothing and returns nil: the tier holds no goroutine or
// connection of its own (readers are closed by their callers). It is there
// so that every tier has the same New → Start → Close lifecycle.
func (t *Tier) Close() error { return nil }

// Health reports whether the tier can be used now: a read of a blob that
// does not exist must answer "blob not found" (which needs only read
// permission). A missing container is created when the credential allows
// it. Its error wraps cas.ErrUnavailable.
func (t *Tier) Health(ctx context.Context) error {
	_, err := t.client.NewBlobClient(t.loc.BlobName("blobs/sha256/health-probe")).GetProperties(ctx, nil)
	if err == nil || isBlobNotFound(err) {
		t.untrip()
		return nil
	}
	if bloberror.HasCode(err, bloberror.ContainerNotFound) {
		return t.Start(ctx)
	}
	err = t.wrap("health", "container", err)
	if !errors.Is(err, cas.ErrUnavailable) {
		err = fmt.Errorf("%w: %w", cas.ErrUnavailable, err)
	}
	return err
}

// Name returns "blob:<account>/<container>[/<prefix>]".
func (t *Tier) Name() string { return t.name }

// blobName returns the blob name of dg, or an error for a bad digest or
// while the tier backs off.
func (t *Tier) blobName(dg cas.Digest) (string, error) {
	if _, err := cas.ParseDigest(string(dg)); err != nil {
		return "", err
	}
	if err := t.down(); err != nil {
		return "", err
	}
	return t.loc.BlobName("blobs/sha256/" + dg.Hex()), nil
}

// refBlobName returns the blob name of ref name, checked by
// cas.CheckRefName. '%' is escaped, and so is a '.' ending a segment, which
// Azure would drop; everything else is kept, so the names read as written.
func (t *Tier) refBlobName(name string) (string, error) {
	if err := cas.CheckRefName(name); err != nil {
		return "", err
	}
	if err := t.down(); err != nil {
		return "", err
	}
	segs := strings.Split(name, "/")
	for i, s := range segs {
		s = strings.ReplaceAll(s, "%", "%25")
		if strings.HasSuffix(s, ".") {
			s = s[:len(s)-1] + "%2E"
		}
		segs[i] = s
	}
	return t.loc.BlobName("refs/" + strings.Join(segs, "/")), nil
}

// Stat returns the blob's size, or an error wrapping cas.ErrNotFound.
func (t *Tier) Stat(ctx context.Context, dg cas.Digest) (int64, error) {
	name, err := t.blobName(dg)
	if err != nil {
		return 0, fmt.Errorf("%s stat: %w", t.name, err)
	}
	return t.stat(ctx, name)
}

func (t *Tier) stat(ctx context.Context, name string) (int64, error) {
	resp, err := t.client.NewBlobClient(name).GetProperties(ctx, nil)
	if err != nil {
		return 0, t.wrap("stat", name, err)
	}
	if resp.ContentLength == nil {
		return 0, fmt.Errorf("%s stat %s: no Content-Length in the answer", t.name, name)
	}
	return *resp.ContentLength, nil
}

// Open returns the blob's content from offset on and its length (the
// blob's size minus offset). An offset equal to the size gives an empty
// reader; a larger one an error.
// Content up to ChunkSize long comes from one GET; longer content from
// ranged GETs, Parallel of them ahead of the reader. The reader fails rather
// than end early if the blob shrinks or vanishes meanwhile. Reading uses ctx.
func (t *Tier) Open(ctx context.Context, dg cas.Digest, offset int64) (io.ReadCloser, int64, error) {
	name, err := t.blobName(dg)
	if err != nil {
		return nil, 0, fmt.Errorf("%s open: %w", t.name, err)
	}
	if offset < 0 {
		return nil, 0, fmt.Errorf("%s open %s: negative offset %d", t.name, dg, offset)
	}
	bc := t.client.NewBlobClient(name)
	resp, err := bc.DownloadStream(ctx, &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: offset, Count: t.o.ChunkSize}})
	if err != nil {
		if bloberror.HasCode(err, bloberror.InvalidRange) || statusOf(err) == http.StatusRequestedRangeNotSatisfiable {
			// Azure answers 416 to a range starting at the end (or
			// anywhere in an empty blob).
			return t.openAtEnd(ctx, dg, name, offset)
		}
		return nil, 0, t.wrap("open", name, err)
	}
	total := rangeTotal(resp.ContentRange)
	var got int64 = -1
	if resp.ContentLength != nil {
		got = *resp.ContentLength
	}
	if total < 0 || got <= 0 {
		// Azurite answers an empty 206 at the end; anything unexpected
		// is settled by asking for the size.
		resp.Body.Close()
		if got <= 0 {
			return t.openAtEnd(ctx, dg, name, offset)
		}
		return nil, 0, fmt.Errorf("%s open %s: answer without a usable Content-Range (%v)", t.name, name, deref(resp.ContentRange))
	}
	if offset >= total {
		resp.Body.Close()
		return t.openAtEnd(ctx, dg, name, offset)
	}
	first := min(t.o.ChunkSize, total-offset)
	if got != first {
		resp.Body.Close()
		return nil, 0, fmt.Errorf("%s open %s: asked for %d bytes at %d, got %d", t.name, name, first, offset, got)
	}
	body := &exactReader{
		r:    resp.NewRetryReader(ctx, &blob.RetryReaderOptions{MaxRetries: 3}),
		left: first,
		what: name,
	}
	if offset+first == total {
		return body, first, nil
	}
	return t.newParallelReader(ctx, bc, name, body, offset+first, total), total - offset, nil
}

// openAtEnd handles an Open whose range the service found empty: an empty
// reader when offset is the blob's size, an error past it.
func (t *Tier) openAtEnd(ctx context.Context, dg cas.Digest, name string, offset int64) (io.ReadCloser, int64, error) {
	size, err := t.stat(ctx, name)
	if err != nil {
		return nil, 0, err
	}
	if offset > size {
		return nil, 0, fmt.Errorf("%s open %s: offset %d is past the end (%d bytes)", t.name, dg, offset, size)
	}
	if offset < size {
		return nil, 0, fmt.Errorf("%s open %s: the service returned no content at offset %d of %d", t.name, dg, offset, size)
	}
	return io.NopCloser(strings.NewReader("")), 0, nil
}

// rangeTotal returns TOTAL of "bytes START-END/TOTAL", or -1.
func rangeTotal(cr *string) int64 {
	if cr == nil {
		return -1
	}
	_, after, ok := strings.Cut(*cr, "/")
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(after, 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// exactReader yields exactly left bytes of r and fails if r ends early or
// runs long: a body cut short must never look like the end of the blob.
type exactReader struct {
	r    io.ReadCloser
	left int64
	what string
}

// Read implements io.Reader.
func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		// Expect the end of the body.
		var one [1]byte
		n, err := e.r.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("read %s: more content than announced", e.what)
		}
		if err == nil {
			return 0, nil
		}
		return 0, err
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF && e.left > 0 {
		return n, fmt.Errorf("read %s: %w (%d bytes missing)", e.what, io.ErrUnexpectedEOF, e.left)
	}
	if err == io.EOF {
		err = nil // reported by the next Read
	}
	return n, err
}

// Close closes the body.
func (e *exactReader) Close() error { return e.r.Close() }

// verifyingReader feeds content to UploadStream and fails instead of
// ending when the content is not what was announced, which keeps the SDK
// from committing it. It also stops at ctx's end: UploadStream itself reads
// its source to the end even when its requests fail.
type verifyingReader struct {
	ctx  context.Context
	r    io.Reader
	v    *cas.Verifier
	size int64
	n    int64
	err  error // the error returned, sticky
}

// Read implements io.Reader.
func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if err := v.ctx.Err(); err != nil {
		v.err = err
		return 0, err
	}
	n, err := v.r.Read(p)
	if n > 0 {
		v.n += int64(n)
		if v.n > v.size {
			v.err = fmt.Errorf("%w: content is longer than the %d bytes announced", cas.ErrDigestMismatch, v.size)
			return 0, v.err
		}
		v.v.Write(p[:n])
	}
	switch {
	case err == io.EOF:
		if cerr := v.v.Check(); cerr != nil {
			v.err = cerr
			return n, cerr
		}
		return n, io.EOF
	case err != nil:
		v.err = fmt.Errorf("read content: %w", err)
		return n, v.err
	}
	return n, nil
}

var etagAny = azcore.ETagAny

// Put stores the blob read from r, which must be exactly size bytes hashing
// to dg, else it returns an error wrapping cas.ErrDigestMismatch and nothing
// is committed. A blob already in the container is not uploaded again: Put
// returns nil, possibly without reading r.
func (t *Tier) Put(ctx context.Context, dg cas.Digest, size int64, r io.Reader) error {
	name, err := t.blobName(dg)
	if err != nil {
		return fmt.Errorf("%s put: %w", t.name, err)
	}
	if size < 0 {
		return fmt.Errorf("%s put %s: negative size %d", t.name, dg, size)
	}
	switch n, err := t.stat(ctx, name); {
	case err == nil && n == size:
		return nil
	case err == nil:
		// Rot: a blob named by this digest with another length.
		t.log.Warn("blob has the wrong size in the container; replacing it", "digest", dg, "size", n, "want", size)
		if err := t.delete(ctx, name); err != nil {
			return err
		}
	case !errors.Is(err, cas.ErrNotFound):
		return err
	}
	vr := &verifyingReader{ctx: ctx, r: r, v: cas.NewVerifier(dg, size), size: size}
	_, err = t.client.NewBlockBlobClient(name).UploadStream(ctx, vr, &blockblob.UploadStreamOptions{
		BlockSize:   t.o.BlockSize,
		Concurrency: t.o.UploadConcurrency,
		HTTPHeaders: &blob.HTTPHeaders{BlobContentType: ptr("application/octet-stream")},
		AccessConditions: &blob.AccessConditions{
			ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: &etagAny},
		},
	})
	switch {
	case err == nil:
		t.log.Debug("stored blob", "digest", dg, "size", size)
		return nil
	case vr.err != nil:
		return fmt.Errorf("%s put %s: %w", t.name, dg, vr.err)
	case bloberror.HasCode(err, bloberror.BlobAlreadyExists, bloberror.ConditionNotMet) ||
		statusOf(err) == http.StatusConflict || statusOf(err) == http.StatusPreconditionFailed:
		return nil // a concurrent Put committed it first
	case ctx.Err() != nil:
		return fmt.Errorf("%s put %s: %w", t.name, dg, ctx.Err())
	}
	// A concurrent Put that commits first discards the blocks others have
	// staged, whose commit then fails (InvalidBlockList): the blob is there.
	if n, serr := t.stat(ctx, name); serr == nil && n == size {
		return nil
	}
	return t.wrap("put", name, err)
}

// Delete removes the blob; a missing blob is not an error.
func (t *Tier) Delete(ctx context.Context, dg cas.Digest) error {
	name, err := t.blobName(dg)
	if err != nil {
		return fmt.Errorf("%s delete: %w", t.name, err)
	}
	return t.delete(ctx, name)
}

func (t *Tier) delete(ctx context.Context, name string) error {
	_, err := t.client.NewBlobClient(name).Delete(ctx, nil)
	if err != nil && !isBlobNotFound(err) {
		return t.wrap("delete", name, err)
	}
	return nil
}

// GetRef returns the value stored under name, or an error wrapping
// cas.ErrNotFound.
func (t *Tier) GetRef(ctx context.Context, name string) ([]byte, error) {
	bn, err := t.refBlobName(name)
	if err != nil {
		return nil, fmt.Errorf("%s get ref: %w", t.name, err)
	}
	resp, err := t.client.NewBlobClient(bn).DownloadStream(ctx, nil)
	if err != nil {
		return nil, t.wrap("get ref", bn, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, cas.MaxRefSize+1))
	if err != nil {
		return nil, t.wrap("get ref", bn, err)
	}
	if len(b) > cas.MaxRefSize {
		return nil, fmt.Errorf("%s get ref %q: %w", t.name, name, cas.ErrRefTooLarge)
	}
	return b, nil
}

// PutRef stores value (at most cas.MaxRefSize bytes) under name, replacing
// what was there.
func (t *Tier) PutRef(ctx context.Context, name string, value []byte) error {
	bn, err := t.refBlobName(name)
	if err != nil {
		return fmt.Errorf("%s put ref: %w", t.name, err)
	}
	if len(value) > cas.MaxRefSize {
		return fmt.Errorf("%s put ref %q: %d bytes: %w", t.name, name, len(value), cas.ErrRefTooLarge)
	}
	_, err = t.client.NewBlockBlobClient(bn).Upload(ctx, streaming.NopCloser(bytes.NewReader(value)), &blockblob.UploadOptions{
		HTTPHeaders: &blob.HTTPHeaders{BlobContentType: ptr("application/octet-stream")},
	})
	if err != nil {
		return t.wrap("put ref", bn, err)
	}
	return nil
}

// isBlobNotFound reports a missing blob in an existing container.
func isBlobNotFound(err error) bool {
	if bloberror.HasCode(err, bloberror.ContainerNotFound) {
		return false
	}
	return bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ResourceNotFound) || statusOf(err) == http.StatusNotFound
}

// statusOf returns the HTTP status of an azcore.ResponseError, or 0.
func statusOf(err error) int {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// wrap adds the operation and blob to err and classifies it: a missing blob
// wraps cas.ErrNotFound; a missing container, refused credentials, throttling,
// server errors and network failures wrap cas.ErrUnavailable (the cache skips
// the tier) and start a backoff; a cancelled context stays itself.
func (t *Tier) wrap(op, name string, err error) error {
	where := t.name + " " + op + " " + name
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", where, err)
	case isBlobNotFound(err):
		return fmt.Errorf("%s: %w", where, cas.ErrNotFound)
	}
	var out error
	switch status := statusOf(err); {
	case bloberror.HasCode(err, bloberror.ContainerNotFound):
		out = fmt.Errorf("%s: the container does not exist: %w: %w", where, cas.ErrUnavailable, err)
	case status == 0:
		// No answer from the service at all: network, DNS, TLS, a token
		// that could not be fetched.
		out = fmt.Errorf("%s: %w: %w", where, cas.ErrUnavailable, err)
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		out = fmt.Errorf("%s: storage refused %s auth: check the key, the SAS permissions and expiry, or the identity's role (Storage Blob Data Contributor): %w: %w",
			where, t.store.Auth(), cas.ErrUnavailable, err)
		if op == "put" || op == "put ref" || op == "delete" {
			// A credential that may read but not write (a read-only
			// SAS) still serves hits: only this write is refused.
			return out
		}
	case status == http.StatusTooManyRequests || status == http.StatusRequestTimeout || status >= 500:
		out = fmt.Errorf("%s: %w: %w", where, cas.ErrUnavailable, err)
	default:
		return fmt.Errorf("%s: %w", where, err)
	}
	t.trip(out)
	return out
}

func ptr[T any](v T) *T { return &v }
