// Package metrics keeps each daemon's counters in Prometheus form and
// writes them, in the text format, to a file that node_exporter's
// textfile collector reads: the worker and the downloader have no
// network to be scraped over, and none of the four daemons listens for
// it. One Set per daemon (a registry of its own, every series labelled
// with the daemon's name); File writes it atomically (file.go); Events
// counts the audit log's decisions (events.go).
//
// Labels are bounded: they come from the code's own constants (event
// names, refusal reasons, failure classes, Slack methods), values that
// are not of a constant's form count as "other", and each label takes at
// most maxValues distinct values. No user, team, channel, job, video,
// URL or file name is ever a label.
//
// Every method of a nil *Set does nothing: a daemon with metrics off
// (metrics.dir empty) passes nil, and pays for nothing.
package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The daemons, as their metrics files and the daemon label name them.
const (
	Receiver   = "receiver"
	Worker     = "worker"
	Downloader = "downloader"
	Courier    = "courier"
)

// Daemons lists the four daemons.
var Daemons = []string{Receiver, Worker, Downloader, Courier}

// maxValues bounds the distinct values of one label of one metric; past
// it, a new value counts as "other".
const maxValues = 64

// Set is one daemon's metrics. Its methods are safe for concurrent use.
type Set struct {
	daemon string
	reg    *prometheus.Registry

	events      *boundedVec // event
	alerts      *boundedVec // event
	alertsSent  prometheus.Counter
	alertsDrop  *boundedVec // reason
	commands    *boundedVec // outcome, reason
	jobs        *boundedVec // state, class
	violations  *boundedVec // kind
	quarantined prometheus.Counter
	egress      *boundedVec // outcome
	replies     *boundedVec // outcome
	uploads     *boundedVec // outcome
	slackCalls  *boundedVec // method, status
	slackErrors *boundedVec // method, code
	dlSeconds   prometheus.Histogram
	dlBytes     prometheus.Histogram
	launches    *boundedVec // outcome
}

// New returns daemon's metrics. It opens /proc/self/stat and
// /proc/self/fd for the process metrics now: call it before the daemon
// confines itself (Landlock then refuses new opens there; descriptors
// already open keep working). A process metric that cannot be read is
// left out.
func New(daemon string) *Set {
	s := &Set{daemon: daemon, reg: prometheus.NewRegistry()}
	r := prometheus.WrapRegistererWith(prometheus.Labels{"daemon": daemon}, s.reg)
	counter := func(name, help string, labels ...string) *boundedVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		r.MustRegister(v)
		return &boundedVec{vec: v, seen: make([]map[string]bool, len(labels))}
	}
	s.events = counter("ytkeep_audit_events_total", "Audit events logged, by event (docs/audit.md).", "event")
	s.alerts = counter("ytkeep_alerts_raised_total", "Alerts raised by this daemon, by event.", "event")
	s.alertsSent = prometheus.NewCounter(prometheus.CounterOpts{Name: "ytkeep_alerts_sent_total",
		Help: "Alerts handed on: posted to the admins' webhook (receiver, courier) or relayed to the courier (worker)."})
	// Plain counters and histograms are exported from 0 on: only in the
	// daemons that count them (vectors show only the series counted).
	if daemon != Downloader {
		r.MustRegister(s.alertsSent)
	}
	s.alertsDrop = counter("ytkeep_alerts_dropped_total", "Alerts not handed on, by reason (queue_full, post_failed, relay_failed).", "reason")
	s.commands = counter("ytkeep_commands_total", "Slash commands, requests and button clicks by outcome (accepted, refused, rate_limited, duplicate, help, requested) and reason (a refusal's, or a request's kind).", "outcome", "reason")
	s.jobs = counter("ytkeep_jobs_total", "Job state changes in the worker (claimed, started, finished, failed, cancelled), failures by class.", "state", "class")
	s.violations = counter("ytkeep_sandbox_violations_total", "Sandbox violations by kind (seccomp: SIGSYS; disk_budget, output_held, job_dir_left).", "kind")
	s.quarantined = prometheus.NewCounter(prometheus.CounterOpts{Name: "ytkeep_quarantined_files_total",
		Help: "Spool files refused and moved aside (an incident: only the daemons' users write the spool)."})
	if daemon != Downloader { // it reads no spool file
		r.MustRegister(s.quarantined)
	}
	s.egress = counter("ytkeep_egress_connections_total", "The downloader's egress proxy's connections as the worker logs them, by outcome (allowed, denied).", "outcome")
	s.replies = counter("ytkeep_replies_total", "The courier's answers to users, by outcome (replied, failed).", "outcome")
	s.uploads = counter("ytkeep_uploads_total", "The courier's uploads of stored files, by outcome (uploaded, refused, failed).", "outcome")
	s.slackCalls = counter("ytkeep_slack_api_calls_total", "HTTP requests to Slack's Web API and upload URL by method and HTTP status (429: rate limited; error: no answer).", "method", "status")
	s.slackErrors = counter("ytkeep_slack_api_errors_total", "Failed Web API calls by method and error code (Slack's, or the client's: ratelimited, client_*).", "method", "code")
	s.launches = counter("ytkeep_downloader_launches_total", "Download children the downloader started (started) and requests it refused (refused, busy).", "outcome")
	s.dlSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ytkeep_download_duration_seconds",
		Help:    "How long each download ran in the downloader (from launch to exit), whatever its outcome.",
		Buckets: []float64{1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600}})
	s.dlBytes = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ytkeep_download_bytes",
		Help:    "Size of each file the worker stored.",
		Buckets: prometheus.ExponentialBuckets(1<<20, 4, 8)}) // 1 MiB … 16 GiB
	if daemon == Worker {
		r.MustRegister(s.dlSeconds, s.dlBytes)
	}
	r.MustRegister(newProcessCollector())
	return s
}

