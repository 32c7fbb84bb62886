package receiver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

func newFixture(t *testing.T) *fixture { return newFixtureWith(t, nil) }

// newFixtureWith makes a fixture whose options mut changes first.
func newFixtureWith(t *testing.T, mut func(*Options)) *fixture {
	root := t.TempDir()
	f := &fixture{layout: spool.Layout{Root: filepath.Join(root, "spool")}, log: &syncBuffer{}, slack: newFakeSlack(t), now: time.Now()}
	if err := f.layout.CreateSingleUser(filepath.Join(root, "dl")); err != nil {
		t.Fatal(err)
	}
	opt := Options{
		SpoolDir: f.layout.Root, Command: "/ytkeep", AppID: "A0YTKEEP01",
		AllowedTeams: []string{"T1"}, AllowedChannels: []string{"C1"}, AllowedUsers: []string{"U1", "U2"},
		ResponseURLAllowed: func(u string) bool { return strings.HasPrefix(u, f.slack.srv.URL+"/") },
		PerUserPerMinute:   3,
		Now:                func() time.Time { return f.now },
		Logger:             slog.New(slog.NewJSONHandler(f.log, nil)),
	}
	if mut != nil {
		mut(&opt)
	}
	var err error
	f.s, err = New(opt, NewNotifier())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) cmd(text string) *slackreq.Command {
	return &slackreq.Command{TeamID: "T1", ChannelID: "C1", UserID: "U1", Command: "/ytkeep", Text: text,
		ResponseURL: f.slack.srv.URL + "/r/1", APIAppID: "A0YTKEEP01"}
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
		alert  bool
	}{
		{"other team", func(c *slackreq.Command) { c.TeamID = "T2" }, "workspace is not allowed", "unauthorized_team", true},
		{"other user", func(c *slackreq.Command) { c.UserID = "U9" }, "not allowed to use /ytkeep", "unauthorized_user", true},
		{"other channel", func(c *slackreq.Command) { c.ChannelID = "C9" }, "not enabled in this channel", "unauthorized_channel", true},
		{"other command", func(c *slackreq.Command) { c.Command = "/other" }, "only answers /ytkeep", "unknown_command", true},
		{"lowercase id", func(c *slackreq.Command) { c.UserID = "u1" }, "malformed", "malformed_ids", true},
		{"malformed enterprise", func(c *slackreq.Command) { c.EnterpriseID = "e1" }, "malformed", "malformed_ids", true},
		{"foreign response_url", func(c *slackreq.Command) { c.ResponseURL = "https://attacker.example/x" }, "malformed", "response_url", true},
		{"bad url", func(c *slackreq.Command) { c.Text = "https://youtu.be/short" }, "valid video ID", "bad_url_id", false},
		{"bad format", func(c *slackreq.Command) { c.Text = "https://youtu.be/dQw4w9WgXcQ 8k" }, "Unknown format", "bad_format", false},
		{"other app", func(c *slackreq.Command) { c.APIAppID = "A0OTHER01" }, "sent to another Slack app", "other_app", true},
		{"no app", func(c *slackreq.Command) { c.APIAppID = "" }, "sent to another Slack app", "other_app", true},
		{"double escaped", func(c *slackreq.Command) { c.Text = "https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;amp;t=30s" }, "query string is malformed", "bad_url_syntax", false},
		{"user mention", func(c *slackreq.Command) { c.Text = "<@U123ABC|bob> https://youtu.be/dQw4w9WgXcQ" }, "mentions a person", "mention", false},
		{"channel mention after the link", func(c *slackreq.Command) { c.Text = "https://youtu.be/dQw4w9WgXcQ <#C123ABC|general>" }, "mentions a person", "mention", false},
		{"plain mention", func(c *slackreq.Command) { c.Text = "@bob" }, "mentions a person", "mention", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := f.cmd("https://youtu.be/dQw4w9WgXcQ")
			tt.mut(c)
			before := len(f.log.String())
			if got := f.s.Handle(c); !strings.Contains(got, tt.want) {
				t.Fatalf("reply %q, want %q", got, tt.want)
			}
			logged := f.log.String()[before:]
			if !strings.Contains(logged, `"reason":"`+tt.reason+`"`) {
				t.Fatalf("no audit event for %s: %s", tt.reason, logged)
			}
			if alert := strings.Contains(logged, `"alert":true`); alert != tt.alert {
				t.Fatalf("alert %v, want %v: %s", alert, tt.alert, logged)
			}
		})
	}
	if n := len(f.incoming(t)); n != 0 {
		t.Fatalf("refusals queued %d jobs", n)
	}
	reply := f.s.Handle(f.cmd("<https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;list=PL1|My video title> 480P"))
	jobs := f.incoming(t)
	if len(jobs) != 1 || jobs[0].Video != "dQw4w9WgXcQ" || jobs[0].Format != job.Format480 || !strings.Contains(reply, jobs[0].ID) {
		t.Fatalf("reply %q, jobs %+v", reply, jobs)
	}
	// Results go to the response_url, which Slack accepts for 30
	// minutes: the user is told.
	if !strings.Contains(reply, "if that is within 30 minutes") {
		t.Errorf("the reply does not say a result after 30 minutes is not posted here: %q", reply)
	}
	// The job file carries the response_url only sealed.
	b, _ := os.ReadFile(filepath.Join(f.layout.Incoming(), jobs[0].FileName()))
	if bytes.Contains(b, []byte("http")) || bytes.Contains(b, []byte("/r/1")) {
		t.Fatalf("job file reveals the response_url: %s", b)
	}
	info, err := f.s.sealer.open(jobs[0].ID, jobs[0].Reply)
	if err != nil || info.URL != f.slack.srv.URL+"/r/1" || info.Video != "dQw4w9WgXcQ" || info.Format != job.Format480 {
		t.Fatalf("token opens to %+v, %v", info, err)
	}
	st, err := os.Stat(f.layout.Receiver(keyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("reply key: %v %v", st, err)
	}
}

