package slackapi

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/ytkeep/ytkeep/internal/config"
)

const testToken = "xoxb-1234567890-1234567890123-abcdefghijklmnopqrstuvwx"

// fakeSlack is a loopback Web API: the five calls the client makes, with
// Slack's wire format, and the upload URL. Each method's answer can be
// replaced (answer); every request is counted and its form kept.
type fakeSlack struct {
	srv *httptest.Server

	mu       sync.Mutex
	calls    map[string]int
	forms    map[string]url.Values
	answer   map[string]http.HandlerFunc
	uploaded []byte
	bearer   string
}

// uploadPath is where the fake's upload URL points.
const uploadPath = "/upload/v1/abc123"

func newFakeSlack(t *testing.T, tlsServer bool) *fakeSlack {
	f := &fakeSlack{calls: map[string]int{}, forms: map[string]url.Values{}, answer: map[string]http.HandlerFunc{}}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	// TestTLSTestMode's refused handshake is expected, not news.
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tlsServer {
		f.srv.StartTLS()
	} else {
		f.srv.Start()
	}
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeSlack) serve(w http.ResponseWriter, r *http.Request) {
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	if r.URL.Path == uploadPath {
		method = methodUpload
	}
	if method != methodUpload {
		r.ParseForm()
	}
	f.mu.Lock()
	f.calls[method]++
	f.forms[method] = r.PostForm
	h := f.answer[method]
	f.mu.Unlock()
	if h != nil {
		h(w, r)
		return
	}
	if method != methodUpload && r.PostForm.Get("token") != testToken {
		reply(w, `{"ok":false,"error":"invalid_auth"}`)
		return
	}
	form := r.PostForm
	switch method {
	case methodOpen:
		// With return_im=true, the IM's whole definition, user included.
		user := form.Get("users")
		reply(w, fmt.Sprintf(`{"ok":true,"channel":{"id":"D%s","is_im":true,"user":%q}}`, user[1:], user))
	case methodPost:
		reply(w, fmt.Sprintf(`{"ok":true,"channel":%q,"ts":"1700000000.000100"}`, form.Get("channel")))
	case methodUpdate:
		reply(w, fmt.Sprintf(`{"ok":true,"channel":%q,"ts":%q}`, form.Get("channel"), form.Get("ts")))
	case methodGetURL:
		reply(w, fmt.Sprintf(`{"ok":true,"upload_url":%q,"file_id":"F0TEST"}`, f.srv.URL+uploadPath))
	case methodUpload:
		f.serveUpload(w, r)
	case methodComplete:
		var files []slack.FileSummary
		json.Unmarshal([]byte(form.Get("files")), &files)
		b, _ := json.Marshal(files)
		reply(w, fmt.Sprintf(`{"ok":true,"files":%s}`, b))
	default:
		reply(w, `{"ok":false,"error":"unknown_method"}`)
	}
}

// serveUpload keeps the multipart form's file, as Slack's upload host does.
func (f *fakeSlack) serveUpload(w http.ResponseWriter, r *http.Request) {
	_, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	mr := multipart.NewReader(r.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			http.Error(w, "no file", http.StatusBadRequest)
			return
		}
		if p.FormName() == "file" {
			b, _ := io.ReadAll(io.LimitReader(p, 1<<20))
			f.mu.Lock()
			f.uploaded, f.bearer = b, r.Header.Get("Authorization")
			f.mu.Unlock()
			fmt.Fprintf(w, "OK - %d", len(b))
			return
		}
	}
}

func reply(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, body)
}

func (f *fakeSlack) set(method string, h http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answer[method] = h
}

func (f *fakeSlack) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func (f *fakeSlack) form(method string) url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.forms[method]
}

// fakeClock is the client's clock and sleep: a sleep moves it on at once
// and is recorded.
type fakeClock struct {
	mu    sync.Mutex
	t     time.Time
	slept []time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	c.slept = append(c.slept, d)
	return nil
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *fakeClock) sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.slept...)
}

