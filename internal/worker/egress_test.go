package worker

import (
	"log/slog"
	"testing"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/egress"
)

type alertCount struct{ alerts []audit.AlertRecord }

func (a *alertCount) Alert(r audit.AlertRecord) { a.alerts = append(a.alerts, r) }

// A flood of refused destinations cannot drown the admins' channel: the
// refusals that name no job are one alert a minute with their count, and
// one job raises at most maxEgressAlerts a minute.
func TestEgressAlertsAreBounded(t *testing.T) {
	sink := &alertCount{}
	l := &egressLog{log: audit.WithSink(slog.New(slog.DiscardHandler), "worker", sink), perJob: map[string]int{}}
	const job = "abcdefghijklmnopqrstuvwxyz"
	for i := 0; i < 500; i++ {
		l.record(egress.Event{Refused: "no job with these credentials", Host: "169.254.169.254", Port: 80})
	}
	for i := 0; i < 50; i++ {
		l.record(egress.Event{Job: job, Video: "dQw4w9WgXcQ", Host: "evil.example", Port: 443, Refused: "evil.example is not an allowed host"})
	}
	l.record(egress.Event{Job: job, Video: "dQw4w9WgXcQ", Host: "rr1.googlevideo.com", Port: 443, Up: 1, Down: 2})
	if len(sink.alerts) != maxEgressAlerts {
		t.Fatalf("%d alerts during the minute, want %d (the job's)", len(sink.alerts), maxEgressAlerts)
	}
	l.minute()
	if len(sink.alerts) != maxEgressAlerts+1 {
		t.Fatalf("%d alerts after the minute, want one more", len(sink.alerts))
	}
	last := sink.alerts[len(sink.alerts)-1]
	if last.Event != audit.EgressDenied || last.Attrs["count"] != "500" {
		t.Fatalf("summary %+v", last)
	}
	// A new minute: the job may alert again; nothing anonymous to sum.
	l.record(egress.Event{Job: job, Video: "dQw4w9WgXcQ", Host: "evil.example", Port: 443, Refused: "not allowed"})
	l.minute()
	if len(sink.alerts) != maxEgressAlerts+2 {
		t.Fatalf("%d alerts, want %d", len(sink.alerts), maxEgressAlerts+2)
	}
}
