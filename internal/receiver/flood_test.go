package receiver

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/notify"
	"github.com/ytkeep/ytkeep/internal/slackreq"
	"github.com/ytkeep/ytkeep/internal/spool"
	"github.com/ytkeep/ytkeep/internal/testutil"
)

type memWebhook = testutil.MemWebhook

// floodWorld is a receiver whose alerts go to an AlertPoster posting to
// a memWebhook; nothing in it needs a socket or the wall clock.
type floodWorld struct {
	s      *Service
	layout spool.Layout
	poster *notify.AlertPoster
	logger *slog.Logger // the receiver's, with the poster as its sink
	hook   *memWebhook
	log    *syncBuffer
	http   http.Handler
}

const floodSecret = "0123456789abcdef0123456789abcdef"

func newFloodWorld(t *testing.T) *floodWorld {
	root := t.TempDir()
	w := &floodWorld{layout: spool.Layout{Root: filepath.Join(root, "spool")}, hook: &memWebhook{}, log: &syncBuffer{}}
	if err := w.layout.CreateSingleUser(filepath.Join(root, "dl")); err != nil {
		t.Fatal(err)
	}
	n := &notify.Notifier{Client: &http.Client{Transport: w.hook}, Attempts: 1}
	w.poster = notify.NewAlertPoster("https://hooks.slack.com/services/T0/B0/webhooksecret", n, slog.New(slog.DiscardHandler))
	log := audit.WithSink(slog.New(slog.NewJSONHandler(w.log, nil)), "receiver", w.poster)
	w.logger = log
	var err error
	w.s, err = New(Options{SpoolDir: w.layout.Root, Command: "/ytkeep", AllowedTeams: []string{"T1"},
		AllowedChannels: []string{"C1"}, AllowedUsers: []string{"U1"},
		ResponseURLAllowed: func(string) bool { return true }, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	v, err := slackreq.NewVerifier(floodSecret, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.http = w.s.Handler("/slack/commands", v)
	return w
}

// send posts a slash command signed with key (unsigned if "") from
// remote and returns the status.
func (w *floodWorld) send(remote, key string) int {
	body := "team_id=T1&channel_id=C1&user_id=U1&command=%2Fytkeep&text=help&response_url=https%3A%2F%2Fhooks.slack.com%2Fx"
	r := httptest.NewRequest(http.MethodPost, "/slack/commands", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = remote
	if key != "" {
		slackreq.SignRequest(r.Header, key, time.Now(), []byte(body))
	}
	rec := httptest.NewRecorder()
	w.http.ServeHTTP(rec, r)
	return rec.Code
}

// post sends body, signed with key (unsigned if ""), and returns the
// answer.
func (w *floodWorld) post(body, key string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/slack/commands", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = "192.0.2.7:4242"
	if key != "" {
		slackreq.SignRequest(r.Header, key, time.Now(), []byte(body))
	}
	rec := httptest.NewRecorder()
	w.http.ServeHTTP(rec, r)
	return rec
}

// TestSSLCheck: Slack's certificate check gets an empty 200 and an audit
// event, signed or not, and raises no alert; with command fields it is a
// request like any other (verified; never queued).
func TestSSLCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newFloodWorld(t)
		const check = "ssl_check=1&token=xyzz0WbapA4vBCDEFasx0q6G"
		for _, key := range []string{"", floodSecret, "ffffffffffffffffffffffffffffffff"} {
			rec := w.post(check, key)
			if rec.Code != http.StatusOK || rec.Body.Len() != 0 {
				t.Fatalf("certificate check (key %q): %d %q", key, rec.Code, rec.Body.String())
			}
		}
		if n := strings.Count(w.log.String(), `"event":"ssl_check"`); n != 3 {
			t.Fatalf("%d ssl_check events, want 3:\n%s", n, w.log.String())
		}
		if strings.Contains(w.log.String(), `"alert":true`) || strings.Contains(w.log.String(), `"event":"refused"`) {
			t.Fatalf("a certificate check was refused or alerted:\n%s", w.log.String())
		}
		command := check + "&team_id=T1&channel_id=C1&user_id=U1&command=%2Fytkeep&text=https%3A%2F%2Fyoutu.be%2FdQw4w9WgXcQ&response_url=https%3A%2F%2Fhooks.slack.com%2Fx"
		if rec := w.post(command, ""); rec.Code != http.StatusUnauthorized {
			t.Fatalf("unsigned command with ssl_check: %d", rec.Code)
		}
		if rec := w.post(command, floodSecret); rec.Code != http.StatusBadRequest {
			t.Fatalf("signed command with ssl_check: %d", rec.Code)
		}
		for _, r := range []string{"missing_signature", "bad_form"} {
			if !strings.Contains(w.log.String(), `"reason":"`+r+`"`) {
				t.Errorf("no refusal %s:\n%s", r, w.log.String())
			}
		}
		if ents, _ := os.ReadDir(w.layout.Incoming()); len(ents) != 0 {
			t.Fatalf("%d jobs queued", len(ents))
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if err := w.poster.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, l := range w.hook.Lines() {
			if strings.Contains(l, "ssl_check") {
				t.Errorf("the admins were told of a certificate check: %q", l)
			}
		}
	})
}

var requestsAttr = regexp.MustCompile(` requests=(\d+) `)

// TestFloodKeepsViolations: 800 requests with a bad signature from seven
// addresses, at the rate of the reported attack (about 400 a second), and
// a sandbox violation relayed from the worker in the middle. The
// violation must reach the admins' channel; the flood must arrive as one
// alert for its first request and counted summaries for the rest, while
// the log keeps one event per request up to refusalLogPerSecond a second,
// and a count of the others. The clock is synctest's: the
// summary is due when the gate's window closes, and the poster is driven
// by Flush.
func TestFloodKeepsViolations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newFloodWorld(t)
		flood := func(from int) {
			for i := from; i < from+400; i++ {
				if code := w.send(fmt.Sprintf("203.0.113.%d:%d", i%7, 1024+i), "ffffffffffffffffffffffffffffffff"); code != http.StatusUnauthorized {
					t.Fatalf("bad signature answered %d", code)
				}
				time.Sleep(2500 * time.Microsecond)
			}
		}
		flood(0)
		// The receiver's own violation, as its exit alert reports it
		// (urgent: a confined domain misbehaved).
		audit.Alert(w.logger, audit.Violation, "signal", "SIGSYS", "syscall", "ptrace", "pending", "true")
		flood(400)
		// Long enough for every window to close, at any window length.
		time.Sleep(time.Hour)
		synctest.Wait()
		if err := w.poster.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}

		lines := w.hook.Lines()
		var violations, first, summaries, counted int
		for _, l := range lines {
			switch {
			case strings.Contains(l, "receiver: violation") && strings.Contains(l, "signal=SIGSYS"):
				violations++
			case strings.Contains(l, "reason=bad_signature"):
				first++
			case strings.Contains(l, "reason=unauthenticated"):
				summaries++
				m := requestsAttr.FindStringSubmatch(l)
				if m == nil {
					t.Errorf("summary without a count: %q", l)
					continue
				}
				n, _ := strconv.Atoi(m[1])
				counted += n
				if !strings.Contains(l, "addresses=7 ") || !strings.Contains(l, "reasons=bad_signature:") {
					t.Errorf("summary %q: want addresses=7 and the reasons counted", l)
				}
			}
		}
		all := strings.Join(w.hook.Posts(), "\n---\n")
		if violations != 1 {
			t.Errorf("the violation reached the admins %d times, want once:\n%s", violations, all)
		}
		if first != 1 || summaries < 1 || first+counted != 800 {
			t.Errorf("the flood arrived as %d single alerts and %d summaries counting %d, want 1 and at least 1 counting 799:\n%s", first, summaries, counted, all)
		}
		if summaries > 2 {
			t.Errorf("%d summaries for a flood of 2 s: want one per window", summaries)
		}
		if strings.Contains(all, "dropped") {
			t.Errorf("alerts were dropped:\n%s", all)
		}
		// The log keeps every request: one event each, up to
		// refusalLogPerSecond a second, and a count of the rest at the
		// end of each second; only the first is an alert.
		var logged, alerted, unlogged, reports int
		for _, l := range strings.Split(w.log.String(), "\n") {
			if strings.Contains(l, `"event":"refused"`) && strings.Contains(l, `"reason":"bad_signature"`) {
				logged++
				if strings.Contains(l, `"alert":true`) {
					alerted++
				}
			}
			if strings.Contains(l, `"event":"refused"`) && strings.Contains(l, `"reason":"unlogged"`) {
				m := regexp.MustCompile(`"requests":(\d+),"reasons":"bad_signature:(\d+)"`).FindStringSubmatch(l)
				if m == nil || m[1] != m[2] {
					t.Errorf("report of unlogged refusals %q", l)
					continue
				}
				n, _ := strconv.Atoi(m[1])
				unlogged += n
				reports++
			}
		}
		// 400 a second for 2 seconds; the alert is logged besides.
		if logged != 1+2*refusalLogPerSecond || alerted != 1 || logged+unlogged != 800 || reports != 2 {
			t.Errorf("log has %d refusals (%d alerts) and %d reports of %d more, want %d (1) and 2 of %d",
				logged, alerted, reports, unlogged, 1+2*refusalLogPerSecond, 799-2*refusalLogPerSecond)
		}
	})
}