// newTestClient returns a client of f in test mode, on a fake clock.
func newTestClient(t *testing.T, f *fakeSlack) (*Client, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	c, err := New(Options{Token: testToken, APIURL: f.srv.URL + "/api/", Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	c.sleep = clock.sleep
	return c, clock
}

// slackError returns err as an *Error, or fails the test.
func slackError(t *testing.T, err error) *Error {
	t.Helper()
	e, ok := errors.AsType[*Error](err)
	if !ok {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	return e
}

func textMsg(s string) Message { return Message{Text: s} }

func TestNew(t *testing.T) {
	for _, tt := range []struct {
		name, token, apiURL string
		ok                  bool
	}{
		{"production", testToken, "", true},
		{"loopback http", testToken, "http://127.0.0.1:8080/api/", true},
		{"loopback https", testToken, "https://127.0.0.1:8443/", true},
		{"loopback IPv6, no trailing slash", testToken, "http://[::1]:8080/api", true},
		{"other loopback address", testToken, "http://127.0.0.2:8080/", true},
		{"short bot token", "xoxb-other", "", true},
		{"no token", "", "", false},
		{"user token", "xoxp-1234-5678-abcdef", "", false},
		{"app-level token", "xapp-1-A1234-5678-abcdef", "", false},
		{"bot prefix alone", "xoxb-", "", false},
		{"double hyphen", "xoxb-1234--abcdef", "", false},
		{"trailing hyphen", "xoxb-1234-", "", false},
		{"space", "xoxb-1234 5678", "", false},
		{"newline", "xoxb-1234\n", "", false},
		{"too long", "xoxb-" + strings.Repeat("a", 251), "", false},
		{"Slack's own URL", testToken, "https://slack.com/api/", false},
		{"private address", testToken, "http://10.0.0.1:8080/", false},
		{"host name", testToken, "http://localhost:8080/", false},
		{"short loopback form", testToken, "http://127.1:8080/", false},
		{"no port", testToken, "http://127.0.0.1/api/", false},
		{"port zero", testToken, "http://127.0.0.1:0/", false},
		{"other scheme", testToken, "ftp://127.0.0.1:21/", false},
		{"user info", testToken, "http://u:p@127.0.0.1:8080/", false},
		{"query", testToken, "http://127.0.0.1:8080/api/?x=1", false},
		{"fragment", testToken, "http://127.0.0.1:8080/api/#x", false},
		{"zone", testToken, "http://[::1%25lo]:8080/", false},
		{"not a URL", testToken, "127.0.0.1:8080", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(Options{Token: tt.token, APIURL: tt.apiURL})
			if (err == nil) != tt.ok {
				t.Fatalf("New: %v, want ok=%v", err, tt.ok)
			}
			if err != nil && len(tt.token) > len("xoxb-") && strings.Contains(err.Error(), tt.token) {
				t.Errorf("the error %q quotes the token", err)
			}
			if err == nil && (len(c.Warnings()) == 0) != (tt.apiURL == "") {
				t.Errorf("Warnings() = %q for API URL %q", c.Warnings(), tt.apiURL)
			}
		})
	}
}

func TestOpenDM(t *testing.T) {
	f := newFakeSlack(t, false)
	c, _ := newTestClient(t, f)
	ctx := context.Background()
	for range 3 {
		ch, err := c.OpenDM(ctx, "U0ALICE")
		if err != nil {
			t.Fatal(err)
		}
		if ch != "D0ALICE" {
			t.Fatalf("OpenDM = %q, want D0ALICE", ch)
		}
	}
	if n := f.count(methodOpen); n != 1 {
		t.Fatalf("conversations.open called %d times for one user, want 1 (cached)", n)
	}
	if form := f.form(methodOpen); form.Get("users") != "U0ALICE" || form.Get("return_im") != "true" {
		t.Errorf("users=%q return_im=%q, want U0ALICE, true", form.Get("users"), form.Get("return_im"))
	}
	if ch, err := c.OpenDM(ctx, "W0BOB"); err != nil || ch != "D0BOB" {
		t.Fatalf("OpenDM(W0BOB) = %q, %v", ch, err)
	}
	if n := f.count(methodOpen); n != 2 {
		t.Fatalf("conversations.open called %d times for two users, want 2", n)
	}
	for _, user := range []string{"", "u0alice", "C0ALICE", "U0", "U0ALICE,U0MALLORY", "U0ALICE\n", strings.Repeat("U", 33)} {
		_, err := c.OpenDM(ctx, user)
		if e := slackError(t, err); e.Code != CodeInvalidArgument || !e.Permanent {
			t.Errorf("OpenDM(%q): %v, want a permanent %s", user, err, CodeInvalidArgument)
		}
	}
	if n := f.count(methodOpen); n != 2 {
		t.Errorf("a refused user ID reached Slack")
	}
	// An answer that does not name the DM's user is taken (return_im
	// is a request; the DM's ID alone is checked then).
	f.set(methodOpen, func(w http.ResponseWriter, r *http.Request) { reply(w, `{"ok":true,"channel":{"id":"D0CAROL"}}`) })
	if ch, err := c.OpenDM(ctx, "U0CAROL"); err != nil || ch != "D0CAROL" {
		t.Fatalf("OpenDM(U0CAROL), no user in the answer = %q, %v", ch, err)
	}
}

func TestPost(t *testing.T) {
	f := newFakeSlack(t, false)
	c, _ := newTestClient(t, f)
	ts, err := c.Post(context.Background(), "D0ALICE", textMsg("*Saved* <https://example.com|x>"))
	if err != nil {
		t.Fatal(err)
	}
	if ts != "1700000000.000100" {
		t.Errorf("ts = %q", ts)
	}
	form := f.form(methodPost)
	for k, want := range map[string]string{"channel": "D0ALICE", "text": "*Saved* <https://example.com|x>",
		"unfurl_links": "false", "unfurl_media": "false", "parse": "none", "token": testToken} {
		if got := form.Get(k); got != want {
			t.Errorf("%s=%q, want %q", k, got, want)
		}
	}
	if form.Has("blocks") {
		t.Errorf("blocks sent for a message without: %q", form.Get("blocks"))
	}

	m := Message{Text: "fallback", Blocks: []slack.Block{
		slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, "*hi*", false, false), nil, nil)}}
	if _, err := c.Post(context.Background(), "D0BOB", m); err != nil {
		t.Fatal(err)
	}
	var blocks []map[string]any
	if err := json.Unmarshal([]byte(f.form(methodPost).Get("blocks")), &blocks); err != nil || len(blocks) != 1 || blocks[0]["type"] != "section" {
		t.Errorf("blocks = %q (%v)", f.form(methodPost).Get("blocks"), err)
	}
}

func TestPostRefusesBeforeSending(t *testing.T) {
	f := newFakeSlack(t, false)
	c, _ := newTestClient(t, f)
	section := slack.NewDividerBlock()
	for _, tt := range []struct {
		name    string
		channel string
		m       Message
	}{
		{"user ID as channel", "U0ALICE", textMsg("x")},
		{"lower case channel", "d0alice", textMsg("x")},
		{"channel name", "#general", textMsg("x")},
		{"channel with comma", "D0ALICE,C0TEAM", textMsg("x")},
		{"channel too long", "D" + strings.Repeat("A", 32), textMsg("x")},
		{"no text", "D0ALICE", Message{Blocks: []slack.Block{section}}},
		{"blank text", "D0ALICE", textMsg(" \n\t")},
		{"51 blocks", "D0ALICE", Message{Text: "x", Blocks: func() []slack.Block {
			b := make([]slack.Block, MaxBlocks+1)
			for i := range b {
				b[i] = section
			}
			return b
		}()}},
		{"nil block", "D0ALICE", Message{Text: "x", Blocks: []slack.Block{section, nil}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Post(context.Background(), tt.channel, tt.m)
			if e := slackError(t, err); e.Code != CodeInvalidArgument || !e.Permanent || e.Method != methodPost {
				t.Fatalf("Post: %v, want a permanent %s", err, CodeInvalidArgument)
			}
		})
	}
	if n := f.count(methodPost); n != 0 {
		t.Fatalf("%d refused messages reached Slack", n)
	}
	// 50 blocks are fine.
	b := make([]slack.Block, MaxBlocks)
	for i := range b {
		b[i] = section
	}
	if _, err := c.Post(context.Background(), "D0ALICE", Message{Text: "x", Blocks: b}); err != nil {
		t.Fatal(err)
	}
}

