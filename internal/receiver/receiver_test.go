package receiver

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/slackreq"
	"github.com/ytkeep/ytkeep/internal/spool"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type fakeSlack struct {
	mu    sync.Mutex
	posts []string
	srv   *httptest.Server
}

func newFakeSlack(t *testing.T) *fakeSlack {
	f := &fakeSlack{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct{ Text string }
		json.NewDecoder(r.Body).Decode(&m)
		f.mu.Lock()
		f.posts = append(f.posts, r.URL.Path+" "+m.Text)
		f.mu.Unlock()
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeSlack) Posts() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.posts...)
}

type fixture struct {
	s      *Service
	layout spool.Layout
	log    *syncBuffer
	slack  *fakeSlack
	now    time.Time
}

func newFixture(t *testing.T) *fixture {
	root := t.TempDir()
	f := &fixture{layout: spool.Layout{Root: filepath.Join(root, "spool")}, log: &syncBuffer{}, slack: newFakeSlack(t), now: time.Now()}
	if err := f.layout.CreateSingleUser(filepath.Join(root, "dl")); err != nil {
		t.Fatal(err)
	}
	var err error
	f.s, err = New(Options{
		SpoolDir: f.layout.Root, Command: "/ytkeep",
		AllowedTeams: []string{"T1"}, AllowedChannels: []string{"C1"}, AllowedUsers: []string{"U1", "U2"},
		ResponseURLAllowed: func(u string) bool { return strings.HasPrefix(u, f.slack.srv.URL+"/") },
		PerUserPerMinute:   3,
		Now:                func() time.Time { return f.now },
		Logger:             slog.New(slog.NewJSONHandler(f.log, nil)),
	}, NewNotifier())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) cmd(text string) *slackreq.Command {
	return &slackreq.Command{TeamID: "T1", ChannelID: "C1", UserID: "U1", Command: "/ytkeep", Text: text, ResponseURL: f.slack.srv.URL + "/r/1"}
}

func (f *fixture) incoming(t *testing.T) []*job.Job {
	t.Helper()
	ents, _ := os.ReadDir(f.layout.Incoming())
	var jobs []*job.Job
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(f.layout.Incoming(), e.Name()))
		j, err := job.ParseJob(b)
		if err != nil {
			t.Fatalf("receiver wrote an invalid job: %v", err)
		}
		jobs = append(jobs, j)
	}
	return jobs
}

func TestHandle(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name   string
		mut    func(c *slackreq.Command)
		want   string
		reason string
	}{
		{"other team", func(c *slackreq.Command) { c.TeamID = "T2" }, "workspace is not allowed", "unauthorized_team"},
		{"other user", func(c *slackreq.Command) { c.UserID = "U9" }, "not allowed to use /ytkeep", "unauthorized_user"},
		{"other channel", func(c *slackreq.Command) { c.ChannelID = "C9" }, "not enabled in this channel", "unauthorized_channel"},
		{"other command", func(c *slackreq.Command) { c.Command = "/other" }, "only answers /ytkeep", "unknown_command"},
		{"lowercase id", func(c *slackreq.Command) { c.UserID = "u1" }, "malformed", "malformed_ids"},
		{"foreign response_url", func(c *slackreq.Command) { c.ResponseURL = "https://attacker.example/x" }, "malformed", "response_url"},
		{"bad url", func(c *slackreq.Command) { c.Text = "https://youtu.be/short" }, "valid video ID", "bad_url_id"},
		{"bad format", func(c *slackreq.Command) { c.Text = "https://youtu.be/dQw4w9WgXcQ 8k" }, "Unknown format", "bad_format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := f.cmd("https://youtu.be/dQw4w9WgXcQ")
			tt.mut(c)
			if got := f.s.Handle(c); !strings.Contains(got, tt.want) {
				t.Fatalf("reply %q, want %q", got, tt.want)
			}
			if !strings.Contains(f.log.String(), `"reason":"`+tt.reason+`"`) {
				t.Fatalf("no audit event for %s", tt.reason)
			}
		})
	}
	if n := len(f.incoming(t)); n != 0 {
		t.Fatalf("refusals queued %d jobs", n)
	}
	reply := f.s.Handle(f.cmd("<https://www.youtube.com/watch?v=dQw4w9WgXcQ|My video title> 480P"))
	jobs := f.incoming(t)
	if len(jobs) != 1 || jobs[0].Video != "dQw4w9WgXcQ" || jobs[0].Format != job.Format480 || !strings.Contains(reply, jobs[0].ID) {
		t.Fatalf("reply %q, jobs %+v", reply, jobs)
	}
	// The job file carries no response_url; the private state does.
	b, _ := os.ReadFile(filepath.Join(f.layout.Incoming(), jobs[0].FileName()))
	if bytes.Contains(b, []byte("http")) {
		t.Fatalf("job file contains a URL: %s", b)
	}
	st, err := os.Stat(filepath.Join(f.layout.Receiver("jobs"), jobs[0].ID+".json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v", st, err)
	}
}

