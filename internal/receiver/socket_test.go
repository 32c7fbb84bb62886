package receiver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/ytkeep/ytkeep/internal/slackreq"
	"github.com/ytkeep/ytkeep/internal/spool"
	"github.com/ytkeep/ytkeep/internal/testbed"
)

// socketPayload is a slash command payload as Socket Mode delivers it:
// the HTTP form's fields as strings.
const socketPayload = `{"token":"bHKJ2n9AW6Ju3MjciOHfbA1b","team_id":"T0DEMO0001","team_domain":"demo","channel_id":"C0DEMO0001","channel_name":"general","user_id":"U0DEMO0001","user_name":"demo-user","command":"/ytkeep","text":"https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;t=30s 720p","api_app_id":"A0123456789","is_enterprise_install":"false","response_url":"https://hooks.slack.com/commands/T0DEMO0001/1/abc","trigger_id":"1.2.3"}`

func TestPayloadForm(t *testing.T) {
	form, err := payloadForm(json.RawMessage(socketPayload))
	if err != nil {
		t.Fatal(err)
	}
	c, err := slackreq.ParseCommand([]byte(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	if c.TeamID != "T0DEMO0001" || c.Text != "https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;t=30s 720p" || c.APIAppID != "A0123456789" || c.IsEnterpriseInstall {
		t.Errorf("parsed %+v", c)
	}
	// is_enterprise_install as a JSON boolean reads as the form's string.
	form, err = payloadForm(json.RawMessage(strings.Replace(socketPayload, `"is_enterprise_install":"false"`, `"is_enterprise_install":true`, 1)))
	if err != nil || form.Get("is_enterprise_install") != "true" {
		t.Errorf("boolean field: %v, %v", form, err)
	}
	many := "{"
	for i := range 65 {
		many += fmt.Sprintf(`"k%d":"v",`, i)
	}
	many = strings.TrimSuffix(many, ",") + "}"
	for name, bad := range map[string]string{
		"not an object":   `["team_id","T1"]`,
		"nested object":   `{"team_id":{"id":"T1"}}`,
		"array value":     `{"text":["a","b"]}`,
		"number":          `{"team_id":12}`,
		"null":            `{"team_id":null}`,
		"repeated key":    `{"text":"a","text":"b"}`,
		"trailing data":   socketPayload + `{}`,
		"trailing junk":   socketPayload + `x`,
		"empty key":       `{"":"x"}`,
		"too many fields": many,
		"truncated":       socketPayload[:40],
		"empty":           ``,
	} {
		if f, err := payloadForm(json.RawMessage(bad)); err == nil {
			t.Errorf("%s: accepted as %v", name, f)
		}
	}
}

// FuzzPayloadForm: whatever Slack's side of the WebSocket sends, the
// payload either is refused or becomes a form the command parser reads
// without panicking, holding exactly the payload's string fields.
func FuzzPayloadForm(f *testing.F) {
	f.Add([]byte(socketPayload))
	f.Add([]byte(`{"text":"a","text":"b"}`))
	f.Add([]byte(`{"team_id":{"id":"T1"}}`))
	f.Add([]byte(`{"ssl_check":"1","token":"x"}`))
	f.Add([]byte(`{"a":"\u0000","b":true}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		form, err := payloadForm(json.RawMessage(b))
		if err != nil {
			return
		}
		enc := form.Encode()
		back, err := url.ParseQuery(enc)
		if err != nil || len(back) != len(form) {
			t.Fatalf("the form does not survive encoding: %v %v", form, err)
		}
		slackreq.ParseCommand([]byte(enc))
	})
}

func TestEnvelopeCache(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newEnvelopeCache(3, time.Minute)
	c.now = func() time.Time { return now }
	c.put("a", "A")
	c.put("b", "B")
	if r, ok := c.get("a"); !ok || r != "A" {
		t.Errorf("a: %q %v", r, ok)
	}
	c.put("c", "C")
	c.put("d", "D") // over the bound: a goes
	if _, ok := c.get("a"); ok {
		t.Error("a kept past the bound")
	}
	now = now.Add(2 * time.Minute) // past the age: all go
	if _, ok := c.get("d"); ok {
		t.Error("d kept past its age")
	}
	c.put("e", "E")
	if len(c.m) != 1 || len(c.order) != 1 {
		t.Errorf("expired entries kept: %v", c.order)
	}
}

func TestValidEnvelopeID(t *testing.T) {
	for id, want := range map[string]bool{
		"dbdd0ef3-1543-4f94-bfb4-133d0e6c1545": true,
		"":                                     false,
		"a b":                                  false,
		"../x":                                 false,
		strings.Repeat("a", 65):                false,
		"id\n":                                 false,
	} {
		if validEnvelopeID(id) != want {
			t.Errorf("validEnvelopeID(%q) = %v", id, !want)
		}
	}
}

// TestSocketHelloCountsConnections: when Slack's hello counts more
// connections than the receiver opened, someone else holds the app
// token: an alert. With its own connection alone, none.
func TestSocketHelloCountsConnections(t *testing.T) {
	for _, other := range []bool{false, true} {
		t.Run(fmt.Sprintf("another-client=%v", other), func(t *testing.T) {
			sm := simSocket(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a hang guard
			defer cancel()
			if other {
				// Someone else, with the same token, connected first.
				thief := socketmode.New(slack.New("", slack.OptionAppLevelToken(sm.AppToken), slack.OptionAPIURL(sm.APIURL())))
				go thief.RunContext(ctx)
				go func() {
					for range thief.Events {
					}
				}()
				if err := sm.WaitConnected(ctx, 1); err != nil {
					t.Fatal(err)
				}
			}
			var logs syncBuffer
			s := socketService(t, &logs)
			go s.RunSocket(ctx, SocketOptions{AppToken: sm.AppToken, APIURL: sm.APIURL()})
			want := 1
			if other {
				want = 2
			}
			if err := sm.WaitConnected(ctx, want); err != nil {
				t.Fatal(err)
			}
			const alert = `"event":"socket_extra_connection","alert":true`
			if other {
				for deadline := time.Now().Add(time.Minute); !strings.Contains(logs.String(), alert); time.Sleep(20 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("no extra connection alert in a minute:\n%s", logs.String())
					}
				}
				return
			}
			// The receiver handles its events in order, and the hello
			// comes first on a connection: once an envelope sent after
			// it is acknowledged, the hello has been looked at.
			e, err := sm.Envelope(testbed.Invocation{User: "U1", Channel: "C1", Command: "/ytkeep", Text: "help"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sm.Deliver(ctx, e, 0); err != nil {
				t.Fatalf("an envelope after the hello: %v\n%s", err, logs.String())
			}
			if strings.Contains(logs.String(), alert) {
				t.Errorf("an extra connection alert with one connection:\n%s", logs.String())
			}
		})
	}
}

func socketService(t *testing.T, log io.Writer) *Service {
	root := t.TempDir()
	layout := spool.Layout{Root: filepath.Join(root, "spool")}
	if err := layout.CreateSingleUser(filepath.Join(root, "dl")); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{SpoolDir: layout.Root, Command: "/ytkeep", AllowedTeams: []string{"T1"},
		AllowedChannels: []string{"*"}, AllowedUsers: []string{"*"},
		ResponseURLAllowed: func(string) bool { return true },
		Logger:             slog.New(slog.NewJSONHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestWSDialerPinsSlack: in production the WebSocket URL Slack's answer
// names is dialled only over TLS and only on Slack's hosts.
func TestWSDialerPinsSlack(t *testing.T) {
	d := wsDialer(&net.Dialer{Timeout: time.Second}, true, nil)
	ctx := context.Background()
	if _, err := d.NetDialContext(ctx, "tcp", "127.0.0.1:80"); err == nil || !strings.Contains(err.Error(), "without TLS") {
		t.Errorf("plain ws in production: %v", err)
	}
	for _, host := range []string{"evil.example:443", "slack.com.evil.example:443", "notslack.com:443", "127.0.0.1:443"} {
		if _, err := d.NetDialTLSContext(ctx, "tcp", host); err == nil || !strings.Contains(err.Error(), "not Slack's") {
			t.Errorf("wss to %s: %v", host, err)
		}
	}
	for host, want := range map[string]bool{"wss-primary.slack.com": true, "slack.com": true, "WSS.SLACK.COM.": true,
		"x.slack-gov.com": true, "slack.com.evil": false, "evilslack.com": false, "": false} {
		if slackHost(host) != want {
			t.Errorf("slackHost(%q) = %v", host, !want)
		}
	}
	// Test mode (a loopback Web API): plain ws is dialled.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := wsDialer(&net.Dialer{Timeout: time.Second}, false, nil).NetDialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("test mode: %v", err)
	}
	c.Close()
}

// TestSocketStops: the receiver stops with an alert when Slack refuses
// the token (slack-go gives up), and when every connection closes at
// once (slack-go would reconnect without a pause, forever).
func TestSocketStops(t *testing.T) {
	for _, tt := range []struct {
		name   string
		setup  func(*testbed.SocketMode)
		reason string
	}{
		{"token refused", func(sm *testbed.SocketMode) { sm.Refuse("token_revoked") }, `"reason":"token_revoked"`},
		{"connections churn", func(sm *testbed.SocketMode) { sm.CloseAfterHello.Store(true) }, `connections in 1m0s`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sm := simSocket(t)
			tt.setup(sm)
			var logs syncBuffer
			s := socketService(t, &logs)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			// Without pacing: the churn bound is what this shows.
			err := s.RunSocket(ctx, SocketOptions{AppToken: sm.AppToken, APIURL: sm.APIURL(), noPacing: true})
			if err == nil || ctx.Err() != nil {
				t.Fatalf("RunSocket: %v (ctx %v)", err, ctx.Err())
			}
			if !strings.Contains(logs.String(), `"event":"socket_refused","alert":true`) || !strings.Contains(logs.String(), tt.reason) {
				t.Errorf("no socket_refused alert with %s:\n%s", tt.reason, logs.String())
			}
		})
	}
}

// TestSocketPayloadCap: a payload larger than an HTTP body may be is
// refused, as in HTTP mode: no job.
func TestSocketPayloadCap(t *testing.T) {
	var logs syncBuffer
	s := socketService(t, &logs)
	big := strings.Replace(socketPayload, `"trigger_id":"1.2.3"`, `"trigger_id":"`+strings.Repeat("x", slackreq.MaxBodyBytes)+`"`, 1)
	if r := s.socketCommand(json.RawMessage(big), "e1"); r != "This request is malformed." {
		t.Errorf("a %d-byte payload: %q", len(big), r)
	}
	if strings.Contains(logs.String(), `"event":"accepted"`) {
		t.Error("a job was queued")
	}
}

// simSocket starts a simulated Slack with its Socket Mode side, for team
// T1, closed when tb ends.
func simSocket(tb testing.TB) *testbed.SocketMode {
	tb.Helper()
	sl, err := testbed.NewSlack("T1")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(sl.Close)
	sm, err := testbed.NewSocketMode(sl)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(sm.Close)
	return sm
}

// TestRedeliveryAfterRestart: an envelope delivered again to a receiver
// started since (its memory of envelopes gone) gets the job it already
// queued, by the job ID derived from the envelope's: no second job file.
// With the random IDs of HTTP mode it would be queued twice.
func TestRedeliveryAfterRestart(t *testing.T) {
	root := t.TempDir()
	layout := spool.Layout{Root: filepath.Join(root, "spool")}
	if err := layout.CreateSingleUser(filepath.Join(root, "dl")); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	start := func() *Service {
		s, err := New(Options{SpoolDir: layout.Root, Command: "/ytkeep", AllowedTeams: []string{"T0DEMO0001"},
			AllowedChannels: []string{"*"}, AllowedUsers: []string{"*"},
			ResponseURLAllowed: func(string) bool { return true },
			Logger:             slog.New(slog.NewJSONHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	first := start().socketCommand(json.RawMessage(socketPayload), "dbdd0ef3-1543-4f94-bfb4-133d0e6c1545")
	again := start().socketCommand(json.RawMessage(socketPayload), "dbdd0ef3-1543-4f94-bfb4-133d0e6c1545")
	if !strings.HasPrefix(first, "Queued `dQw4w9WgXcQ` (720p) as job `") || again != first {
		t.Fatalf("first %q, again %q", first, again)
	}
	jobs, _ := os.ReadDir(layout.Incoming())
	if len(jobs) != 1 {
		t.Errorf("%d job files for one envelope delivered twice", len(jobs))
	}
	other := start().socketCommand(json.RawMessage(socketPayload), "0f0f0f0f-1543-4f94-bfb4-133d0e6c1545")
	if other == first {
		t.Error("another envelope got the same job")
	}
	if n := strings.Count(logs.String(), `"event":"duplicate"`); n != 1 {
		t.Errorf("%d duplicate events, want 1", n)
	}
}

// TestPacer: the first connection after a quiet spell goes at once; then
// each waits twice as long as the one before, within ±50 % jitter, up to
// the maximum; a quiet spell starts over.
func TestPacer(t *testing.T) {
	now := time.Unix(1000, 0)
	j := 0.0
	p := &pacer{base: time.Second, max: 16 * time.Second, quiet: time.Minute,
		now: func() time.Time { return now }, jitter: func() float64 { return j }}
	want := []time.Duration{0, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	for i, w := range want {
		if got := p.delay(); got != w {
			t.Errorf("connection %d (jitter 0): %v, want %v", i+1, got, w)
		}
		now = now.Add(time.Second)
	}
	j = 0.999
	if got := p.delay(); got < 23*time.Second || got >= 24*time.Second {
		t.Errorf("at the maximum with jitter near 1: %v, want just under 24s", got)
	}
	now = now.Add(2 * time.Minute)
	if got := p.delay(); got != 0 {
		t.Errorf("after a quiet spell: %v, want 0", got)
	}
	var nilPacer *pacer
	if err := nilPacer.wait(context.Background()); err != nil {
		t.Error(err)
	}
}

// TestDisconnectReasons: Slack's disconnect message names why; slack-go
// only reconnects. link_disabled (Socket Mode turned off for the app)
// raises an alert; refresh_requested and warning are routine. The reason
// is read from slack-go's debug log: this fails if a new slack-go stops
// writing it there.
func TestDisconnectReasons(t *testing.T) {
	for _, tt := range []struct {
		reason string
		alert  bool
	}{{"refresh_requested", false}, {"warning", false}, {"link_disabled", true}} {
		t.Run(tt.reason, func(t *testing.T) {
			sm := simSocket(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a hang guard
			defer cancel()
			var logs syncBuffer
			s := socketService(t, &logs)
			go s.RunSocket(ctx, SocketOptions{AppToken: sm.AppToken, APIURL: sm.APIURL(), noPacing: true})
			if err := sm.WaitConnected(ctx, 1); err != nil {
				t.Fatal(err)
			}
			sm.Disconnect(tt.reason, time.Second)
			// slack-go reconnects after a disconnect message: the second
			// connection is opened after the reason was read.
			for sm.Opened() < 2 && ctx.Err() == nil {
				time.Sleep(20 * time.Millisecond)
			}
			want := `"msg":"socket mode: Slack closes this connection; reconnecting","reason":"` + tt.reason + `"`
			if tt.alert {
				want = `"event":"socket_disabled","alert":true,"reason":"link_disabled"`
			}
			deadline := time.Now().Add(time.Minute)
			for !strings.Contains(logs.String(), want) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if !strings.Contains(logs.String(), want) {
				t.Errorf("no %s in the log:\n%s", want, logs.String())
			}
			if alerted := strings.Contains(logs.String(), `"alert":true`); alerted != tt.alert {
				t.Errorf("alert %v, want %v:\n%s", alerted, tt.alert, logs.String())
			}
		})
	}
}

// TestParseDisconnect: only a disconnect message yields a reason, bounded
// and cleaned; the rest of what the peer sends is not read here.
func TestParseDisconnect(t *testing.T) {
	for msg, want := range map[string]string{
		`{"type":"disconnect","reason":"link_disabled","debug_info":{"host":"x"}}`: "link_disabled",
		`{"type":"disconnect"}`:                                             "",
		`{"type":"disconnect","reason":"warning"}`:                          "warning",
		`{"type":"disconnect","reason":"` + strings.Repeat("a", 500) + `"}`: strings.Repeat("a", 40) + "…",
		`{"type":"disconnect","reason":"x\n{\"alert\":true}"}`:              `x?{"alert":true}`,
	} {
		got, ok := parseDisconnect([]byte(msg))
		if !ok || got != want {
			t.Errorf("parseDisconnect(%.60q) = %q, %v; want %q", msg, got, ok, want)
		}
	}
	for _, msg := range []string{`{"type":"hello"}`, `{"type":"slash_commands","reason":"link_disabled"}`,
		`{"type":"disconnect","reason":7}`, `{"type":["disconnect"]}`, `[invalid JSON]`, ``, `null`,
		// What slack-go reads as a hello (its keys match in any case),
		// re-encoded with sorted keys as its debug line has it.
		`{"Type":"hello","reason":"link_disabled","type":"disconnect"}`, `{"REASON":"x","type":"disconnect"}`,
		`{"type":"disconnect"` + strings.Repeat(" ", maxEnvelope) + `}`} {
		if r, ok := parseDisconnect([]byte(msg)); ok {
			t.Errorf("parseDisconnect(%.60q) = %q, true", msg, r)
		}
	}
}

func FuzzParseDisconnect(f *testing.F) {
	f.Add([]byte(`{"type":"disconnect","reason":"link_disabled"}`))
	f.Add([]byte(`{"type":"disconnect","reason":"\u0000\u2028"}`))
	f.Add([]byte(`{"type":"hello","num_connections":1}`))
	f.Fuzz(func(t *testing.T, msg []byte) {
		r, ok := parseDisconnect(msg)
		if !ok && r != "" {
			t.Fatal("a reason without a disconnect")
		}
		if len(r) > 40*4 || strings.ContainsAny(r, "\n\r\x00") {
			t.Fatalf("reason %q not bounded and clean", r)
		}
	})
}

// TestAckIsBounded: an acknowledgement that cannot be queued (slack-go
// holds 20 while no connection drains them) gives up after ackWait,
// within Slack's 3 s, instead of holding the receiver's event loop, which
// would also stop slack-go from reconnecting. Without the bound the 21st
// call never returns.
func TestAckIsBounded(t *testing.T) {
	var logs syncBuffer
	s := socketService(t, &logs)
	client := socketmode.New(slack.New("", slack.OptionAppLevelToken("xapp-1-test")))
	seen := newEnvelopeCache(seenEnvelopes, seenFor)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 21 {
			s.envelope(context.Background(), client, fmt.Sprintf("00000000-0000-4000-8000-%012d", i), json.RawMessage(socketPayload), 0, seen)
		}
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("an acknowledgement with nowhere to go held the receiver for a minute")
	}
	if n := strings.Count(logs.String(), "couldn't acknowledge a Socket Mode envelope"); n != 1 {
		t.Errorf("%d acknowledgements given up, want 1 (the 21st):\n%s", n, logs.String())
	}
}