func TestPostTruncatesText(t *testing.T) {
	f := newFakeSlack(t, false)
	c, _ := newTestClient(t, f)
	if _, err := c.Post(context.Background(), "D0ALICE", textMsg(strings.Repeat("a", 5000))); err != nil {
		t.Fatal(err)
	}
	got := f.form(methodPost).Get("text")
	if utf8.RuneCountInString(got) != MaxTextLen || !strings.HasSuffix(got, "…") || !strings.HasPrefix(got, strings.Repeat("a", MaxTextLen-1)) {
		t.Fatalf("sent %d characters ending %q, want %d ending in …", utf8.RuneCountInString(got), got[len(got)-8:], MaxTextLen)
	}
}

// TestDMOnly: Post, Update and Upload write into DMs only; any other
// channel ID, well-formed or not, is refused before any request.
func TestDMOnly(t *testing.T) {
	calls := map[string]func(*Client, string) error{
		methodPost: func(c *Client, channel string) error {
			_, err := c.Post(context.Background(), channel, textMsg("x"))
			return err
		},
		methodUpdate: func(c *Client, channel string) error {
			return c.Update(context.Background(), channel, "1700000000.000100", textMsg("x"))
		},
		methodGetURL: func(c *Client, channel string) error {
			return c.Upload(context.Background(), channel, "a.mp4", "", strings.NewReader("data"), 4)
		},
	}
	for method, call := range calls {
		for _, channel := range []string{"C0TEAM", "G0PRIVATE", "U0ALICE", "W0BOB", "F0FILE", "d0alice", "D0", "D0ALICE ", ""} {
			t.Run(method+"/"+channel, func(t *testing.T) {
				f := newFakeSlack(t, false)
				c, _ := newTestClient(t, f)
				err := call(c, channel)
				if e := slackError(t, err); e.Code != CodeInvalidArgument || !e.Permanent || e.Method != method {
					t.Fatalf("%v, want a permanent %s from %s", err, CodeInvalidArgument, method)
				}
				for _, m := range []string{methodOpen, methodPost, methodUpdate, methodGetURL, methodUpload, methodComplete} {
					if n := f.count(m); n != 0 {
						t.Errorf("%s called %d times", m, n)
					}
				}
			})
		}
	}
}

func TestTruncate(t *testing.T) {
	emoji := "😀" // two UTF-16 code units
	for _, tt := range []struct {
		name, in, want string
		limit          int
	}{
		{"short", "abc", "abc", 5},
		{"exact", "abcde", "abcde", 5},
		{"one over", "abcdef", "abcd…", 5},
		{"emoji counts two", strings.Repeat(emoji, 3), emoji + emoji + "…", 5},
		{"emoji fits", strings.Repeat(emoji, 3), strings.Repeat(emoji, 3), 6},
		{"emoji not split", "a" + emoji + emoji, "a…", 3},
		{"invalid UTF-8", "a\xffb", "a\uFFFDb", 5},
		{"empty", "", "", 5},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := truncate(tt.in, tt.limit); got != tt.want {
				t.Fatalf("truncate(%q, %d) = %q, want %q", tt.in, tt.limit, got, tt.want)
			}
		})
	}
}

func TestUpdate(t *testing.T) {
	f := newFakeSlack(t, false)
	c, _ := newTestClient(t, f)
	if err := c.Update(context.Background(), "D0ALICE", "1700000000.000100", textMsg("done")); err != nil {
		t.Fatal(err)
	}
	form := f.form(methodUpdate)
	for k, want := range map[string]string{"channel": "D0ALICE", "ts": "1700000000.000100", "text": "done", "blocks": "[]", "parse": "none"} {
		if got := form.Get(k); got != want {
			t.Errorf("%s=%q, want %q", k, got, want)
		}
	}
	for _, ts := range []string{"", "1700000000", "1700000000.", ".000100", "1.2.3", "17e9.1", "-1.1", " 1.1", strings.Repeat("1", 21) + ".1"} {
		err := c.Update(context.Background(), "D0ALICE", ts, textMsg("x"))
		if e := slackError(t, err); e.Code != CodeInvalidArgument || !e.Permanent {
			t.Errorf("Update(ts %q): %v, want a permanent %s", ts, err, CodeInvalidArgument)
		}
	}
	if n := f.count(methodUpdate); n != 1 {
		t.Errorf("%d refused updates reached Slack", n-1)
	}
}

func TestUpload(t *testing.T) {
	f := newFakeSlack(t, false)
	c, _ := newTestClient(t, f)
	data := bytes.Repeat([]byte("video"), 1000)
	err := c.Upload(context.Background(), "D0ALICE", "dQw4w9WgXcQ-720p.mp4", "A title\nwith a newline", bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	uploaded, bearer := f.uploaded, f.bearer
	f.mu.Unlock()
	if !bytes.Equal(uploaded, data) {
		t.Errorf("uploaded %d bytes, want the %d given", len(uploaded), len(data))
	}
	if bearer != "Bearer "+testToken {
		t.Errorf("upload Authorization %q", bearer)
	}
	get := f.form(methodGetURL)
	if get.Get("filename") != "dQw4w9WgXcQ-720p.mp4" || get.Get("length") != fmt.Sprint(len(data)) {
		t.Errorf("files.getUploadURLExternal form %v", get)
	}
	done := f.form(methodComplete)
	if done.Get("channel_id") != "D0ALICE" || done.Get("files") != `[{"id":"F0TEST","title":"A title with a newline"}]` {
		t.Errorf("files.completeUploadExternal channel_id=%q files=%q", done.Get("channel_id"), done.Get("files"))
	}
}

func TestUploadRefusesBadFile(t *testing.T) {
	data := []byte("0123456789")
	for _, tt := range []struct {
		name, channel, filename string
		r                       io.Reader
		size                    int64
		reachesUpload           bool
	}{
		{"short reader", "D0ALICE", "a.mp4", bytes.NewReader(data[:5]), 10, true},
		{"long reader", "D0ALICE", "a.mp4", bytes.NewReader(data), 5, true},
		{"size zero", "D0ALICE", "a.mp4", bytes.NewReader(nil), 0, false},
		{"size too large", "D0ALICE", "a.mp4", bytes.NewReader(data), MaxUploadSize + 1, false},
		{"no reader", "D0ALICE", "a.mp4", nil, 10, false},
		{"path in name", "D0ALICE", "../a.mp4", bytes.NewReader(data), 10, false},
		{"dot dot", "D0ALICE", "..", bytes.NewReader(data), 10, false},
		{"newline in name", "D0ALICE", "a\n.mp4", bytes.NewReader(data), 10, false},
		{"empty name", "D0ALICE", "", bytes.NewReader(data), 10, false},
		{"bad channel", "U0ALICE", "a.mp4", bytes.NewReader(data), 10, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeSlack(t, false)
			c, _ := newTestClient(t, f)
			err := c.Upload(context.Background(), tt.channel, tt.filename, "", tt.r, tt.size)
			if e := slackError(t, err); e.Code != CodeInvalidArgument || !e.Permanent {
				t.Fatalf("Upload: %v, want a permanent %s", err, CodeInvalidArgument)
			}
			if got := f.count(methodUpload) > 0; got != tt.reachesUpload {
				t.Errorf("upload URL called: %v", got)
			}
			if f.count(methodComplete) != 0 {
				t.Errorf("a bad file was shared")
			}
		})
	}
}

