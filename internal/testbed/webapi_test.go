package testbed

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
)

// fakeClock is a WebAPI.Now that moves only when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

var t0 = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// newWebAPI starts a WebAPI on a fake clock, and a slack-go client with
// its token.
func newWebAPI(t *testing.T) (*WebAPI, *fakeClock, *slack.Client) {
	t.Helper()
	a, err := NewWebAPI(&Slack{Team: "T0SIM"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	clock := &fakeClock{t: t0}
	a.Now = clock.Now
	return a, clock, slack.New(a.BotToken, slack.OptionAPIURL(a.APIURL()))
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestWebAPIMessages: slack-go opens a DM, posts a status message with
// blocks and updates it; the simulator keeps the message as it stands
// and its history, and answers Slack's errors.
func TestWebAPIMessages(t *testing.T) {
	a, _, api := newWebAPI(t)
	ctx := testCtx(t)

	ch, _, _, err := api.OpenConversationContext(ctx, &slack.OpenConversationParameters{Users: []string{"U0ALICE"}})
	if err != nil {
		t.Fatal(err)
	}
	dm := ch.ID
	if !strings.HasPrefix(dm, "D") || dm != a.DMOf("U0ALICE") {
		t.Fatalf("DM %q, DMOf says %q", dm, a.DMOf("U0ALICE"))
	}
	again, _, alreadyOpen, err := api.OpenConversationContext(ctx, &slack.OpenConversationParameters{Users: []string{"U0ALICE"}})
	if err != nil || again.ID != dm || !alreadyOpen {
		t.Fatalf("second open: %+v, already open %v, %v", again, alreadyOpen, err)
	}
	if other := a.DMOf("U0BOB"); other == dm || other == "" {
		t.Fatalf("Bob's DM %q (Alice's %q)", other, dm)
	}

	section := slack.NewSectionBlock(slack.NewTextBlockObject("mrkdwn", "*queued*", false, false), nil, nil)
	gotCh, ts, err := api.PostMessageContext(ctx, dm, slack.MsgOptionText("queued", false), slack.MsgOptionBlocks(section))
	if err != nil || gotCh != dm {
		t.Fatalf("post: channel %q, %v", gotCh, err)
	}
	// To a user ID: the message lands in the DM. The clock stands
	// still, yet each ts is later than the one before.
	gotCh, ts2, err := api.PostMessageContext(ctx, "U0ALICE", slack.MsgOptionText("second", false))
	if err != nil || gotCh != dm || ts2 <= ts {
		t.Fatalf("post to the user: channel %q ts %q after %q, %v", gotCh, ts2, ts, err)
	}
	if ts != "1709294400.000000" {
		t.Errorf("ts %q, want the clock's time in Slack's form", ts)
	}
	if _, _, text, err := api.UpdateMessageContext(ctx, dm, ts, slack.MsgOptionText("done", false)); err != nil || text != "done" {
		t.Fatalf("update: %q, %v", text, err)
	}
	msgs := a.Messages(dm)
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	m := msgs[0]
	if m.TS != ts || m.Text != "done" || m.Updates != 1 || strings.Join(m.Texts, ",") != "queued,done" {
		t.Errorf("message %+v", m)
	}
	var blocks []map[string]any
	if err := json.Unmarshal(m.Blocks, &blocks); err != nil || len(blocks) != 1 || blocks[0]["type"] != "section" {
		t.Errorf("blocks %s not kept by an update without blocks (%v)", m.Blocks, err)
	}

	// A JSON body, with the token in the header.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.APIURL()+"chat.update",
		strings.NewReader(`{"channel":"`+dm+`","ts":"`+ts2+`","text":"third","blocks":[]}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+a.BotToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(b, []byte(`"ok":true`)) || a.Messages(dm)[1].Text != "third" {
		t.Errorf("JSON update answered %s; message %+v", b, a.Messages(dm)[1])
	}

	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"update of an unknown ts", func() error {
			_, _, _, err := api.UpdateMessageContext(ctx, dm, "1.000001", slack.MsgOptionText("x", false))
			return err
		}, "message_not_found"},
		{"update in an unknown channel", func() error {
			_, _, _, err := api.UpdateMessageContext(ctx, "C0NOPE", ts, slack.MsgOptionText("x", false))
			return err
		}, "channel_not_found"},
		{"post to an unknown channel", func() error {
			_, _, err := api.PostMessageContext(ctx, "C0NOPE", slack.MsgOptionText("x", false))
			return err
		}, "channel_not_found"},
		{"post without text", func() error {
			_, _, err := api.PostMessageContext(ctx, dm)
			return err
		}, "no_text"},
		{"open without users", func() error {
			_, _, _, err := api.OpenConversationContext(ctx, &slack.OpenConversationParameters{})
			return err
		}, "users_list_not_supplied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); err == nil || err.Error() != tc.want {
				t.Errorf("got %v, want %s", err, tc.want)
			}
		})
	}

	t.Run("text over 40,000 characters", func(t *testing.T) {
		_, long, err := api.PostMessageContext(ctx, dm, slack.MsgOptionText(strings.Repeat("é", 40001), false))
		if err != nil {
			t.Fatal(err)
		}
		msgs := a.Messages(dm)
		if last := msgs[len(msgs)-1]; last.TS != long || len([]rune(last.Text)) != 40000 {
			t.Errorf("message of %d characters, want it truncated to 40,000", len([]rune(last.Text)))
		}
		if v := a.Violations(); len(v) != 1 || !strings.Contains(v[0], "truncated") {
			t.Errorf("violations: %q", v)
		}
	})
	t.Run("body over 1 MiB", func(t *testing.T) {
		_, _, err := api.PostMessageContext(ctx, dm, slack.MsgOptionText(strings.Repeat("x", maxAPIBody), false))
		var sc slack.StatusCodeError
		if !errors.As(err, &sc) || sc.Code != http.StatusRequestEntityTooLarge {
			t.Errorf("got %v, want 413", err)
		}
	})
}

// TestWebAPIUpload: slack-go's UploadFileContext (URL, multipart POST,
// completion) shares a file in a DM; raw bytes are taken too; a file
// completes once.
func TestWebAPIUpload(t *testing.T) {
	a, _, api := newWebAPI(t)
	ctx := testCtx(t)
	dm := a.DMOf("U0ALICE")
	content := "not really an mp4\n"
	sum := sha256.Sum256([]byte(content))

	fs, err := api.UploadFileContext(ctx, slack.UploadFileParameters{Filename: "clip.mp4", FileSize: len(content),
		Reader: strings.NewReader(content), Title: "Clip", Channel: dm, InitialComment: "here it is"})
	if err != nil {
		t.Fatal(err)
	}
	files := a.Files()
	if len(files) != 1 {
		t.Fatalf("%d files", len(files))
	}
	f := files[0]
	if f.ID != fs.ID || f.Name != "clip.mp4" || f.Title != "Clip" || f.Channel != dm || !f.Uploaded || !f.Completed ||
		f.Size != int64(len(content)) || f.SHA256 != hex.EncodeToString(sum[:]) || f.InitialComment != "here it is" {
		t.Errorf("file %+v", f)
	}

	// Raw bytes, as Slack's docs allow.
	u, err := api.GetUploadURLExternalContext(ctx, slack.GetUploadURLExternalParameters{FileName: "b.bin", FileSize: 3})
	if err != nil || !strings.HasPrefix(u.UploadURL, a.URL+"/upload/") || !strings.HasPrefix(u.FileID, "F") {
		t.Fatalf("upload URL %+v, %v", u, err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u.UploadURL, strings.NewReader("abc"))
	req.Header.Set("Authorization", "Bearer "+a.BotToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "OK - 3" {
		t.Fatalf("raw upload: %d %q", resp.StatusCode, b)
	}
	complete := slack.CompleteUploadExternalParameters{Files: []slack.FileSummary{{ID: u.FileID}}, Channel: dm}
	if _, err := api.CompleteUploadExternalContext(ctx, complete); err != nil {
		t.Fatal(err)
	}
	if _, err := api.CompleteUploadExternalContext(ctx, complete); err == nil || err.Error() != "file_not_found" {
		t.Errorf("second completion: %v, want file_not_found", err)
	}
	if f := a.Files()[1]; f.Title != "b.bin" || f.Size != 3 || f.Channel != dm {
		t.Errorf("raw file %+v", f)
	}
	if v := a.Violations(); len(v) != 0 {
		t.Errorf("violations: %q", v)
	}

	small, _, smallAPI := newWebAPI(t)
	small.MaxUpload = 8
	sdm := small.DMOf("U0ALICE")
	t.Run("over the cap", func(t *testing.T) {
		_, err := smallAPI.UploadFileContext(ctx, slack.UploadFileParameters{Filename: "big", FileSize: 9,
			Content: "123456789", Channel: sdm})
		var sc slack.StatusCodeError
		if !errors.As(err, &sc) || sc.Code != http.StatusRequestEntityTooLarge {
			t.Errorf("got %v, want 413", err)
		}
	})
	t.Run("not the length declared", func(t *testing.T) {
		_, err := smallAPI.UploadFileContext(ctx, slack.UploadFileParameters{Filename: "short", FileSize: 5,
			Content: "123", Channel: sdm})
		if err != nil {
			t.Fatal(err)
		}
		if v := small.Violations(); len(v) != 1 || !strings.Contains(v[0], "3 bytes, 5 declared") {
			t.Errorf("violations: %q", v)
		}
	})
}

// TestWebAPIFaults: each injected fault is seen by slack-go as Slack's
// own would be, for the calls it was set for and no more.
func TestWebAPIFaults(t *testing.T) {
	a, _, api := newWebAPI(t)
	ctx := testCtx(t)
	dm := a.DMOf("U0ALICE")
	post := func(ctx context.Context) error {
		_, _, err := api.PostMessageContext(ctx, dm, slack.MsgOptionText("hi", false))
		return err
	}
	// abandon runs do until the simulator has a call hanging, then ends
	// its context as a timeout would: what the client sees does not
	// depend on how fast the machine is.
	abandon := func(do func(context.Context) error) func(context.Context) error {
		return func(ctx context.Context) error {
			hung := func(a *WebAPI) int {
				n := 0
				for _, c := range a.Calls() {
					if c.Status == 0 {
						n++
					}
				}
				return n
			}
			before := hung(a)
			callCtx, cancel := context.WithCancelCause(ctx)
			errc := make(chan error, 1)
			go func() { errc <- do(callCtx) }()
			if err := a.WaitFor(ctx, func(a *WebAPI) bool { return hung(a) > before }); err != nil {
				cancel(err)
				return err
			}
			cancel(context.DeadlineExceeded)
			return <-errc
		}
	}
	for _, tc := range []struct {
		name   string
		set    func()
		call   func(context.Context) error
		check  func(error) bool
		status int // of the call recorded
	}{
		{"rate limited", func() { a.RateLimit("chat.postMessage", 1, 1500*time.Millisecond) }, post,
			func(err error) bool {
				var rl *slack.RateLimitedError
				return errors.As(err, &rl) && rl.RetryAfter == 2*time.Second
			}, http.StatusTooManyRequests},
		{"500", func() { a.Fail("chat.postMessage", 1, http.StatusInternalServerError) }, post,
			func(err error) bool {
				var sc slack.StatusCodeError
				return errors.As(err, &sc) && sc.Code == http.StatusInternalServerError
			}, http.StatusInternalServerError},
		{"hang", func() { a.Hang("chat.postMessage", 1) }, abandon(post),
			func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }, 0},
		{"outage", func() { a.Outage(true) }, post,
			func(err error) bool {
				var sc slack.StatusCodeError
				defer a.Outage(false)
				return errors.As(err, &sc) && sc.Code == http.StatusServiceUnavailable
			}, http.StatusServiceUnavailable},
		{"hung upload", func() { a.Hang("upload", 1) },
			abandon(func(ctx context.Context) error {
				_, err := api.UploadFileContext(ctx, slack.UploadFileParameters{Filename: "a", FileSize: 1, Content: "a", Channel: dm})
				return err
			}),
			func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.set()
			if err := tc.call(ctx); !tc.check(err) {
				t.Fatalf("got %v (%T)", err, err)
			}
			calls := a.Calls()
			if last := calls[len(calls)-1]; last.Status != tc.status {
				t.Errorf("recorded %+v, want status %d", last, tc.status)
			}
			if err := post(ctx); err != nil {
				t.Errorf("the call after: %v", err)
			}
		})
	}

	// A real timeout: however far the call got, the client sees its
	// deadline.
	t.Run("client timeout", func(t *testing.T) {
		a.Hang("chat.postMessage", 1)
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if err := post(short); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v, want a deadline", err)
		}
		a.Hang("chat.postMessage", 0)
	})

	t.Run("until cleared", func(t *testing.T) {
		a.Fail("chat.postMessage", -1, http.StatusBadGateway)
		for range 3 {
			if post(ctx) == nil {
				t.Fatal("a call got through")
			}
		}
		a.Fail("chat.postMessage", 0, 0)
		if err := post(ctx); err != nil {
			t.Fatal(err)
		}
	})

	for _, tc := range []struct{ name, token, want string }{
		{"another token", "xoxb-other", "invalid_auth"},
		{"no token", "", "not_authed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			other := slack.New(tc.token, slack.OptionAPIURL(a.APIURL()))
			if _, _, err := other.PostMessageContext(ctx, dm, slack.MsgOptionText("x", false)); err == nil || err.Error() != tc.want {
				t.Errorf("got %v, want %s", err, tc.want)
			}
		})
	}
}

// TestWebAPIRateAccounting: posts and updates are counted against Slack's
// limits on the WebAPI's clock, so the outcome does not depend on the
// machine's speed.
func TestWebAPIRateAccounting(t *testing.T) {
	every := func(n int, d time.Duration) []time.Duration {
		var at []time.Duration
		for i := range n {
			at = append(at, time.Duration(i)*d)
		}
		return at
	}
	for _, tc := range []struct {
		name       string
		update     bool            // chat.update rather than chat.postMessage
		at         []time.Duration // each call's time after t0
		violations int
	}{
		{"burst of 3 posts", false, every(3, 0), 0},
		{"4 posts at once", false, every(4, 0), 1},
		{"6 posts at once", false, every(6, 0), 3},
		{"posts 1 s apart", false, every(10, time.Second), 0},
		{"burst, then 1 a second", false, append(every(3, 0), time.Second, 2*time.Second, 3*time.Second), 0},
		{"posts 0.5 s apart", false, every(8, 500*time.Millisecond), 2},
		{"50 updates at once", true, every(50, 0), 0},
		{"51 updates at once", true, every(51, 0), 1},
		{"updates 1.2 s apart", true, every(120, 1200*time.Millisecond), 0},
		{"updates 1 s apart", true, every(70, time.Second), 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, clock, api := newWebAPI(t)
			ctx := testCtx(t)
			dm := a.DMOf("U0ALICE")
			_, ts, err := api.PostMessageContext(ctx, dm, slack.MsgOptionText("0", false))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.update { // a fresh channel for the posts
				dm = a.DMOf("U0BOB")
			}
			for _, d := range tc.at {
				clock.Set(t0.Add(time.Hour + d))
				if tc.update {
					_, _, _, err = api.UpdateMessageContext(ctx, dm, ts, slack.MsgOptionText(d.String(), false))
				} else {
					_, _, err = api.PostMessageContext(ctx, dm, slack.MsgOptionText(d.String(), false))
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if v := a.Violations(); len(v) != tc.violations {
				t.Errorf("%d violations, want %d: %q", len(v), tc.violations, v)
			}
		})
	}
}

// TestWebAPIWaitFor: WaitFor returns on the change it waits for, and
// with the context's error when it never comes.
func TestWebAPIWaitFor(t *testing.T) {
	a, _, api := newWebAPI(t)
	ctx := testCtx(t)
	dm := a.DMOf("U0ALICE")
	done := make(chan error, 1)
	go func() {
		done <- a.WaitFor(ctx, func(a *WebAPI) bool {
			m := a.Messages(dm)
			return len(m) == 1 && m[0].Updates == 1
		})
	}()
	_, ts, err := api.PostMessageContext(ctx, dm, slack.MsgOptionText("a", false))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := api.UpdateMessageContext(ctx, dm, ts, slack.MsgOptionText("b", false)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := a.WaitFor(short, func(a *WebAPI) bool { return len(a.Files()) > 0 }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want a deadline", err)
	}
}
