package notify

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/testutil"
)

type syncBuffer = testutil.SyncBuffer

type fakeSlack = testutil.Slack

func newFakeSlack(tb testing.TB) *fakeSlack { return testutil.NewSlack(tb) }

type memWebhook = testutil.MemWebhook

// TestAlertPosterBatches: a burst of alerts becomes a few posts (Slack
// takes about one per second per webhook), with every alert in them, each
// line escaped; a full queue is counted, never blocks.
func TestAlertPosterBatches(t *testing.T) {
	slack := newFakeSlack(t)
	p := NewAlertPoster(slack.URL()+"/services/admin", NewNotifier(), slog.New(slog.DiscardHandler))
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
	p2 := NewAlertPoster(slack.URL()+"/services/admin2", NewNotifier(), slog.New(slog.DiscardHandler))
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

// TestAlertPosterUrgentFirst: urgent alerts (violations, crashes,
// quarantined files, the worker's) have their own lane and lead every
// post, however many other alerts are queued: they are neither dropped
// nor delayed behind alerts a workspace user can cause.
func TestAlertPosterUrgentFirst(t *testing.T) {
	hook := &memWebhook{}
	p := NewAlertPoster("https://hooks.slack.com/services/T0/B0/webhooksecret",
		&Notifier{Client: &http.Client{Transport: hook}, Attempts: 1}, slog.New(slog.DiscardHandler))
	for i := range 300 {
		p.Alert(audit.AlertRecord{Daemon: "receiver", Event: audit.Refused, Attrs: map[string]string{"reason": "unauthorized_user", "n": strconv.Itoa(i)}})
	}
	urgent := []audit.AlertRecord{
		{Daemon: "receiver", Event: audit.Violation, Attrs: map[string]string{"from": "worker", "signal": "SIGSYS"}},
		{Daemon: "receiver", Event: audit.Crashed, Attrs: map[string]string{"service": "ytkeep-receiver", "pending": "true"}},
		{Daemon: "receiver", Event: audit.Quarantined, Attrs: map[string]string{"file": "x.result"}},
		{Daemon: "receiver", Event: audit.Refused, Attrs: map[string]string{"from": "worker", "reason": "relayed"}},
	}
	for _, a := range urgent {
		p.Alert(a)
	}
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	posts := hook.Posts()
	if len(posts) == 0 {
		t.Fatal("nothing posted")
	}
	lines := strings.Split(posts[0], "\n")[1:]
	for i, a := range urgent {
		if i >= len(lines) || !strings.Contains(lines[i], Escape(a.Text())) {
			t.Errorf("first post, line %d: want urgent alert %q first:\n%s", i+1, a.Text(), posts[0])
		}
	}
	all := strings.Join(posts, "\n")
	if !strings.Contains(all, "and 44 more alerts dropped") {
		t.Error("the 44 ordinary alerts past the queue's 256 were not counted")
	}
	if strings.Contains(all, "urgent alerts") {
		t.Errorf("urgent alerts dropped:\n%s", all)
	}
}

func TestNotifierRetries(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		io.Copy(io.Discard, r.Body)
		if n == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	if err := NewNotifier().Post(context.Background(), srv.URL, "hi"); err != nil || calls != 2 {
		t.Fatalf("Post = %v after %d calls", err, calls)
	}
	redirect := httptest.NewServer(http.RedirectHandler("http://169.254.169.254/", http.StatusFound))
	defer redirect.Close()
	if err := NewNotifier().Post(context.Background(), redirect.URL, "hi"); err == nil {
		t.Fatal("followed a redirect")
	}
}