// slowReader gives left bytes, at most 512 a Read, each Read taking
// 10 ms, and notes when each Read ends. (Under its own mutex: an atomic
// flag set by the test after Upload returns would order Upload before
// the Read's end for the race detector, and hide the race.)
type slowReader struct {
	left int64

	mu   sync.Mutex
	ends []time.Time
}

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(10 * time.Millisecond)
	defer func() {
		s.mu.Lock()
		s.ends = append(s.ends, time.Now())
		s.mu.Unlock()
	}()
	if s.left == 0 {
		return 0, io.EOF
	}
	n := min(int64(len(p)), 512, s.left)
	for i := range n {
		p[i] = 'x'
	}
	s.left -= n
	return int(n), nil
}

// readsAfter counts the Reads that ended after t.
func (s *slowReader) readsAfter(t time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, end := range s.ends {
		if end.After(t) {
			n++
		}
	}
	return n
}

// TestUploadAnsweredEarly: an upload URL that answers 200 before it has
// read the file fails the upload (no data race under -race), the file is
// not shared, and the caller's reader is never read once Upload has
// returned.
func TestUploadAnsweredEarly(t *testing.T) {
	f := newFakeSlack(t, false)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // before the server closes
	f.set(methodUpload, func(w http.ResponseWriter, r *http.Request) {
		// Once some of the file has come (the reader is then in the
		// middle of the file), answer. Full duplex: the server does
		// not read the rest of the body first.
		io.ReadFull(r.Body, make([]byte, 1024))
		rc := http.NewResponseController(w)
		rc.EnableFullDuplex()
		io.WriteString(w, "OK")
		rc.Flush()
		select { // the body unread
		case <-release:
		case <-r.Context().Done():
		}
	})
	c, _ := newTestClient(t, f)
	r := &slowReader{left: 1 << 20}
	err := c.Upload(context.Background(), "D0ALICE", "a.mp4", "", r, 1<<20)
	returned := time.Now()
	if e := slackError(t, err); e.Code != CodeInvalidResponse || e.Method != methodUpload {
		t.Fatalf("Upload: %v, want %s from %s", err, CodeInvalidResponse, methodUpload)
	}
	if f.count(methodComplete) != 0 {
		t.Errorf("a file not uploaded whole was shared")
	}
	time.Sleep(50 * time.Millisecond)
	if n := r.readsAfter(returned); n != 0 {
		t.Fatalf("the reader was read %d times after Upload returned", n)
	}
}

// TestHostileAnswers serves each sample in testdata/hostile/<method>/ as
// Slack's answer to that method: the client must refuse it
// (CodeInvalidResponse) and go no further. Each sample is an honest
// answer with one hostile change, named by its file.
func TestHostileAnswers(t *testing.T) {
	files, err := filepath.Glob("testdata/hostile/*/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples: %v", err)
	}
	files = append(files, "testdata/hostile/chat.postMessage/(larger than 1 MiB)")
	for _, file := range files {
		method := filepath.Base(filepath.Dir(file))
		t.Run(method+"/"+filepath.Base(file), func(t *testing.T) {
			f := newFakeSlack(t, false)
			var body []byte
			if strings.HasPrefix(filepath.Base(file), "(") {
				body = []byte(`{"ok":true,"channel":"D0TEST","ts":"1700000000.000100","text":"` + strings.Repeat("a", maxAnswer) + `"}`)
			} else if body, err = os.ReadFile(file); err != nil {
				t.Fatal(err)
			}
			body = bytes.ReplaceAll(body, []byte("{{API}}"), []byte(f.srv.URL))
			f.set(method, func(w http.ResponseWriter, r *http.Request) { reply(w, string(body)) })
			c, _ := newTestClient(t, f)
			ctx := context.Background()
			var err error
			switch method {
			case methodPost:
				_, err = c.Post(ctx, "D0TEST", textMsg("x"))
			case methodUpdate:
				err = c.Update(ctx, "D0TEST", "1700000000.000100", textMsg("x"))
			case methodOpen:
				_, err = c.OpenDM(ctx, "U0TEST")
			case methodGetURL, methodComplete:
				err = c.Upload(ctx, "D0TEST", "a.mp4", "", strings.NewReader("data"), 4)
			}
			e := slackError(t, err)
			if e.Code != CodeInvalidResponse || e.Method != method {
				t.Fatalf("%s: %v, want %s from %s", method, err, CodeInvalidResponse, method)
			}
			if strings.ContainsAny(e.Error(), "\n\r") {
				t.Errorf("the error's text has a line break: %q", e.Error())
			}
			if method == methodGetURL && (f.count(methodUpload) != 0 || f.count(methodComplete) != 0) {
				t.Errorf("the upload went on after a refused answer")
			}
		})
	}
	t.Run("a refused DM is not cached", func(t *testing.T) {
		f := newFakeSlack(t, false)
		f.set(methodOpen, func(w http.ResponseWriter, r *http.Request) { reply(w, `{"ok":true,"channel":{"id":"C0PUBLIC"}}`) })
		c, _ := newTestClient(t, f)
		c.OpenDM(context.Background(), "U0TEST")
		f.set(methodOpen, nil)
		if ch, err := c.OpenDM(context.Background(), "U0TEST"); err != nil || ch != "D0TEST" {
			t.Fatalf("OpenDM after a refused answer = %q, %v", ch, err)
		}
	})
}