func TestRateLimit(t *testing.T) {
	f := newFixture(t)
	for i := 0; i < 3; i++ {
		if r := f.s.Handle(f.cmd("https://youtu.be/dQw4w9WgXcQ")); !strings.HasPrefix(r, "Queued") {
			t.Fatalf("job %d: %q", i, r)
		}
	}
	if r := f.s.Handle(f.cmd("https://youtu.be/dQw4w9WgXcQ")); !strings.Contains(r, "please wait") {
		t.Fatalf("fourth job in a minute: %q", r)
	}
	c := f.cmd("https://youtu.be/dQw4w9WgXcQ")
	c.UserID = "U2"
	if r := f.s.Handle(c); !strings.HasPrefix(r, "Queued") {
		t.Fatalf("another user is limited too: %q", r)
	}
	f.now = f.now.Add(61 * time.Second)
	if r := f.s.Handle(f.cmd("https://youtu.be/dQw4w9WgXcQ")); !strings.HasPrefix(r, "Queued") {
		t.Fatalf("after a minute: %q", r)
	}
}

// writeResult plays the worker.
func (f *fixture) writeResult(t *testing.T, r *job.Result) {
	t.Helper()
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.layout.Results(), r.FileName()), b, 0o640); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) runResults(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.s.RunResults(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

func waitPosts(t *testing.T, f *fakeSlack, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if p := f.Posts(); len(p) >= n {
			return p
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("posts %q, want %d", f.Posts(), n)
	return nil
}

func TestResults(t *testing.T) {
	f := newFixture(t)
	f.s.Handle(f.cmd("https://youtu.be/dQw4w9WgXcQ 720p"))
	j := f.incoming(t)[0]
	f.runResults(t)

	// Hostile results: unknown job, mismatched file, wrong status for a name.
	f.writeResult(t, &job.Result{V: 1, Job: job.NewID(), Status: job.StatusDone, File: "dQw4w9WgXcQ-720p.mp4"})
	f.writeResult(t, &job.Result{V: 1, Job: j.ID, Status: job.StatusDone, File: "aaaaaaaaaaa-720p.mp4"})
	os.WriteFile(filepath.Join(f.layout.Results(), j.ID+".started.result"), []byte(`{"v":1,"job":"`+j.ID+`","status":"failed","class":"timeout"}`), 0o640)
	os.WriteFile(filepath.Join(f.layout.Results(), "junk"), []byte("x"), 0o640)
	deadline := time.Now().Add(5 * time.Second)
	for {
		q, _ := os.ReadDir(f.layout.Receiver("quarantine"))
		if len(q) == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("quarantine holds %d files, want 4\n%s", len(q), f.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p := f.slack.Posts(); len(p) != 0 {
		t.Fatalf("hostile results were posted: %q", p)
	}

	f.writeResult(t, &job.Result{V: 1, Job: j.ID, Status: job.StatusStarted})
	f.writeResult(t, &job.Result{V: 1, Job: j.ID, Status: job.StatusDone, Title: "<!channel> & <https://evil|click>",
		Duration: 3725, Size: 5 << 20, File: "dQw4w9WgXcQ-720p.mp4"})
	posts := waitPosts(t, f.slack, 2)
	if !strings.Contains(posts[0], "Downloading `dQw4w9WgXcQ` (720p)") {
		t.Errorf("started post %q", posts[0])
	}
	want := "/r/1 :white_check_mark: Saved *&lt;!channel&gt; &amp; &lt;https://evil|click&gt;* (1:02:05, 5.0 MiB) as `dQw4w9WgXcQ-720p.mp4`."
	if posts[1] != want {
		t.Errorf("done post\n%q, want\n%q", posts[1], want)
	}
	// Final: the state is gone, so a replayed result is refused.
	time.Sleep(50 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(f.layout.Receiver("jobs"), j.ID+".json")); !os.IsNotExist(err) {
		t.Errorf("state kept after the final result: %v", err)
	}
}

func TestReplyBudget(t *testing.T) {
	f := newFixture(t)
	f.s.Handle(f.cmd("https://youtu.be/dQw4w9WgXcQ"))
	j := f.incoming(t)[0]
	p, err := f.s.loadState(j.ID)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 8; i++ {
		f.s.reply(context.Background(), p, &job.Result{V: 1, Job: j.ID, Status: job.StatusStarted})
	}
	if n := len(f.slack.Posts()); n != MaxPosts {
		t.Fatalf("%d posts to one response_url, want %d", n, MaxPosts)
	}
	saved, _ := f.s.loadState(j.ID)
	if saved.Posts != MaxPosts {
		t.Fatalf("persisted post count %d", saved.Posts)
	}
	// An expired response_url is not posted to.
	f.s.Handle(f.cmd("https://youtu.be/dQw4w9WgXcQ"))
	var p2 *pending
	for _, jj := range f.incoming(t) {
		if jj.ID != j.ID {
			p2, _ = f.s.loadState(jj.ID)
		}
	}
	f.now = f.now.Add(ResponseURLLifetime)
	f.s.reply(context.Background(), p2, &job.Result{V: 1, Job: p2.Job, Status: job.StatusStarted})
	if n := len(f.slack.Posts()); n != MaxPosts {
		t.Fatal("posted to an expired response_url")
	}
	if !strings.Contains(f.log.String(), "response_url_expired") {
		t.Fatal("no audit event for the expired response_url")
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

func TestSplitCommand(t *testing.T) {
	for in, want := range map[string][]string{
		"":                         nil,
		"  help ":                  {"help"},
		"<https://x|a b c> 720p":   {"<https://x|a b c>", "720p"},
		"https://youtu.be/x audio": {"https://youtu.be/x", "audio"},
		"<https://x|label":         {"<https://x|label"},
	} {
		got := splitCommand(in)
		if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
			t.Errorf("splitCommand(%q) = %q, want %q", in, got, want)
		}
	}
}
