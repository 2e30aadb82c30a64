package report

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/telemetry/outbox"
)

// metrics are the reporter's Prometheus figures.
type metrics struct {
	sent     prometheus.Counter
	events   prometheus.Counter
	rejected prometheus.Counter
	errors   *prometheus.CounterVec
	lastSent prometheus.Gauge
	outbox   *outboxCollector
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_reports_sent_total", Help: "Report records the control endpoint acknowledged.",
		}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_reports_events_total", Help: "Events queued by this process.",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_reports_rejected_total", Help: "Report records skipped because the control endpoint refused them as invalid, again and again.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_reports_send_errors_total", Help: "Failed sends of a batch: by HTTP status, transport when no answer came (network, token), outbox and ack for local trouble.",
		}, []string{"code"}),
		lastSent: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_reports_last_sent_timestamp_seconds", Help: "When a batch was last acknowledged (Unix time).",
		}),
		outbox: &outboxCollector{
			queued: prometheus.NewDesc("berth_reports_queued", "Report records in the outbox, waiting for the control endpoint.", nil, nil),
			bytes:  prometheus.NewDesc("berth_reports_queued_bytes", "Bytes of report records in the outbox.", nil, nil),
			dropped: prometheus.NewDesc("berth_reports_dropped_total",
				"Report records the outbox dropped or refused because it was full, since agent.db was created, by kind.", []string{"kind"}, nil),
		},
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.sent, m.events, m.rejected, m.errors, m.lastSent, m.outbox} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) setOutbox(st outbox.Stats) {
	m.outbox.mu.Lock()
	m.outbox.st = st
	m.outbox.mu.Unlock()
}

// outboxCollector reports the outbox's figures as last read by the
// reporter, so that a scrape never waits on agent.db. The dropped counts
// are the outbox's durable totals, hence counters that survive restarts.
type outboxCollector struct {
	queued, bytes, dropped *prometheus.Desc

	mu sync.Mutex
	st outbox.Stats
}

func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.queued
	ch <- c.bytes
	ch <- c.dropped
}

func (c *outboxCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	st := c.st
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(st.Records))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(st.Bytes))
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(st.Dropped.Heartbeats), "heartbeat")
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(st.Dropped.Events), "event")
}