func TestCheckUploadURL(t *testing.T) {
	prod := &Client{production: true}
	for _, tt := range []struct {
		url string
		ok  bool
	}{
		{"https://files.slack.com/upload/v1/CwABAAAAXAoAAZnKg", true},
		{"https://files.slack.com:443/upload/v1/abc", true},
		{"https://files.slack-gov.com/upload/v1/abc", true},
		{"http://files.slack.com/upload/v1/abc", false},
		{"https://files.slack.com:8443/upload/v1/abc", false},
		{"https://slack.com/upload/v1/abc", false},
		{"https://files.slack.com.evil.example/upload/v1/abc", false},
		{"https://evil.example/files.slack.com/upload", false},
		{"https://files.slack.com@evil.example/upload", false},
		{"https://x@files.slack.com/upload", false},
		{"https://files.slack.com/upload#x", false},
		{"https://files.slack.com", false},
		{"https://FILES.SLACK.COM/upload", false},
		{"https://files.slack.com/up load", false},
		{"https://files.slack.com/\x00", false},
		{"//files.slack.com/upload", false},
		{"", false},
		{"https://files.slack.com/" + strings.Repeat("a", maxUploadURL), false},
	} {
		if why := prod.checkUploadURL(tt.url); (why == "") != tt.ok {
			t.Errorf("checkUploadURL(%q) = %q, want ok=%v", tt.url, why, tt.ok)
		}
	}
}

// TestRateLimited: a 429 is reported with its Retry-After, and the next
// call of the method (for chat.postMessage, to that channel) waits it
// out; nothing is retried.
func TestRateLimited(t *testing.T) {
	f := newFakeSlack(t, false)
	c, clock := newTestClient(t, f)
	ctx := context.Background()
	f.set(methodPost, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
		reply(w, `{"ok":false,"error":"ratelimited"}`)
	})
	_, err := c.Post(ctx, "D0ALICE", textMsg("x"))
	e := slackError(t, err)
	if e.Code != CodeRateLimited || e.Status != 429 || e.RetryAfter != 7*time.Second || e.Permanent {
		t.Fatalf("Post: %+v, want ratelimited, 429, 7s, not permanent", e)
	}
	if n := f.count(methodPost); n != 1 {
		t.Fatalf("chat.postMessage called %d times, want 1 (no retry)", n)
	}
	f.set(methodPost, nil)
	clock.advance(2 * time.Second)
	if _, err := c.Post(ctx, "D0ALICE", textMsg("x")); err != nil {
		t.Fatal(err)
	}
	if got := clock.sleeps(); len(got) != 1 || got[0] != 5*time.Second {
		t.Fatalf("the next post to the channel slept %v, want [5s] (7 s after the 429)", got)
	}
	if _, err := c.Post(ctx, "D0BOB", textMsg("x")); err != nil {
		t.Fatal(err)
	}
	if got := clock.sleeps(); len(got) != 1 {
		t.Fatalf("a post to another channel slept: %v", got)
	}

	// chat.update: one limit for the token.
	f.set(methodUpdate, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	if e := slackError(t, c.Update(ctx, "D0ALICE", "1.1", textMsg("x"))); e.RetryAfter != 30*time.Second {
		t.Fatalf("Update: %+v", e)
	}
	f.set(methodUpdate, nil)
	if err := c.Update(ctx, "D0BOB", "1.1", textMsg("x")); err != nil {
		t.Fatal(err)
	}
	if got := clock.sleeps(); len(got) != 2 || got[1] != 30*time.Second {
		t.Fatalf("the next update slept %v, want 30s", got)
	}
}

func TestParseRetryAfter(t *testing.T) {
	for _, tt := range []struct {
		values []string
		want   time.Duration
	}{
		{[]string{"7"}, 7 * time.Second},
		{[]string{" 12 "}, 12 * time.Second},
		{[]string{"0"}, minRetryAfter},
		{[]string{"99999"}, maxRetryAfter},
		{[]string{"9999999999"}, maxRetryAfter},
		{[]string{"99999999999999999999"}, defaultRetryAfter},
		{[]string{"-5"}, defaultRetryAfter},
		{[]string{"1.5"}, defaultRetryAfter},
		{[]string{"Wed, 21 Oct 2026 07:28:00 GMT"}, defaultRetryAfter},
		{[]string{""}, defaultRetryAfter},
		{nil, defaultRetryAfter},
		{[]string{"1", "2"}, defaultRetryAfter},
	} {
		if got := parseRetryAfter(tt.values); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.values, got, tt.want)
		}
	}
}

// TestRateLimitedBadRetryAfter: a 429 whose Retry-After is malformed or
// absent still holds the method, for defaultRetryAfter.
func TestRateLimitedBadRetryAfter(t *testing.T) {
	for _, header := range []string{"", "soon", "-1"} {
		t.Run(fmt.Sprintf("%q", header), func(t *testing.T) {
			f := newFakeSlack(t, false)
			c, clock := newTestClient(t, f)
			f.set(methodOpen, func(w http.ResponseWriter, r *http.Request) {
				if header != "" {
					w.Header().Set("Retry-After", header)
				}
				w.WriteHeader(http.StatusTooManyRequests)
			})
			_, err := c.OpenDM(context.Background(), "U0ALICE")
			if e := slackError(t, err); e.Code != CodeRateLimited || e.RetryAfter != defaultRetryAfter {
				t.Fatalf("OpenDM: %+v", e)
			}
			f.set(methodOpen, nil)
			if _, err := c.OpenDM(context.Background(), "U0ALICE"); err != nil {
				t.Fatal(err)
			}
			if got := clock.sleeps(); len(got) != 1 || got[0] != defaultRetryAfter {
				t.Fatalf("slept %v", got)
			}
		})
	}
}

func TestServerError(t *testing.T) {
	f := newFakeSlack(t, false)
	c, _ := newTestClient(t, f)
	f.set(methodPost, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "<html>oops</html>", http.StatusInternalServerError)
	})
	_, err := c.Post(context.Background(), "D0ALICE", textMsg("x"))
	if e := slackError(t, err); e.Code != CodeHTTPStatus || e.Status != 500 || e.Permanent {
		t.Fatalf("Post: %+v, want http_error 500, not permanent", e)
	}
}

