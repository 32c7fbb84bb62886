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
	stopped := make(chan struct{})
	go func() {
		p.Run(ctx)
		close(stopped)
	}()
	awaitPosts(t, slack, 3)
	// The 45 alerts were queued before Run started, and the third post
	// took the last of them: an alert queued now must make the fourth post
	// on its own. A fourth post of the burst would come before it.
	last := audit.AlertRecord{Daemon: "receiver", Event: audit.Violation, Attrs: map[string]string{"n": "last"}}
	p.Alert(last)
	awaitPosts(t, slack, 4)
	cancel()
	select {
	case <-stopped:
	case <-time.After(alertHangGuard):
		t.Fatal("Run did not return when its context ended")
	}
	posts := slack.Posts()
	if len(posts) != 4 {
		t.Fatalf("%d posts for 45 alerts in batches of 20 and one more, want 3 and 1:\n%s", len(posts), strings.Join(posts, "\n"))
	}
	if want := "/services/admin " + p.render([]audit.AlertRecord{last}, 0); posts[3] != want {
		t.Errorf("post after the burst %q, want only the alert queued after it: %q", posts[3], want)
	}
	// In order, 20 a post: n=0..19, n=20..39, n=40..44.
	for i, post := range posts[:3] {
		lines := strings.Split(post, "\n")[1:]
		if want := min(20, 45-20*i); len(lines) != want {
			t.Errorf("post %d has %d alerts, want %d", i+1, len(lines), want)
			continue
		}
		for j, line := range lines {
			if n := 20*i + j; !strings.Contains(line, fmt.Sprintf(" n=%d ", n)) {
				t.Errorf("post %d line %d is %q, want alert %d", i+1, j+1, line, n)
			}
		}
	}
	all := strings.Join(posts[:3], "\n")
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

// alertHangGuard bounds a wait for what a working machine does at once,
// even loaded: reaching it means the test hung, never that it was slow.
const alertHangGuard = time.Minute

// awaitPosts waits until f has at least n posts and returns them.
func awaitPosts(t *testing.T, f *fakeSlack, n int) []string {
	t.Helper()
	for deadline := time.Now().Add(alertHangGuard); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if p := f.Posts(); len(p) >= n {
			return p
		}
	}
	t.Fatalf("posts %q, want %d", f.Posts(), n)
	return nil
}
