package notify

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/metrics"
)

// AlertPoster is the production alert sink: it posts alerts to the
// admins' Slack channel through an incoming webhook. Slack accepts about
// one message per second per webhook, so alerts are batched: at most one
// post per Interval with up to MaxLines alerts, the rest counted. A full
// queue drops (and counts) rather than block the daemon.
//
// Alerts come in two lanes, each holding 256. Urgent alerts (see urgent:
// sandbox violations, crashes, quarantined files, whatever the worker
// relays) are evidence that a confined domain misbehaved; nobody outside
// can raise them. The others can be caused by a workspace user or, before
// the receiver aggregates them (refusalGate), by anyone who can reach the
// endpoint. Every post takes the urgent alerts first, so no amount of the
// others delays or drops one.
type AlertPoster struct {
	URL      string
	Notifier *Notifier
	Interval time.Duration
	MaxLines int
	Log      *slog.Logger // a logger without the sink (no loops)
	// Metrics counts the alerts posted and dropped (nil: not counted).
	Metrics *metrics.Set

	q, urgent              chan audit.AlertRecord
	dropped, droppedUrgent atomic.Int64
}

// NewAlertPoster returns a poster to webhookURL; call Run.
func NewAlertPoster(webhookURL string, n *Notifier, log *slog.Logger) *AlertPoster {
	return &AlertPoster{URL: webhookURL, Notifier: n, Interval: time.Second, MaxLines: 20, Log: log,
		q: make(chan audit.AlertRecord, 256), urgent: make(chan audit.AlertRecord, 256)}
}

// urgent reports whether r goes in the urgent lane: a sandbox violation,
// a crash, a quarantined spool file (only the daemons' users can write
// what a daemon quarantines), an alert relayed from the worker
// (from=worker, which only the courier's relay sets) or one kept while a daemon
// was down (pending=true, PendingAlerts.Deliver).
func urgent(r audit.AlertRecord) bool {
	switch r.Event {
	case audit.Violation, audit.Crashed, audit.Quarantined:
		return true
	}
	return r.Attrs["from"] == "worker" || r.Attrs["pending"] == "true"
}

// Alert queues r without blocking.
func (p *AlertPoster) Alert(r audit.AlertRecord) {
	q, dropped := p.q, &p.dropped
	if urgent(r) {
		q, dropped = p.urgent, &p.droppedUrgent
	}
	select {
	case q <- r:
	default:
		dropped.Add(1)
		p.Metrics.AlertDropped("queue_full", 1)
	}
}

// Run posts queued alerts until ctx ends.
func (p *AlertPoster) Run(ctx context.Context) {
	for {
		var first audit.AlertRecord
		select {
		case <-ctx.Done():
			return
		case first = <-p.urgent:
		case first = <-p.q:
		}
		// Whatever is left waits for the next post; only a full queue drops.
		batch := p.drain(p.MaxLines, first)
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := p.post(pctx, batch); err != nil {
			p.Log.Error("couldn't post alerts to the admin channel", "alerts", len(batch), "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-time.After(p.Interval):
		}
	}
}

// Flush posts what is queued now, MaxLines alerts a post, and returns
// (for short-lived processes: the exit alert).
func (p *AlertPoster) Flush(ctx context.Context) error {
	for {
		batch := p.drain(p.MaxLines)
		if len(batch) == 0 {
			return nil
		}
		if err := p.post(ctx, batch); err != nil {
			return err
		}
	}
}

// drain returns taken (alerts already taken from the lanes) and up to max
// in all queued alerts, without waiting: urgent ones first, then the
// others, each in the order they came.
func (p *AlertPoster) drain(max int, taken ...audit.AlertRecord) []audit.AlertRecord {
	var first, rest []audit.AlertRecord
	for _, r := range taken {
		if urgent(r) {
			first = append(first, r)
		} else {
			rest = append(rest, r)
		}
	}
	fill := func(q chan audit.AlertRecord, into *[]audit.AlertRecord) {
		for len(first)+len(rest) < max {
			select {
			case r := <-q:
				*into = append(*into, r)
			default:
				return
			}
		}
	}
	fill(p.urgent, &first)
	fill(p.q, &rest)
	return append(first, rest...)
}

func (p *AlertPoster) post(ctx context.Context, batch []audit.AlertRecord) error {
	text := p.render(batch, p.dropped.Swap(0))
	if n := p.droppedUrgent.Swap(0); n > 0 {
		text += fmt.Sprintf("\n…and %d more urgent alerts (violations, crashes, quarantined files, the worker's) dropped (queue full); see the audit log.", n)
	}
	err := p.Notifier.PostWebhook(ctx, p.URL, text)
	if err != nil {
		p.Metrics.AlertDropped("post_failed", len(batch))
	} else {
		p.Metrics.AlertSent(len(batch))
	}
	return err
}

func (p *AlertPoster) render(batch []audit.AlertRecord, dropped int64) string {
	var b strings.Builder
	b.WriteString(":rotating_light: *ytkeep security alert*")
	for _, r := range batch {
		b.WriteString("\n• `")
		b.WriteString(strings.ReplaceAll(Escape(r.Text()), "`", "'"))
		b.WriteString("`")
	}
	if dropped > 0 {
		fmt.Fprintf(&b, "\n…and %d more alerts dropped (queue full); see the audit log.", dropped)
	}
	return b.String()
}

// Escape replaces Slack's three control characters with their entities,
// so that text cannot open a link, a mention or an entity ("<…>", "&…;").
// It leaves mrkdwn (*bold*…) and Slack's automatic linking of bare URLs,
// domains and @here alone: alone it suits only text shown as code.
func Escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