// TestHangingServer: a server that never answers costs the call its ctx,
// and the error is a timeout, not permanent.
func TestHangingServer(t *testing.T) {
	f := newFakeSlack(t, false)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // before the server closes
	f.set(methodPost, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	c, _ := newTestClient(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Post(ctx, "D0ALICE", textMsg("x"))
	if e := slackError(t, err); e.Code != CodeTimeout || e.Permanent || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Post: %v (%+v), want a timeout, not permanent", err, e)
	}
}

func TestNetworkError(t *testing.T) {
	f := newFakeSlack(t, false)
	c, _ := newTestClient(t, f)
	f.srv.Close()
	_, err := c.Post(context.Background(), "D0ALICE", textMsg("x"))
	if e := slackError(t, err); e.Code != CodeNetwork || e.Permanent {
		t.Fatalf("Post: %+v, want network_error, not permanent", e)
	}
}

func TestInvalidAuth(t *testing.T) {
	f := newFakeSlack(t, false)
	c, err := New(Options{Token: "xoxb-1234-5678-revoked", APIURL: f.srv.URL + "/api/"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Post(context.Background(), "D0ALICE", textMsg("x"))
	e := slackError(t, err)
	if e.Code != "invalid_auth" || !e.Permanent || e.Method != methodPost {
		t.Fatalf("Post: %+v, want permanent invalid_auth", e)
	}
	if e.Error() != "slack chat.postMessage: invalid_auth" {
		t.Errorf("Error() = %q", e.Error())
	}
}

func TestClassify(t *testing.T) {
	for _, tt := range []struct {
		err       error
		code      string
		permanent bool
	}{
		{slack.SlackErrorResponse{Err: "channel_not_found"}, "channel_not_found", true},
		{slack.SlackErrorResponse{Err: "not_in_channel"}, "not_in_channel", true},
		{slack.SlackErrorResponse{Err: "message_not_found"}, "message_not_found", true},
		{slack.SlackErrorResponse{Err: "cant_update_message"}, "cant_update_message", true},
		{slack.SlackErrorResponse{Err: "msg_too_long"}, "msg_too_long", true},
		{slack.SlackErrorResponse{Err: "missing_scope"}, "missing_scope", true},
		{slack.SlackErrorResponse{Err: "token_revoked"}, "token_revoked", true},
		{slack.SlackErrorResponse{Err: "file_too_large"}, "file_too_large", true},
		{slack.SlackErrorResponse{Err: "user_not_found"}, "user_not_found", true},
		{slack.SlackErrorResponse{Err: "fatal_error"}, "fatal_error", false},
		{slack.SlackErrorResponse{Err: "internal_error"}, "internal_error", false},
		{slack.SlackErrorResponse{Err: "service_unavailable"}, "service_unavailable", false},
		{slack.SlackErrorResponse{Err: "request_timeout"}, "request_timeout", false},
		{slack.SlackErrorResponse{Err: "file_not_found"}, "file_not_found", false},
		{slack.SlackErrorResponse{Err: "never_heard_of_it"}, "never_heard_of_it", false},
		{slack.SlackErrorResponse{Err: "rate_limited"}, CodeRateLimited, false},
		{slack.SlackErrorResponse{Err: "Invalid Auth"}, CodeInvalidResponse, false},
		{&slack.RateLimitedError{RetryAfter: 3 * time.Second}, CodeRateLimited, false},
		{slack.StatusCodeError{Code: 503, Status: "503 Service Unavailable"}, CodeHTTPStatus, false},
		{fmt.Errorf("x: %w", errRefused), CodeRefused, true},
		{fmt.Errorf("x: %w", context.Canceled), CodeCanceled, false},
		{&url.Error{Op: "Post", URL: "https://files.slack.com/upload/v1/secret", Err: context.DeadlineExceeded}, CodeTimeout, false},
		{io.ErrUnexpectedEOF, CodeInvalidResponse, false},
		{errors.New("connection reset"), CodeNetwork, false},
	} {
		e := classify(methodPost, tt.err)
		if e.Code != tt.code || e.Permanent != tt.permanent {
			t.Errorf("classify(%v) = %s permanent=%v, want %s permanent=%v", tt.err, e.Code, e.Permanent, tt.code, tt.permanent)
		}
		if strings.Contains(e.Error(), "secret") {
			t.Errorf("Error() %q shows the request URL", e.Error())
		}
	}
}

// TestRedirectNotFollowed: a redirect is an error, and its target is
// never asked.
func TestRedirectNotFollowed(t *testing.T) {
	f := newFakeSlack(t, false)
	f.set(methodPost, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/api/elsewhere", http.StatusTemporaryRedirect)
	})
	c, _ := newTestClient(t, f)
	_, err := c.Post(context.Background(), "D0ALICE", textMsg("x"))
	if e := slackError(t, err); e.Code != CodeHTTPStatus || e.Status != http.StatusTemporaryRedirect {
		t.Fatalf("Post: %+v, want http_error 307", e)
	}
	if n := f.count("elsewhere"); n != 0 {
		t.Fatalf("the redirect was followed")
	}
}

func TestSlackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"slack.com": true, "files.slack.com": true, "wss-primary.slack.com": true, "SLACK.COM": true,
		"slack-gov.com": true, "files.slack-gov.com": true, "a.b.slack.com": true,
		"slack.com.": false, "evilslack.com": false, "slack.com.evil.example": false, "slack.co": false,
		"": false, ".slack.com": false, "a..slack.com": false, "-a.slack.com": false, "a_b.slack.com": false,
		"127.0.0.1": false, "::1": false, "slack.com:443": false, "slack%2ecom": false,
	} {
		if got := slackHost(host); got != want {
			t.Errorf("slackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

// TestProductionDialer calls the production dial functions directly:
// each refusal comes before any connection (errRefused), so no test
// needs the network.
func TestProductionDialer(t *testing.T) {
	d := newDialer(true, "", true, nil)
	ctx := context.Background()
	for _, tt := range []struct {
		name, network, addr string
		tls                 bool
	}{
		{"plain TCP to Slack", "tcp", "slack.com:443", false},
		{"plain TCP to Slack's port 80", "tcp", "slack.com:80", false},
		{"plain TCP to loopback", "tcp", "127.0.0.1:8080", false},
		{"TLS to another host", "tcp", "evil.example:443", true},
		{"TLS to a look-alike", "tcp", "slack.com.evil.example:443", true},
		{"TLS to a suffix look-alike", "tcp", "evilslack.com:443", true},
		{"TLS to Slack on another port", "tcp", "files.slack.com:8443", true},
		{"TLS to an IP address", "tcp", "127.0.0.1:443", true},
		{"TLS to the metadata service", "tcp", "169.254.169.254:443", true},
		{"UDP", "udp", "slack.com:443", true},
		{"Unix socket", "unix", "/run/x.sock", true},
		{"no port", "tcp", "slack.com", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dial := d.dial
			if tt.tls {
				dial = d.dialTLS
			}
			conn, err := dial(ctx, tt.network, tt.addr)
			if err == nil {
				conn.Close()
				t.Fatalf("dialed %s %s", tt.network, tt.addr)
			}
			if !errors.Is(err, errRefused) {
				t.Fatalf("error %v is not a refusal", err)
			}
		})
	}
}

// TestTestModeDialer: in test mode the dialer reaches the test Web API's
// host:port only.
func TestTestModeDialer(t *testing.T) {
	d := newDialer(false, "127.0.0.1:8080", false, nil)
	ctx := context.Background()
	for _, addr := range []string{"127.0.0.1:8081", "127.0.0.2:8080", "[::1]:8080", "slack.com:443"} {
		if _, err := d.dial(ctx, "tcp", addr); !errors.Is(err, errRefused) {
			t.Errorf("dial %s: %v, want a refusal", addr, err)
		}
	}
	if _, err := d.dialTLS(ctx, "tcp", "127.0.0.1:8080"); !errors.Is(err, errRefused) {
		t.Errorf("TLS dial to an http test Web API: %v, want a refusal", err)
	}
}

// TestTLSTestMode: a test Web API over https on loopback, its CA given.
func TestTLSTestMode(t *testing.T) {
	f := newFakeSlack(t, true)
	pool := x509.NewCertPool()
	pool.AddCert(f.srv.Certificate())
	c, err := newClient(Options{Token: testToken, APIURL: f.srv.URL + "/api/"}, pool)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Post(context.Background(), "D0ALICE", textMsg("x")); err != nil {
		t.Fatal(err)
	}
	// Without its CA the server is not believed.
	c, _ = New(Options{Token: testToken, APIURL: f.srv.URL + "/api/"})
	_, err = c.Post(context.Background(), "D0ALICE", textMsg("x"))
	if e := slackError(t, err); e.Code != CodeNetwork {
		t.Fatalf("Post to an unknown CA: %+v", e)
	}
	if n := f.count(methodPost); n != 1 {
		t.Fatalf("chat.postMessage reached %d times, want 1", n)
	}
}

// TestLimiter runs the client's limits on a fake clock.
func TestLimiter(t *testing.T) {
	ctx := context.Background()
	t.Run("two posts to one channel", func(t *testing.T) {
		c, clock := newTestClient(t, newFakeSlack(t, false))
		for range 2 {
			if _, err := c.Post(ctx, "D0ALICE", textMsg("x")); err != nil {
				t.Fatal(err)
			}
		}
		if got := clock.sleeps(); len(got) != 1 || got[0] != time.Second {
			t.Fatalf("slept %v, want [1s]", got)
		}
	})
	t.Run("posts to two channels", func(t *testing.T) {
		c, clock := newTestClient(t, newFakeSlack(t, false))
		for _, ch := range []string{"D0ALICE", "D0BOB", "D0CAROL"} {
			if _, err := c.Post(ctx, ch, textMsg("x")); err != nil {
				t.Fatal(err)
			}
		}
		if got := clock.sleeps(); len(got) != 0 {
			t.Fatalf("slept %v, want nothing", got)
		}
	})
	t.Run("51 updates in a minute", func(t *testing.T) {
		f := newFakeSlack(t, false)
		c, clock := newTestClient(t, f)
		for i := range updatePerMinute {
			if err := c.Update(ctx, "D0ALICE", "1.1", textMsg("x")); err != nil {
				t.Fatal(err)
			}
			clock.advance(time.Second) // 50 updates over 50 s
			if got := clock.sleeps(); len(got) != 0 {
				t.Fatalf("update %d slept %v", i+1, got)
			}
		}
		if err := c.Update(ctx, "D0ALICE", "1.1", textMsg("x")); err != nil {
			t.Fatal(err)
		}
		if got := clock.sleeps(); len(got) != 1 || got[0] != 10*time.Second {
			t.Fatalf("the 51st update (at 50 s) slept %v, want [10s]: the first is a minute old then", got)
		}
		if n := f.count(methodUpdate); n != updatePerMinute+1 {
			t.Fatalf("%d updates reached Slack", n)
		}
	})
	t.Run("ctx ends while waiting", func(t *testing.T) {
		f := newFakeSlack(t, false)
		c, _ := newTestClient(t, f)
		c.sleep = func(context.Context, time.Duration) error { return context.DeadlineExceeded }
		if _, err := c.Post(ctx, "D0ALICE", textMsg("x")); err != nil {
			t.Fatal(err)
		}
		_, err := c.Post(ctx, "D0ALICE", textMsg("x"))
		e := slackError(t, err)
		if e.Code != CodeClientRateLimited || e.Permanent || e.RetryAfter != time.Second {
			t.Fatalf("Post: %+v, want client_ratelimited, 1s, not permanent", e)
		}
		if n := f.count(methodPost); n != 1 {
			t.Fatalf("chat.postMessage called %d times, want 1", n)
		}
	})
	t.Run("ctx already ended", func(t *testing.T) {
		f := newFakeSlack(t, false)
		c, _ := newTestClient(t, f)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := c.Post(cctx, "D0ALICE", textMsg("x"))
		if e := slackError(t, err); e.Code != CodeCanceled {
			t.Fatalf("Post: %+v", e)
		}
		if n := f.count(methodPost); n != 0 {
			t.Fatalf("Slack called with an ended ctx")
		}
	})
	t.Run("upload steps", func(t *testing.T) {
		c, clock := newTestClient(t, newFakeSlack(t, false))
		for range filesPerMinute + 1 {
			if err := c.Upload(ctx, "D0ALICE", "a.mp4", "", strings.NewReader("data"), 4); err != nil {
				t.Fatal(err)
			}
		}
		// The 101st waits a minute for files.getUploadURLExternal; by
		// then files.completeUploadExternal has room.
		if got := clock.sleeps(); len(got) != 1 || got[0] != time.Minute {
			t.Fatalf("slept %v, want [1m0s]", got)
		}
	})
}

func TestWindow(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := newWindow(3, time.Minute)
	for i, tt := range []struct {
		at   time.Duration
		wait time.Duration
	}{
		{0, 0}, {10 * time.Second, 0}, {20 * time.Second, 0},
		{30 * time.Second, 30 * time.Second}, // the 4th: until the 1st is a minute old
		{60 * time.Second, 0},
		{61 * time.Second, 9 * time.Second},
		{70 * time.Second, 0},
		{80 * time.Second, 0},
		{80 * time.Second, 40 * time.Second},
	} {
		if got := w.take(t0.Add(tt.at)); got != tt.wait {
			t.Fatalf("call %d at %v: wait %v, want %v", i+1, tt.at, got, tt.wait)
		}
	}
	w.block(t0.Add(200 * time.Second))
	if got := w.take(t0.Add(150 * time.Second)); got != 50*time.Second {
		t.Fatalf("blocked: wait %v, want 50s", got)
	}
	if w.idle(t0.Add(199*time.Second)) || !w.idle(t0.Add(200*time.Second)) {
		t.Fatalf("idle wrong around the block's end")
	}
}

// TestPostWindowsBounded: the per-channel windows of idle channels are
// dropped once there are maxPostWindows.
func TestPostWindowsBounded(t *testing.T) {
	l := newLimits()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3 * maxPostWindows {
		ch := fmt.Sprintf("D%08d", i)
		l.window(methodPost, ch, now).take(now)
		now = now.Add(10 * time.Millisecond)
	}
	if n := len(l.post); n > maxPostWindows+1 {
		t.Fatalf("%d windows kept", n)
	}
}

var (
	dmRE   = regexp.MustCompile(`^D[A-Z0-9]{2,31}$`)
	userRE = regexp.MustCompile(`^[UW][A-Z0-9]{2,31}$`)
	tsRE   = regexp.MustCompile(`^[0-9]{1,20}\.[0-9]{1,20}$`)
	codeRE = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)
)

// FuzzValidate holds the hand-written checks of Slack's answers to their
// regular expressions.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{"D0ALICE", "C0TEAM", "U0ALICE", "W0BOB", "1700000000.000100", "1.1", "d0x", "D0", "1.", ".1", "D0Ä", "1.1\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if validDM(s) != dmRE.MatchString(s) {
			t.Fatalf("validDM(%q) = %v", s, validDM(s))
		}
		if validUser(s) != userRE.MatchString(s) {
			t.Fatalf("validUser(%q) = %v", s, validUser(s))
		}
		if validTS(s) != tsRE.MatchString(s) {
			t.Fatalf("validTS(%q) = %v", s, validTS(s))
		}
		if cleanCode(s) != CodeInvalidResponse && !codeRE.MatchString(s) {
			t.Fatalf("cleanCode(%q) passes it", s)
		}
	})
}