// TestRefusalSummaries: a steady trickle of bad requests (one a second
// for ten minutes) gives one alert at once, then one summary per window,
// each window twice the last up to maxRefusalWindow; after a quiet
// window, the next refusal is alerted at once again.
func TestRefusalSummaries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newFloodWorld(t)
		for i := range 600 {
			w.send(fmt.Sprintf("198.51.100.%d:4000", i%3), "")
			time.Sleep(time.Second)
		}
		time.Sleep(time.Hour)
		w.send("192.0.2.1:5000", "ffffffffffffffffffffffffffffffff") // a new spell
		synctest.Wait()
		if err := w.poster.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		var got []string
		counted := 0
		for _, l := range w.hook.Lines() {
			switch {
			case strings.Contains(l, "reason=unauthenticated"):
				m := regexp.MustCompile(` window=([0-9a-z.]+)`).FindStringSubmatch(l)
				got = append(got, m[1])
				n, _ := strconv.Atoi(requestsAttr.FindStringSubmatch(l)[1])
				counted += n
				if !strings.Contains(l, "addresses=3 ") || !strings.Contains(l, "reasons=missing_signature:") {
					t.Errorf("summary %q", l)
				}
			case strings.Contains(l, "reason=missing_signature"):
				got = append(got, "first")
			case strings.Contains(l, "reason=bad_signature"):
				got = append(got, "first again")
			}
		}
		// Windows closing at 10, 30, 70, 150, 310 and 610 s; the last
		// counts the trickle's end.
		want := []string{"first", "10s", "20s", "40s", "1m20s", "2m40s", "5m0s", "first again"}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("alerts %q, want %q", got, want)
		}
		if counted != 599 {
			t.Errorf("summaries count %d refusals, want the 599 after the first", counted)
		}
	})
}
