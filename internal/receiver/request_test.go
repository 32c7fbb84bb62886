package receiver

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/reply"
	"github.com/ytkeep/ytkeep/internal/slackreq"
	"github.com/ytkeep/ytkeep/internal/spool"
)

// requests returns the request files in incoming/, checked, and removes
// them.
func (f *fixture) requests(t *testing.T) []*job.Request {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(f.layout.Incoming(), "*.request"))
	var rs []*job.Request
	for _, n := range names {
		b, _ := os.ReadFile(n)
		r, err := job.ParseRequest(b)
		if err != nil {
			t.Fatalf("receiver wrote an invalid request: %v", err)
		}
		rs = append(rs, r)
		os.Remove(n)
	}
	return rs
}

// sealed opens a token the receiver sealed, as the courier does.
func (f *fixture) sealed(t *testing.T, id, token string) *reply.Info {
	t.Helper()
	d, err := spool.OpenDir(f.layout.Receiver(""))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s, err := reply.Create(d)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Open(id, token)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func TestRequestCommands(t *testing.T) {
	f := newFixtureWith(t, func(o *Options) { o.Admins = []string{"U2"}; o.Uploads = true; o.StatusInDM = true })
	const id = "abcdefghijklmnopqrstuvwxyz"
	for _, tt := range []struct {
		user, text string
		want       job.Request
		reply      string
	}{
		{"U1", "list", job.Request{Kind: job.RequestList}, "Looking up"},
		{"U1", "LIST", job.Request{Kind: job.RequestList}, "Looking up"},
		{"U1", "cancel " + id, job.Request{Kind: job.RequestCancel, Job: id}, "Cancelling job"},
		{"U1", "cancel " + strings.ToUpper(id), job.Request{Kind: job.RequestCancel, Job: id}, "Cancelling job"},
		{"U1", "cancel https://youtu.be/dQw4w9WgXcQ", job.Request{Kind: job.RequestCancel, Video: "dQw4w9WgXcQ"}, "Cancelling your jobs"},
		{"U2", "cancel " + id, job.Request{Kind: job.RequestCancel, Job: id, Admin: true}, "Cancelling job"},
		{"U1", "send " + id, job.Request{Kind: job.RequestSend, Job: id}, "direct messages"},
	} {
		c := f.cmd(tt.text)
		c.UserID = tt.user
		got := f.s.Handle(c)
		if !strings.Contains(got, tt.reply) {
			t.Errorf("%q: reply %q", tt.text, got)
		}
		rs := f.requests(t)
		if len(rs) != 1 {
			t.Fatalf("%q: %d requests", tt.text, len(rs))
		}
		r := rs[0]
		if r.Kind != tt.want.Kind || r.Job != tt.want.Job || r.Video != tt.want.Video || r.Admin != tt.want.Admin || r.User != tt.user || r.Team != "T1" {
			t.Errorf("%q: request %+v", tt.text, r)
		}
		info := f.sealed(t, r.ID, r.Reply)
		if !info.Request || info.User != tt.user || info.URL != c.ResponseURL || info.Send {
			t.Errorf("%q: token %+v", tt.text, info)
		}
	}
	for _, text := range []string{"list all", "cancel", "cancel me", "cancel https://youtu.be/short", "send", "send https://youtu.be/dQw4w9WgXcQ", "cancel a b"} {
		if got := f.s.Handle(f.cmd(text)); !strings.Contains(got, "/ytkeep") {
			t.Errorf("%q: reply %q, want the usage", text, got)
		}
		if rs := f.requests(t); len(rs) != 0 {
			t.Errorf("%q: a request %+v", text, rs[0])
		}
	}
	if !strings.Contains(f.s.Handle(f.cmd("help")), "cancel <job id | link>") {
		t.Error("help does not tell how to cancel")
	}
}

// TestSendWord: "<link> [format] send" seals the wish into the job's
// token, where a worker cannot add it; without uploads it is refused.
func TestSendWord(t *testing.T) {
	f := newFixtureWith(t, func(o *Options) { o.Uploads = true; o.StatusInDM = true })
	for _, text := range []string{"https://youtu.be/dQw4w9WgXcQ send", "https://youtu.be/dQw4w9WgXcQ audio SEND"} {
		f.s.Handle(f.cmd(text))
	}
	f.s.Handle(f.cmd("https://youtu.be/dQw4w9WgXcQ 720p"))
	jobs := f.incoming(t)
	if len(jobs) != 3 {
		t.Fatalf("%d jobs", len(jobs))
	}
	sends := 0
	for _, j := range jobs {
		if f.sealed(t, j.ID, j.Reply).Send {
			sends++
			if j.Format == job.Format720 {
				t.Error("a job without send asks for the file")
			}
		}
	}
	if sends != 2 {
		t.Errorf("%d jobs ask for the file, want 2", sends)
	}

	off := newFixtureWith(t, nil)
	if got := off.s.Handle(off.cmd("https://youtu.be/dQw4w9WgXcQ send")); !strings.Contains(got, "turned off") {
		t.Errorf("send without uploads: %q", got)
	}
	if got := off.s.Handle(off.cmd("send abcdefghijklmnopqrstuvwxyz")); !strings.Contains(got, "turned off") {
		t.Errorf("send without uploads: %q", got)
	}
	if len(off.incoming(t)) != 0 {
		t.Error("queued without uploads")
	}
}

func (f *fixture) action() *slackreq.Action {
	return &slackreq.Action{TeamID: "T1", UserID: "U1", ChannelID: "D0BOTDM01", APIAppID: "A0YTKEEP01",
		ResponseURL: f.slack.URL() + "/a/1", ActionID: job.ActionCancel, Value: "abcdefghijklmnopqrstuvwxyz"}
}

func TestActions(t *testing.T) {
	f := newFixtureWith(t, func(o *Options) { o.Uploads = true })
	f.s.handleAction(f.action(), "")
	a := f.action()
	a.ActionID = job.ActionSend
	f.s.handleAction(a, "")
	rs := f.requests(t)
	if len(rs) != 2 {
		t.Fatalf("%d requests", len(rs))
	}
	kinds := map[job.RequestKind]bool{}
	for _, r := range rs {
		kinds[r.Kind] = true
		if r.Job != "abcdefghijklmnopqrstuvwxyz" || r.User != "U1" || r.Channel != "D0BOTDM01" {
			t.Errorf("request %+v", r)
		}
		if info := f.sealed(t, r.ID, r.Reply); info.URL != f.slack.URL()+"/a/1" || !info.Request {
			t.Errorf("token %+v", info)
		}
	}
	if !kinds[job.RequestCancel] || !kinds[job.RequestSend] {
		t.Errorf("kinds %v", kinds)
	}
	for name, mut := range map[string]func(*slackreq.Action){
		"unauthorized_team": func(a *slackreq.Action) { a.TeamID = "T2" },
		"unauthorized_user": func(a *slackreq.Action) { a.UserID = "U9" },
		"other_app":         func(a *slackreq.Action) { a.APIAppID = "A0OTHER01" },
		"not_a_dm":          func(a *slackreq.Action) { a.ChannelID = "C1" },
		"response_url":      func(a *slackreq.Action) { a.ResponseURL = "https://attacker.example/a" },
		"bad_action_value":  func(a *slackreq.Action) { a.Value = "../../etc/passwd" },
		"unknown_action":    func(a *slackreq.Action) { a.ActionID = "ytkeep_delete" },
	} {
		a := f.action()
		mut(a)
		before := len(f.log.String())
		f.s.handleAction(a, "")
		if log := f.log.String()[before:]; !strings.Contains(log, `"reason":"`+name+`"`) {
			t.Errorf("%s: log %s", name, log)
		}
		if rs := f.requests(t); len(rs) != 0 {
			t.Errorf("%s: a request %+v", name, rs[0])
		}
	}
}

// TestHTTPAction: a signed interaction body at the command URL becomes
// a request, answered with an empty 200; unsigned, it is refused.
func TestHTTPAction(t *testing.T) {
	f := newFixture(t)
	v, err := slackreq.NewVerifier("0123456789abcdef0123", time.Now, 100)
	if err != nil {
		t.Fatal(err)
	}
	h := f.s.Handler("/slack/commands", v)
	payload, err := os.ReadFile("../slackreq/testdata/actions/good.json")
	if err != nil {
		t.Fatal(err)
	}
	good := strings.NewReplacer("T1DC2JH3J", "T1", "U2CERLKJA", "U1", "https://hooks.slack.com/actions/T1DC2JH3J/1/abc", f.slack.URL()+"/a/1").Replace(string(payload))
	body := url.Values{"payload": {good}}.Encode()
	post := func(sign bool) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/slack/commands", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if sign {
			slackreq.SignRequest(r.Header, "0123456789abcdef0123", time.Now(), []byte(body))
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := post(false); w.Code != http.StatusUnauthorized {
		t.Fatalf("unsigned: %d", w.Code)
	}
	if len(f.requests(t)) != 0 {
		t.Fatal("unsigned interaction made a request")
	}
	if w := post(true); w.Code != http.StatusOK || w.Body.Len() != 0 {
		t.Fatalf("signed: %d %q", w.Code, w.Body.String())
	}
	rs := f.requests(t)
	if len(rs) != 1 || rs[0].Kind != job.RequestCancel || rs[0].Job != "aaaaaaaaaaaaaaaaaaaaaaaaaa" {
		t.Fatalf("requests %+v", rs)
	}
}

// TestRequestRate: requests have a cap of their own (twice the jobs'),
// and a user past it raises one alert a minute, not one per request.
func TestRequestRate(t *testing.T) {
	f := newFixture(t) // 3 jobs a minute: 6 requests
	for i := 0; i < 9; i++ {
		got := f.s.Handle(f.cmd("list"))
		if limited := strings.Contains(got, "a lot of requests"); limited != (i >= 6) {
			t.Fatalf("request %d: %q", i, got)
		}
	}
	if n := strings.Count(f.log.String(), `"alert":true,"reason":"rate_limited"`); n != 1 {
		t.Errorf("%d rate alerts, want 1:\n%s", n, f.log.String())
	}
	if n := len(f.requests(t)); n != 6 {
		t.Errorf("%d requests queued, want 6", n)
	}
	f.now = f.now.Add(time.Minute)
	if got := f.s.Handle(f.cmd("list")); strings.Contains(got, "a lot of requests") {
		t.Errorf("a minute later: %q", got)
	}
}