// FuzzTruncate: the result is valid UTF-8, within the limit, and either
// the input (made valid) or a prefix of it followed by "…".
func FuzzTruncate(f *testing.F) {
	f.Add("abc", 2)
	f.Add("😀😀😀", 4)
	f.Add("a\xffb", 10)
	f.Fuzz(func(t *testing.T, s string, limit int) {
		if limit < 1 || limit > 10000 {
			return
		}
		got := truncate(s, limit)
		valid := strings.ToValidUTF8(s, "\uFFFD")
		if !utf8.ValidString(got) || utf16Len(got) > limit {
			t.Fatalf("truncate(%q, %d) = %q", s, limit, got)
		}
		if got != valid && !(strings.HasSuffix(got, "…") && strings.HasPrefix(valid, strings.TrimSuffix(got, "…"))) {
			t.Fatalf("truncate(%q, %d) = %q, not a prefix and …", s, limit, got)
		}
	})
}

// FuzzRetryAfter: whatever the header, the wait is within bounds.
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"7", "0", "-1", "99999999999", "Wed, 21 Oct 2026 07:28:00 GMT", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d := parseRetryAfter([]string{s}); d < minRetryAfter || d > maxRetryAfter {
			t.Fatalf("parseRetryAfter(%q) = %v", s, d)
		}
	})
}