// Gatherer is what File writes.
func (s *Set) Gatherer() prometheus.Gatherer { return s.reg }

// Daemon is the daemon's name.
func (s *Set) Daemon() string { return s.daemon }

// gaugeFunc registers a gauge whose value f gives when the file is
// written.
func (s *Set) gaugeFunc(name, help string, f func() float64) {
	prometheus.WrapRegistererWith(prometheus.Labels{"daemon": s.daemon}, s.reg).MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// QueueStats are the worker's queue's figures now.
type QueueStats struct {
	Depth   int           // jobs waiting for a slot
	Oldest  time.Duration // how long the first of them has waited
	Running int           // jobs the slots hold
}

// WatchQueue has the worker's queue gauges read from f at each write of
// the file. f must not block for long (it takes the queue's lock).
func (s *Set) WatchQueue(f func() QueueStats) {
	if s == nil {
		return
	}
	s.gaugeFunc("ytkeep_queue_depth", "Jobs queued in the worker, waiting for a slot (job files not yet read stay in incoming/).",
		func() float64 { return float64(f().Depth) })
	s.gaugeFunc("ytkeep_queue_oldest_age_seconds", "How long the oldest queued job has waited in the worker's queue (0: none).",
		func() float64 { return f().Oldest.Seconds() })
	s.gaugeFunc("ytkeep_jobs_running", "Jobs the worker's slots have taken (downloading or storing).",
		func() float64 { return float64(f().Running) })
}

// WatchChildren has the downloader's gauge of children running read from
// f at each write of the file.
func (s *Set) WatchChildren(f func() int) {
	if s == nil {
		return
	}
	s.gaugeFunc("ytkeep_downloader_children_running", "Download children running now.", func() float64 { return float64(f()) })
}

// AlertSent counts n alerts handed on.
func (s *Set) AlertSent(n int) {
	if s != nil {
		s.alertsSent.Add(float64(n))
	}
}

// AlertDropped counts n alerts lost for reason (a constant).
func (s *Set) AlertDropped(reason string, n int) {
	if s != nil && n > 0 {
		s.alertsDrop.add(float64(n), reason)
	}
}

// SlackCall counts one HTTP request to Slack: method (the Web API
// method, or "upload"), status (the HTTP status, 0: no answer).
func (s *Set) SlackCall(method string, status int) {
	if s == nil {
		return
	}
	st := "error"
	if status >= 100 && status <= 599 {
		st = itoa(status)
	}
	s.slackCalls.add(1, method, st)
}

// SlackError counts a failed Web API call by its error code.
func (s *Set) SlackError(method, code string) {
	if s != nil {
		s.slackErrors.add(1, method, code)
	}
}

// Downloaded records a download's run time in the downloader.
func (s *Set) Downloaded(d time.Duration) {
	if s != nil {
		s.dlSeconds.Observe(d.Seconds())
	}
}

// Stored records the size of a file the worker stored.
func (s *Set) Stored(bytes int64) {
	if s != nil {
		s.dlBytes.Observe(float64(bytes))
	}
}

// Launch counts a download request the downloader answered: "started",
// "refused" (malformed) or "busy".
func (s *Set) Launch(outcome string) {
	if s != nil {
		s.launches.add(1, outcome)
	}
}

// boundedVec is a counter vector whose labels take at most maxValues
// values each, each of a constant's form (label), else "other".
type boundedVec struct {
	vec  *prometheus.CounterVec
	mu   sync.Mutex
	seen []map[string]bool
}

func (b *boundedVec) add(n float64, values ...string) {
	b.mu.Lock()
	for i, v := range values {
		v = label(v)
		if b.seen[i] == nil {
			b.seen[i] = map[string]bool{}
		}
		if !b.seen[i][v] {
			if len(b.seen[i]) >= maxValues {
				v = "other"
			}
			b.seen[i][v] = true
		}
		values[i] = v
	}
	b.mu.Unlock()
	b.vec.WithLabelValues(values...).Add(n)
}

// label returns v if it has the form of the code's constants (1 to 48
// of a-z, 0-9, '_', '.', and not starting with '.'), "" as is, and
// "other" for anything else: error texts, and anything from outside.
func label(v string) string {
	if len(v) > 48 || (v != "" && v[0] == '.') {
		return "other"
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '.' || 'A' <= c && c <= 'Z' && i > 0) {
			return "other"
		}
	}
	return v
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
