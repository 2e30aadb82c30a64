// Package statedbtest damages agent.db files for tests: a sample file laid
// out as an agent's, and a table of damages (truncations, zeroed and random
// pages at many offsets, torn meta pages, random files) with what opening
// each must do. statedb's own tests and the agent's start-up tests share it.
package statedbtest

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/berthhq/berth/internal/statedb"
)

// PageSize is the page size of the files Sample writes (bbolt takes the
// OS's, 4 KiB on the platforms Berth tests on).
const PageSize = 4096

type rec struct {
	N    int    `json:"n"`
	Name string `json:"name"`
}

// Sample fills a database at path the way an agent does: a few buckets,
// some with many records (like the outbox and the cache index, under names
// of their own), so that the file has branch, leaf, overflow and free
// pages. Its identity
// record ("identity"/"agent") is not the last commit, which a torn meta
// page may take back.
func Sample(t testing.TB, path string) {
	t.Helper()
	ctx := context.Background()
	db, err := statedb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	// A few commits, as the agent makes them, but the many records of
	// the first ones in one each, to keep it quick.
	commit := func(fn func(put func(bucket, key string, v any), del func(bucket, key string))) {
		t.Helper()
		err := db.Update(ctx, func(tx *bolt.Tx) error {
			var err error
			put := func(bucket, key string, v any) {
				raw, _ := json.Marshal(v)
				b, e := tx.CreateBucketIfNotExists([]byte(bucket))
				if e == nil {
					e = b.Put([]byte(key), raw)
				}
				err = cmp.Or(err, e)
			}
			del := func(bucket, key string) { err = cmp.Or(err, tx.Bucket([]byte(bucket)).Delete([]byte(key))) }
			fn(put, del)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	commit(func(put func(string, string, any), _ func(string, string)) {
		for i := range 600 {
			put("queue", fmt.Sprintf("%020d", i), rec{N: i, Name: strings.Repeat("r", 200)})
		}
		for i := range 300 {
			put("index", fmt.Sprintf("%064x", i), rec{N: i})
		}
	})
	commit(func(_ func(string, string, any), del func(string, string)) { // frees pages
		for i := range 200 {
			del("queue", fmt.Sprintf("%020d", i))
		}
	})
	commit(func(put func(string, string, any), _ func(string, string)) {
		put("big", "value", rec{N: 1, Name: strings.Repeat("big", 3000)}) // an overflow page
	})
	commit(func(put func(string, string, any), _ func(string, string)) {
		put("identity", "agent", rec{Name: "vm-1"})
	})
	commit(func(put func(string, string, any), _ func(string, string)) { put("sample", "last", rec{N: 1}) })
}

// SampleIntact reports whether db still holds Sample's identity record.
func SampleIntact(ctx context.Context, db *statedb.DB) bool {
	var id rec
	found, err := db.Get(ctx, "identity", "agent", &id)
	return err == nil && found && id.Name == "vm-1"
}

// Outcome is what opening a damaged file must do.
type Outcome int

const (
	// Replaced: the file is moved aside and replaced.
	Replaced Outcome = iota + 1
	// Repaired: a torn meta page is rewritten; the records stay.
	Repaired
	// Either: the damage may fall on bytes no check can see (free pages,
	// the file's unused tail, the middle of a value), and the file may
	// stay in use.
	Either
)

func (o Outcome) String() string {
	return map[Outcome]string{Replaced: "replaced", Repaired: "repaired", Either: "either"}[o]
}

// Damage is one way agent.db gets damaged.
type Damage struct {
	Name string
	// Do damages the sound file at path.
	Do func(t testing.TB, path string)
	// Page is the page Do overwrites, or -1; then Want depends on what the
	// page holds (see Want).
	Page int64
	want Outcome
}

// Want is what opening the file at path, as Sample wrote it and before
// d.Do, must do once damaged.
func (d Damage) Want(t testing.TB, path string) Outcome {
	t.Helper()
	if d.Page < 0 {
		return d.want
	}
	switch kind := PageKinds(t, path)[d.Page]; kind {
	case "meta":
		return Repaired
	case "freelist", "branch", "leaf":
		return Replaced
	default: // free, overflow (inside a value), unused
		return Either
	}
}

// PageKinds maps the pages of the sound file at path to what they hold:
// meta, freelist, branch, leaf, overflow (the continuation of a page), free;
// pages past the high water mark are absent.
func PageKinds(t testing.TB, path string) map[int64]string {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	kinds := map[int64]string{}
	err = db.View(func(tx *bolt.Tx) error {
		for id := 0; ; id++ {
			if kinds[int64(id)] != "" {
				continue
			}
			p, err := tx.Page(id)
			if err != nil || p == nil {
				return err
			}
			kinds[int64(id)] = p.Type
			for i := 1; i <= p.OverflowCount && p.Type != "free"; i++ {
				kinds[int64(id+i)] = "overflow"
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return kinds
}

// Damages is the table.
func Damages() []Damage {
	var ds []Damage
	for _, n := range []int64{1, 100, PageSize, PageSize + 1, 2 * PageSize, 3*PageSize - 1} {
		ds = append(ds, Damage{fmt.Sprintf("truncated to %d bytes", n), truncate(func(int64) int64 { return n }), -1, Replaced})
	}
	for _, frac := range []int64{2, 3, 4, 8} {
		ds = append(ds, Damage{fmt.Sprintf("truncated to 1/%d", frac), truncate(func(s int64) int64 { return s / frac / PageSize * PageSize }), -1, Replaced})
	}
	// bbolt grows the file ahead of its pages: the last ones may be unused.
	ds = append(ds,
		Damage{"truncated by one page", truncate(func(s int64) int64 { return s - PageSize }), -1, Either},
		Damage{"truncated mid-page", truncate(func(s int64) int64 { return s - PageSize/2 }), -1, Either},
	)
	for p := range int64(14) {
		ds = append(ds,
			Damage{fmt.Sprintf("page %d zeroed", p), overwrite(func(int64) int64 { return p * PageSize }, zeros, PageSize), p, 0},
			Damage{fmt.Sprintf("page %d random", p), overwrite(func(int64) int64 { return p * PageSize }, random, PageSize), p, 0},
		)
	}
	ds = append(ds,
		Damage{"both meta pages zeroed", overwrite(func(int64) int64 { return 0 }, zeros, 2*PageSize), -1, Replaced},
		Damage{"both meta pages random", overwrite(func(int64) int64 { return 0 }, random, 2*PageSize), -1, Replaced},
		Damage{"all random", rewrite(func(s int64) []byte { return random(int(s)) }), -1, Replaced},
		Damage{"small random file", rewrite(func(int64) []byte { return random(777) }), -1, Replaced},
		Damage{"all zeroed", rewrite(func(s int64) []byte { return zeros(int(s)) }), -1, Replaced},
		Damage{"second half zeroed", func(t testing.TB, path string) {
			s := size(t, path)
			overwrite(func(s int64) int64 { return s / 2 / PageSize * PageSize }, zeros, int(s-s/2/PageSize*PageSize))(t, path)
		}, -1, Either},
		Damage{"32 bytes random mid-file", overwrite(func(s int64) int64 { return s/2 + 100 }, random, 32), -1, Either},
	)
	for _, off := range []int64{16, 24, 32, 40, 56, 64} { // meta fields, both pages
		ds = append(ds, Damage{fmt.Sprintf("meta byte %d flipped in both pages", off), func(t testing.TB, path string) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[off] ^= 0x5a
			b[PageSize+off] ^= 0x5a
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, -1, Replaced})
	}
	return ds
}

func size(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func truncate(n func(size int64) int64) func(testing.TB, string) {
	return func(t testing.TB, path string) {
		t.Helper()
		if err := os.Truncate(path, n(size(t, path))); err != nil {
			t.Fatal(err)
		}
	}
}

func overwrite(off func(size int64) int64, b func(n int) []byte, n int) func(testing.TB, string) {
	return func(t testing.TB, path string) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(b(n), off(size(t, path))); err != nil {
			t.Fatal(err)
		}
	}
}

func rewrite(b func(size int64) []byte) func(testing.TB, string) {
	return func(t testing.TB, path string) {
		t.Helper()
		if err := os.WriteFile(path, b(size(t, path)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func zeros(n int) []byte { return make([]byte, n) }

// random is n bytes that are the same for the same n.
func random(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}