// FuzzUploadURL: a URL the production check accepts is https, on one of
// Slack's upload hosts and port 443, without user info.
func FuzzUploadURL(f *testing.F) {
	for _, s := range []string{"https://files.slack.com/upload/v1/abc", "https://files.slack.com@evil/x", "https://files.slack.com:443/x", "http://files.slack.com/x"} {
		f.Add(s)
	}
	prod := &Client{production: true}
	f.Fuzz(func(t *testing.T, s string) {
		if prod.checkUploadURL(s) != "" {
			return
		}
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "https" || u.User != nil || (u.Hostname() != "files.slack.com" && u.Hostname() != "files.slack-gov.com") ||
			(u.Port() != "" && u.Port() != "443") || !slackHost(u.Hostname()) {
			t.Fatalf("accepted %q", s)
		}
	})
}

// TestTokenRulesAgree: ytkeep doctor and the courier's start check a bot
// token with config.CheckBotToken; this client with validToken. A token
// one accepts and the other refuses would pass doctor and stop the
// courier: they must agree.
func TestTokenRulesAgree(t *testing.T) {
	for _, tok := range []string{
		"xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "xoxb-a", "xoxb-", "xoxb--a", "xoxb-a--b", "xoxb-a-",
		"xoxb-a_b", "xoxb-a b", "xapp-1-A0-1", "xoxp-1-2", "XOXB-abc", "xoxb-" + strings.Repeat("a", 250), "xoxb-" + strings.Repeat("a", 251),
		"xoxb-ä", "",
	} {
		if got, want := validToken(tok), config.CheckBotToken(tok) == nil; got != want {
			t.Errorf("%.40q: the client says %v, config.CheckBotToken %v", tok, got, want)
		}
	}
}