func TestSealer(t *testing.T) {
	f := newFixture(t)
	id, other := job.NewID(), job.NewID()
	tok, err := f.s.sealer.seal(id, replyInfo{URL: "https://hooks.slack.com/x", Created: 1, Video: "dQw4w9WgXcQ", Format: job.FormatBest})
	if err != nil || !job.ValidToken(tok) {
		t.Fatalf("seal: %q %v", tok, err)
	}
	if _, err := f.s.sealer.open(other, tok); err == nil {
		t.Fatal("a token opened under another job ID")
	}
	flipped := []byte(tok)
	flipped[len(flipped)/2] ^= 1
	if _, err := f.s.sealer.open(id, string(flipped)); err == nil {
		t.Fatal("a tampered token opened")
	}
	// A second receiver start reads the same key.
	again, err := loadSealer(mustOpen(t, f.layout.Receiver("")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.open(id, tok); err != nil {
		t.Fatalf("token from before a restart: %v", err)
	}
}

func mustOpen(t *testing.T, path string) *spool.Dir {
	d, err := spool.OpenDir(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
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
	// Through a temporary name, as the worker's outbox does: the receiver
	// must never see a half-written file.
	tmp := filepath.Join(f.layout.Root, "."+r.FileName())
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(f.layout.Results(), r.FileName())); err != nil {
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
	c2 := f.cmd("https://youtu.be/aaaaaaaaaaa 720p")
	c2.ResponseURL = f.slack.srv.URL + "/r/2"
	f.s.Handle(c2)
	var j, j2 *job.Job
	for _, jj := range f.incoming(t) {
		if jj.Video == "dQw4w9WgXcQ" {
			j = jj
		} else {
			j2 = jj
		}
	}
	f.runResults(t)

	// Hostile results, as a compromised worker would write them.
	forged := j.Result(job.StatusDone, job.ClassNone)
	forged.Job, forged.File = job.NewID(), "dQw4w9WgXcQ-720p.mp4" // unknown job, its token moved
	f.writeResult(t, forged)
	transplant := j2.Result(job.StatusFailed, job.ClassTimeout)
	transplant.Reply = j.Reply // j's token on j2's result
	f.writeResult(t, transplant)
	wrongFile := j.Result(job.StatusDone, job.ClassNone)
	wrongFile.File = "aaaaaaaaaaa-720p.mp4"
	f.writeResult(t, wrongFile)
	renamed, _ := j.Result(job.StatusFailed, job.ClassTimeout).Marshal()
	os.WriteFile(filepath.Join(f.layout.Results(), j.ID+".started.result"), renamed, 0o640)
	os.WriteFile(filepath.Join(f.layout.Results(), "junk"), []byte("x"), 0o640)
	deadline := time.Now().Add(5 * time.Second)
	for {
		q, _ := os.ReadDir(f.layout.Receiver("quarantine"))
		if len(q) == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("quarantine holds %d files, want 5\n%s", len(q), f.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p := f.slack.Posts(); len(p) != 0 {
		t.Fatalf("hostile results were posted: %q", p)
	}

	f.writeResult(t, j.Result(job.StatusStarted, job.ClassNone))
	done := j.Result(job.StatusDone, job.ClassNone)
	done.Title, done.Duration, done.Size, done.File = "<!channel> & <https://evil|click>", 3725, 5<<20, "dQw4w9WgXcQ-720p.mp4"
	f.writeResult(t, done)
	posts := waitPosts(t, f.slack, 2)
	if !strings.Contains(posts[0], "/r/1 :hourglass_flowing_sand: Downloading `dQw4w9WgXcQ` (720p)") {
		t.Errorf("started post %q", posts[0])
	}
	want := "/r/1 :white_check_mark: Saved *&lt;!channel&gt; &amp; &lt;https:\u200b//evil|click&gt;* (1:02:05, 5.0 MiB) as `dQw4w9WgXcQ-720p.mp4`."
	if posts[1] != want {
		t.Errorf("done post\n%q, want\n%q", posts[1], want)
	}
	// A result replayed after the final one is refused and reported.
	f.writeResult(t, done)
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(f.log.String(), "result_after_final") {
		if time.Now().After(deadline) {
			t.Fatal("no alert for a result after the final one")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(f.slack.Posts()); n != 2 {
		t.Fatalf("%d posts after a replay", n)
	}
}

func TestReplyBudget(t *testing.T) {
	f := newFixture(t)
	f.s.Handle(f.cmd("https://youtu.be/dQw4w9WgXcQ"))
	j := f.incoming(t)[0]
	info, err := f.s.sealer.open(j.ID, j.Reply)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 8; i++ {
		f.s.reply(context.Background(), j.Result(job.StatusStarted, job.ClassNone), info)
	}
	if n := len(f.slack.Posts()); n != MaxPosts {
		t.Fatalf("%d posts to one response_url, want %d", n, MaxPosts)
	}
	b, _ := f.s.loadBudget(j.ID)
	if b.Posts != MaxPosts {
		t.Fatalf("persisted post count %d", b.Posts)
	}
	// An expired response_url is not posted to.
	f.s.Handle(f.cmd("https://youtu.be/dQw4w9WgXcQ"))
	var j2 *job.Job
	for _, jj := range f.incoming(t) {
		if jj.ID != j.ID {
			j2 = jj
		}
	}
	info2, _ := f.s.sealer.open(j2.ID, j2.Reply)
	f.now = f.now.Add(ResponseURLLifetime)
	f.s.reply(context.Background(), j2.Result(job.StatusStarted, job.ClassNone), info2)
	if n := len(f.slack.Posts()); n != MaxPosts {
		t.Fatal("posted to an expired response_url")
	}
	if !strings.Contains(f.log.String(), "response_url_expired") {
		t.Fatal("no audit event for the expired response_url")
	}
	// Counts of expired response URLs are swept.
	f.now = f.now.Add(2 * ResponseURLLifetime)
	f.s.sweepBudgets()
	if names, _ := f.s.replies.Names(); len(names) != 0 {
		t.Fatalf("budgets kept after expiry: %v", names)
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

// TestSlackForms: the texts Slack sends for a link with a second query
// parameter, with the command's escaping option on and off, each queued
// as a job for the right video.
func TestSlackForms(t *testing.T) {
	f := newFixtureWith(t, func(o *Options) { o.PerUserPerMinute = 100 })
	for _, tt := range []struct{ text, video string }{
		{"https://www.youtube.com/watch?v=aaaaaaaaaa1&amp;t=30s", "aaaaaaaaaa1"},
		{"<https://www.youtube.com/watch?v=aaaaaaaaaa2&amp;t=30s>", "aaaaaaaaaa2"},
		{"<https://www.youtube.com/watch?v=aaaaaaaaaa3&amp;list=PL1&amp;index=2|www.youtube.com/watch?v=aaaaaaaaaa3&amp;list=PL1> 720p", "aaaaaaaaaa3"},
		{"<http://youtu.be/aaaaaaaaaa4?si=x&amp;t=1|youtu.be/aaaaaaaaaa4?si=x&amp;t=1> audio", "aaaaaaaaaa4"},
		{"https://m.youtube.com/watch?feature=share&amp;v=aaaaaaaaaa5 360p", "aaaaaaaaaa5"},
		{"https://www.youtube.com/shorts/aaaaaaaaaa6?feature=share&amp;si=x", "aaaaaaaaaa6"},
	} {
		if r := f.s.Handle(f.cmd(tt.text)); !strings.HasPrefix(r, "Queued `"+tt.video+"`") {
			t.Errorf("%q: %q", tt.text, r)
		}
	}
	n := 0
	for _, j := range f.incoming(t) {
		if strings.HasPrefix(j.Video, "aaaaaaaaaa") {
			n++
		}
	}
	if n != 6 {
		t.Fatalf("%d jobs queued, want 6", n)
	}
}

// TestAppAndEnterprise: with no app_id any app's command is answered;
// with allowed_enterprises only those organizations' commands are, and a
// workspace in none is refused.
func TestAppAndEnterprise(t *testing.T) {
	t.Run("any app", func(t *testing.T) {
		f := newFixtureWith(t, func(o *Options) { o.AppID = "" })
		c := f.cmd("https://youtu.be/dQw4w9WgXcQ")
		c.APIAppID = "A0OTHER01"
		if r := f.s.Handle(c); !strings.HasPrefix(r, "Queued") {
			t.Fatalf("%q", r)
		}
	})
	f := newFixtureWith(t, func(o *Options) { o.AllowedEnterprises = []string{"E0GRIDORG"} })
	for _, tt := range []struct {
		name, enterprise, want string
	}{
		{"allowed organization", "E0GRIDORG", "Queued"},
		{"other organization", "E0OTHER", "organization is not allowed"},
		{"no organization", "", "organization is not allowed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := f.cmd("https://youtu.be/dQw4w9WgXcQ")
			c.EnterpriseID, c.IsEnterpriseInstall = tt.enterprise, true
			before := len(f.log.String())
			if r := f.s.Handle(c); !strings.Contains(r, tt.want) {
				t.Fatalf("reply %q, want %q", r, tt.want)
			}
			logged := f.log.String()[before:]
			if tt.want != "Queued" && (!strings.Contains(logged, `"reason":"unauthorized_enterprise"`) || !strings.Contains(logged, `"alert":true`)) {
				t.Fatalf("no alert for the organization: %s", logged)
			}
		})
	}
	if n := len(f.incoming(t)); n != 1 {
		t.Fatalf("%d jobs, want the allowed organization's one", n)
	}
}

// TestRateLimitSurvivesRestart: the per-user limit is kept on disk; a
// receiver started since (a crash, or a restart to reset the limit)
// still refuses the user until the minute has passed. Without the rate
// log the restarted receiver accepts the fourth job.
func TestRateLimitSurvivesRestart(t *testing.T) {
	f := newFixture(t)
	for i := 0; i < 3; i++ {
		if r := f.s.Handle(f.cmd("https://youtu.be/dQw4w9WgXcQ")); !strings.HasPrefix(r, "Queued") {
			t.Fatalf("job %d: %q", i, r)
		}
	}
	restart := func() {
		t.Helper()
		s, err := New(f.s.opt, NewNotifier())
		if err != nil {
			t.Fatal(err)
		}
		f.s = s
	}
	restart()
	if r := f.s.Handle(f.cmd("https://youtu.be/dQw4w9WgXcQ")); !strings.Contains(r, "please wait") {
		t.Fatalf("fourth job in a minute, after a restart: %q", r)
	}
	c := f.cmd("https://youtu.be/dQw4w9WgXcQ")
	c.UserID = "U2"
	if r := f.s.Handle(c); !strings.HasPrefix(r, "Queued") {
		t.Fatalf("another user: %q", r)
	}
	f.now = f.now.Add(61 * time.Second)
	restart()
	if r := f.s.Handle(f.cmd("https://youtu.be/dQw4w9WgXcQ")); !strings.HasPrefix(r, "Queued") {
		t.Fatalf("a minute later, after a restart: %q", r)
	}
	// A torn or foreign line is skipped, not fatal.
	p := filepath.Join(f.layout.Receiver(""), rateLogName)
	fd, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fd.WriteString("12 ../../etc\nnot a line\n17")
	fd.Close()
	restart()
	if r := f.s.Handle(c); !strings.HasPrefix(r, "Queued") {
		t.Fatalf("after a torn log: %q", r)
	}
}

// TestRateLogBounded: the log is rewritten with the live entries once it
// passes its limit, so it stays bounded however long the receiver runs.
func TestRateLogBounded(t *testing.T) {
	f := newFixtureWith(t, func(o *Options) { o.PerUserPerMinute = 1 << 20 })
	p := filepath.Join(f.layout.Receiver(""), rateLogName)
	// Entries a day apart: each rewrite keeps the live ones only (those
	// of the last minute are, here, all of the same second).
	for i := range 40000 {
		f.now = f.now.Add(time.Second)
		if !f.s.allowRate(fmt.Sprintf("U%06d", i%500)) {
			t.Fatal("refused")
		}
	}
	st, err := os.Stat(p)
	if err != nil || st.Size() > 2*rateLogMax {
		t.Fatalf("rate log: %v, %v bytes", err, st.Size())
	}
}
