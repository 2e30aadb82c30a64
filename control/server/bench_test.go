package server_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthhq/berth/control/server"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
)

// BenchmarkReports posts one-heartbeat gzip batches from many agents in
// parallel over keep-alive connections, the endpoint's steady state, on a
// real SQLite store. The target is 5,000 reports/s on two cores.
func BenchmarkReports(b *testing.B) {
	benchReports(b, newFixture(b, fixtureOptions{Quiet: true, Options: noQuota}))
}

// BenchmarkReportsServerOnly is BenchmarkReports on a store that stores
// nothing: the server's own cost per report (auth, decode, answer).
func BenchmarkReportsServerOnly(b *testing.B) {
	benchReports(b, newFixture(b, fixtureOptions{Quiet: true, Options: noQuota, Wrap: func(s server.Store) server.Store { return nullStore{s} }}))
}

// noQuota lifts the per-agent quota: the benchmarks send as fast as the
// server takes reports, from fewer agents than a fleet that fast has.
func noQuota(o *server.Options) { o.QuotaRecords, o.QuotaBytes = -1, -1 }

// benchParallelism × GOMAXPROCS agents post at once: many agents' reports
// in flight is the endpoint's normal state, and what lets the store
// commit them in groups.
const benchParallelism = 64

// nullStore acknowledges every batch without storing it.
type nullStore struct{ server.Store }

func (nullStore) Ingest(_ context.Context, b wire.Batch, _ time.Time) (wire.Ack, error) {
	return wire.Ack{Agent: b.Agent, UpTo: b.Records[len(b.Records)-1].Seq, Stored: len(b.Records)}, nil
}

func benchReports(b *testing.B, f *fixture) {
	const agents = 256
	tokens := make([]string, agents)
	for i := range tokens {
		_, secret, err := f.Store.IssueToken(context.Background(), store.RoleAgent, fmt.Sprintf("vm-%03d", i), time.Now())
		if err != nil {
			b.Fatal(err)
		}
		tokens[i] = secret
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 512, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var next atomic.Int64
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)-1) % agents
		agent := fmt.Sprintf("vm-%03d", i)
		seq := uint64(0)
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		for pb.Next() {
			seq++
			buf.Reset()
			zw.Reset(&buf)
			zw.Write(batchJSON(b, agent, heartbeat(seq, "Healthy", map[string]string{"pool": "blue"})))
			zw.Close()
			req, _ := http.NewRequest(http.MethodPost, f.URL+wire.ReportsPath, bytes.NewReader(buf.Bytes()))
			req.Header.Set("Authorization", "Bearer "+tokens[i])
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Content-Encoding", "gzip")
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reports/s")
}

// BenchmarkReportHandler is the server's own cost of one report, without
// a network or a client: auth (cached), gunzip, decode, answer.
func BenchmarkReportHandler(b *testing.B) {
	f := newFixture(b, fixtureOptions{Quiet: true, Options: noQuota, Wrap: func(s server.Store) server.Store { return nullStore{s} }})
	body := gzipped(b, batchJSON(b, "vm-a", heartbeat(1, "Healthy", map[string]string{"pool": "blue"})))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, wire.ReportsPath, bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+f.AgentA)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Content-Encoding", "gzip")
			w := httptest.NewRecorder()
			f.Server.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
}
