package receiver

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/job"
)

// TestAlertPosterBatches: a burst of alerts becomes a few posts (Slack
// takes about one per second per webhook), with every alert in them, each
// line escaped; a full queue is counted, never blocks.
func TestAlertPosterBatches(t *testing.T) {
	slack := newFakeSlack(t)
	p := NewAlertPoster(slack.srv.URL+"/services/admin", NewNotifier(), slog.New(slog.DiscardHandler))
	p.Interval = 50 * time.Millisecond
	log := audit.WithSink(slog.New(slog.DiscardHandler), "receiver", p)
	for i := range 45 {
		audit.Alert(log, audit.Refused, "reason", "bad_signature", "n", i, "remote", "<!channel>\n`x`")
	}
	audit.Event(log, audit.Accepted, "job", "not an alert")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	waitPosts(t, slack, 3)
	time.Sleep(200 * time.Millisecond) // and no fourth
	posts := slack.Posts()
	if len(posts) != 3 {
		t.Fatalf("%d posts for 45 alerts in batches of 20, want 3", len(posts))
	}
	all := strings.Join(posts, "\n")
	for i := range 45 {
		if !strings.Contains(all, fmt.Sprintf(" n=%d ", i)) {
			t.Errorf("alert %d missing", i)
		}
	}
	if strings.Contains(all, "not an alert") {
		t.Error("an ordinary event reached the admin channel")
	}
	if strings.Contains(all, "<!channel>") || strings.Contains(all, "\n`x") {
		t.Errorf("alert text not escaped: %q", posts[0])
	}
	if !strings.HasPrefix(posts[0], "/services/admin :rotating_light:") {
		t.Errorf("post %q", posts[0])
	}

	// Nobody draining: the queue fills, the rest is counted and reported.
	p2 := NewAlertPoster(slack.srv.URL+"/services/admin2", NewNotifier(), slog.New(slog.DiscardHandler))
	for range 300 {
		p2.Alert(audit.AlertRecord{Daemon: "receiver", Event: audit.Refused})
	}
	before := len(slack.Posts())
	if err := p2.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	flushed := slack.Posts()[before:]
	if len(flushed) != 13 { // 256 queued, 20 a post
		t.Errorf("Flush made %d posts of 256 alerts, want 13 of at most 20", len(flushed))
	}
	if all := strings.Join(flushed, "\n"); !strings.Contains(all, "and 44 more alerts dropped") {
		t.Errorf("dropped alerts not reported: %q", flushed[0][:80])
	}
}

// TestRelayedAlerts: an alert file from the worker becomes an alert of
// the receiver, marked as the worker's; hostile ones are quarantined.
func TestRelayedAlerts(t *testing.T) {
	f := newFixture(t)
	f.runResults(t)
	put := func(name string, data []byte) {
		tmp := filepath.Join(f.layout.Root, "."+name)
		if err := os.WriteFile(tmp, data, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(f.layout.Results(), name)); err != nil {
			t.Fatal(err)
		}
	}
	good, _ := json.Marshal(audit.AlertRecord{Time: time.Now(), Daemon: "receiver", Event: audit.Violation,
		Attrs: map[string]string{"job": "j1", "signal": "SIGSYS", "from": "forged"}})
	put(job.AlertName(job.NewID()), good)
	hostile := map[string][]byte{
		"unknown event": []byte(`{"event":"rm -rf","attrs":{}}`),
		"extra field":   []byte(`{"event":"violation","text":"<!channel>"}`),
		"too large":     []byte(`{"event":"violation","attrs":{"x":"` + strings.Repeat("a", 9000) + `"}}`),
		"not json":      []byte("SIGSYS"),
	}
	for _, data := range hostile {
		put(job.AlertName(job.NewID()), data)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		q, _ := os.ReadDir(f.layout.Receiver("quarantine"))
		log := f.log.String()
		if len(q) == len(hostile) && strings.Contains(log, `"event":"violation"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("quarantine holds %d files, want %d\n%s", len(q), len(hostile), log)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var relayed map[string]any
	for _, line := range strings.Split(f.log.String(), "\n") {
		if strings.Contains(line, `"event":"violation"`) {
			json.Unmarshal([]byte(line), &relayed)
		}
	}
	if relayed["alert"] != true || relayed["from"] != "worker" || relayed["signal"] != "SIGSYS" || relayed["job"] != "j1" {
		t.Errorf("relayed alert %v: want alert=true from=worker (never what the file claims) signal and job kept", relayed)
	}
	if left, _ := os.ReadDir(f.layout.Receiver("claimed")); len(left) != 0 {
		t.Errorf("%d files left claimed", len(left))
	}
}
