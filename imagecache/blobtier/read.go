package blobtier

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
)

// parallelReader reads a large blob as consecutive chunks: the first
// streams straight from the GET Open made, the next Parallel are fetched
// into buffers meanwhile, and each buffer is handed out in order and then
// reused. Memory is bounded by (Parallel+1) × ChunkSize.
type parallelReader struct {
	t      *Tier
	ctx    context.Context
	cancel context.CancelFunc
	bc     *blob.Client
	what   string

	next int64 // offset of the next chunk to schedule
	end  int64 // the blob's size

	cur    io.Reader // the chunk being read
	curBuf *[]byte   // its buffer, returned to the pool when done
	first  io.ReadCloser
	queue  []*chunk // scheduled chunks, in order
	err    error    // sticky
	wg     sync.WaitGroup
	closed bool
}

// chunk is one ranged GET into a buffer.
type chunk struct {
	off, n int64
	buf    *[]byte
	done   chan struct{}
	err    error
}

func (t *Tier) newParallelReader(ctx context.Context, bc *blob.Client, what string, first io.ReadCloser, next, end int64) *parallelReader {
	ctx, cancel := context.WithCancel(ctx)
	r := &parallelReader{t: t, ctx: ctx, cancel: cancel, bc: bc, what: what, next: next, end: end, first: first, cur: first}
	r.fill()
	return r
}

// fill schedules chunks until Parallel are in flight or none is left.
func (r *parallelReader) fill() {
	for len(r.queue) < r.t.o.Parallel && r.next < r.end {
		c := &chunk{off: r.next, n: min(r.t.o.ChunkSize, r.end-r.next), done: make(chan struct{})}
		c.buf = r.t.bufs.Get().(*[]byte)
		r.next += c.n
		r.queue = append(r.queue, c)
		r.wg.Add(1)
		go r.fetch(c)
	}
}

// fetch reads chunk c with one ranged GET (the SDK retries the request and,
// through the retry reader, a body cut short).
func (r *parallelReader) fetch(c *chunk) {
	defer r.wg.Done()
	defer close(c.done)
	resp, err := r.bc.DownloadStream(r.ctx, &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: c.off, Count: c.n}})
	if err != nil {
		c.err = r.t.wrap("read", r.what, err)
		return
	}
	body := resp.NewRetryReader(r.ctx, &blob.RetryReaderOptions{MaxRetries: 3})
	defer body.Close()
	if resp.ContentLength != nil && *resp.ContentLength != c.n {
		c.err = fmt.Errorf("%s read %s: asked for %d bytes at %d, got %d: the blob changed while read", r.t.name, r.what, c.n, c.off, *resp.ContentLength)
		return
	}
	if _, err := io.ReadFull(body, (*c.buf)[:c.n]); err != nil {
		c.err = fmt.Errorf("%s read %s at %d: %w", r.t.name, r.what, c.off, err)
	}
}

// Read implements io.Reader.
func (r *parallelReader) Read(p []byte) (int, error) {
	for {
		if r.err != nil {
			return 0, r.err
		}
		if r.cur != nil {
			n, err := r.cur.Read(p)
			if err == io.EOF {
				r.nextChunk()
				if n > 0 {
					return n, nil
				}
				continue
			}
			if err != nil {
				r.err = err
			}
			return n, err
		}
		if len(r.queue) == 0 {
			return 0, io.EOF
		}
		c := r.queue[0]
		select {
		case <-c.done:
		case <-r.ctx.Done():
			r.err = fmt.Errorf("%s read %s: %w", r.t.name, r.what, r.ctx.Err())
			return 0, r.err
		}
		r.queue = r.queue[1:]
		if c.err != nil {
			r.t.bufs.Put(c.buf)
			r.err = c.err
			return 0, r.err
		}
		r.cur, r.curBuf = bytes.NewReader((*c.buf)[:c.n]), c.buf
		r.fill()
	}
}

// nextChunk is called when the current chunk is exhausted.
func (r *parallelReader) nextChunk() {
	if r.first != nil {
		r.first.Close()
		r.first = nil
	}
	if r.curBuf != nil {
		r.t.bufs.Put(r.curBuf)
		r.curBuf = nil
	}
	r.cur = nil
}

// Close stops the fetches in flight and frees the buffers.
func (r *parallelReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.cancel()
	if r.first != nil {
		r.first.Close()
		r.first = nil
	}
	r.wg.Wait()
	for _, c := range r.queue {
		r.t.bufs.Put(c.buf)
	}
	r.queue = nil
	if r.curBuf != nil {
		r.t.bufs.Put(r.curBuf)
		r.curBuf = nil
	}
	r.cur = nil
	if r.err == nil {
		r.err = fmt.Errorf("%s read %s: reader closed", r.t.name, r.what)
	}
	return nil
}
