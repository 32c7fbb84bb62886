package receiver

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ytkeep/ytkeep/internal/audit"
)

// AlertPoster is the production alert sink: it posts alerts to the
// admins' Slack channel through an incoming webhook. Slack accepts about
// one message per second per webhook, so alerts are batched: at most one
// post per Interval with up to MaxLines alerts, the rest counted. A full
// queue drops (and counts) rather than block the daemon.
type AlertPoster struct {
	URL      string
	Notifier *Notifier
	Interval time.Duration
	MaxLines int
	Log      *slog.Logger // a logger without the sink (no loops)

	q       chan audit.AlertRecord
	dropped atomic.Int64
}

// NewAlertPoster returns a poster to webhookURL; call Run.
func NewAlertPoster(webhookURL string, n *Notifier, log *slog.Logger) *AlertPoster {
	return &AlertPoster{URL: webhookURL, Notifier: n, Interval: time.Second, MaxLines: 20, Log: log,
		q: make(chan audit.AlertRecord, 256)}
}

// Alert queues r without blocking.
func (p *AlertPoster) Alert(r audit.AlertRecord) {
	select {
	case p.q <- r:
	default:
		p.dropped.Add(1)
	}
}

// Run posts queued alerts until ctx ends.
func (p *AlertPoster) Run(ctx context.Context) {
	for {
		var first audit.AlertRecord
		select {
		case <-ctx.Done():
			return
		case first = <-p.q:
		}
		// Whatever is left waits for the next post; only a full queue drops.
		batch := append([]audit.AlertRecord{first}, p.drain(p.MaxLines-1)...)
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

// drain takes up to max queued alerts without waiting.
func (p *AlertPoster) drain(max int) []audit.AlertRecord {
	var batch []audit.AlertRecord
	for len(batch) < max {
		select {
		case r := <-p.q:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

func (p *AlertPoster) post(ctx context.Context, batch []audit.AlertRecord) error {
	return p.Notifier.PostWebhook(ctx, p.URL, p.render(batch, p.dropped.Swap(0)))
}

func (p *AlertPoster) render(batch []audit.AlertRecord, dropped int64) string {
	var b strings.Builder
	b.WriteString(":rotating_light: *ytkeep security alert*")
	for _, r := range batch {
		b.WriteString("\n• `")
		b.WriteString(strings.ReplaceAll(escape(r.Text()), "`", "'"))
		b.WriteString("`")
	}
	if dropped > 0 {
		fmt.Fprintf(&b, "\n…and %d more alerts dropped (queue full); see the audit log.", dropped)
	}
	return b.String()
}
