package report

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/berthhq/berth/control/wire"
)

// control is a small stand-in for the control endpoint's POST /v1/reports:
// it checks the request the way the real one does (gzip, wire.DecodeBatch),
// stores each (agent, seq) once, and answers with a wire.Ack or a
// wire.Error. Hooks let a test make it fail.
type control struct {
	t   *testing.T
	srv *httptest.Server

	mu sync.Mutex
	// before, when set, may answer a request itself (return true) before
	// it is decoded: the endpoint down, rate limiting, a bad token.
	before func(w http.ResponseWriter, r *http.Request) bool
	// after, when set, runs once a batch is stored, before the answer.
	after    func(r *http.Request)
	maxBytes int64 // DecodeBatch's limit; 0 for wire.MaxBatchBytes

	stored   map[uint64]wire.Record
	order    []uint64 // seqs in the order they were stored
	dups     int
	upTo     uint64
	requests int
	refused  map[int]int // status → count
	sizes    []int       // uncompressed body size of each decoded batch
	tokens   []string
}

func newControl(t *testing.T) *control {
	c := &control{t: t, stored: map[uint64]wire.Record{}, refused: map[int]int{}}
	c.srv = httptest.NewServer(c)
	t.Cleanup(c.srv.Close)
	return c
}

func (c *control) URL() string { return c.srv.URL }

func (c *control) fail(w http.ResponseWriter, status int, code, msg string) {
	c.refused[status]++
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(wire.Error{Code: code, Message: msg})
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func (c *control) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.requests++
	before := c.before
	c.tokens = append(c.tokens, r.Header.Get("Authorization"))
	c.mu.Unlock()
	if before != nil && before(w, r) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != wire.ReportsPath {
		c.fail(w, http.StatusNotFound, wire.CodeNotFound, r.Method+" "+r.URL.Path)
		return
	}
	if r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Content-Encoding") != "gzip" {
		c.fail(w, http.StatusUnsupportedMediaType, wire.CodeUnsupported, "want gzip'd application/json")
		return
	}
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		c.fail(w, http.StatusBadRequest, wire.CodeBadRequest, "not gzip: "+err.Error())
		return
	}
	cr := &countingReader{r: zr}
	b, err := wire.DecodeBatch(cr, c.maxBytes)
	switch {
	case errors.Is(err, wire.ErrTooLarge):
		c.fail(w, http.StatusRequestEntityTooLarge, wire.CodeTooLarge, err.Error())
		return
	case err != nil:
		c.fail(w, http.StatusBadRequest, wire.CodeBadRequest, err.Error())
		return
	}
	c.sizes = append(c.sizes, cr.n)
	ack := wire.Ack{Agent: b.Agent}
	for _, rec := range b.Records {
		if _, ok := c.stored[rec.Seq]; ok {
			ack.Duplicates++
			c.dups++
			continue
		}
		c.stored[rec.Seq] = rec
		c.order = append(c.order, rec.Seq)
		c.upTo = max(c.upTo, rec.Seq)
		ack.Stored++
	}
	ack.UpTo = c.upTo
	if c.after != nil {
		c.after(r)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(ack)
}

func (c *control) set(f func(c *control)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(c)
}

// snapshot returns what was stored, in arrival order.
func (c *control) snapshot() (recs []wire.Record, dups int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.order {
		recs = append(recs, c.stored[s])
	}
	return recs, c.dups
}

// events returns the kinds of the stored events, in arrival order.
func (c *control) events() []string {
	recs, _ := c.snapshot()
	var out []string
	for _, r := range recs {
		if r.Event != nil {
			out = append(out, r.Event.Kind)
		}
	}
	return out
}

// inOrder reports whether the records were stored in increasing seq order.
func (c *control) inOrder() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.IsSorted(c.order)
}
