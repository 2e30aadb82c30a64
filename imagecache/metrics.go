package imagecache

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the cache's figures, registered with Prometheus under
// berth_cache_*.
type Metrics struct {
	hits            *prometheus.CounterVec
	misses          *prometheus.CounterVec
	bytesServed     *prometheus.CounterVec
	upstreamFetches *prometheus.CounterVec
	digestFailures  *prometheus.CounterVec
	merged          prometheus.Counter
}

// NewMetrics creates the figures and registers them with reg (nil: kept
// but not exported).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_cache_hits_total", Help: "Blobs and manifests found in a tier.",
		}, []string{"tier"}),
		misses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_cache_misses_total", Help: "Lookups a tier could not answer.",
		}, []string{"tier"}),
		bytesServed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_cache_bytes_total", Help: "Bytes read from each tier and from upstreams.",
		}, []string{"tier"}),
		upstreamFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_cache_upstream_fetches_total", Help: "Manifests and blobs fetched from an upstream registry.",
		}, []string{"registry"}),
		digestFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_cache_digest_failures_total", Help: "Content whose digest did not match, by where it came from.",
		}, []string{"tier"}),
		merged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_cache_merged_requests_total", Help: "Requests served by a fetch another request had started.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.hits, m.misses, m.bytesServed, m.upstreamFetches, m.digestFailures, m.merged)
	}
	return m
}
