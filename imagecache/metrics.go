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
	spoolBytes      prometheus.Gauge
	unspooled       prometheus.Counter
	abandoned       prometheus.Counter
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
			Name: "berth_cache_upstream_fetches_total", Help: "Manifests and blobs fetched from an upstream registry (registries the config does not name: \"other\").",
		}, []string{"registry"}),
		digestFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_cache_digest_failures_total", Help: "Content whose digest did not match, by where it came from.",
		}, []string{"tier"}),
		merged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_cache_merged_requests_total", Help: "Requests served by a fetch another request had started.",
		}),
		spoolBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_cache_spool_bytes", Help: "Bytes of cache.local.maxSize set aside for blobs being fetched.",
		}),
		unspooled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_cache_unspooled_total", Help: "Blob requests passed through without caching: no room within cache.local.maxSize.",
		}),
		abandoned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_cache_abandoned_fetches_total", Help: "Fetches cancelled because every client left.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.hits, m.misses, m.bytesServed, m.upstreamFetches, m.digestFailures, m.merged, m.spoolBytes, m.unspooled, m.abandoned)
	}
	return m
}
