package receiver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/notify"
	"github.com/ytkeep/ytkeep/internal/slackreq"
	"github.com/ytkeep/ytkeep/internal/spool"
)

// TestHostileLoad: valid signed commands mixed with forged ones (a bad
// signature, a stale timestamp, a replay of an earlier valid request, a
// body over the cap, a correctly signed command from a workspace not
// allowed), while slowloris clients hold connections (silent ones,
// headers a byte at a time, idle keep-alives) on a receiver whose
// connection limit they exceed. Every valid command is queued, no forged
// one is, each forged one is refused for its reason, and the admins get
// one alert for each kind of flood (the unauthenticated ones, the
// unauthorized workspace) and a summary counting the rest. Nothing is
// timed; waits are bounded by hangGuard.
func TestHostileLoad(t *testing.T) {
	const (
		valid    = 200
		perKind  = 5
		maxConns = 48
		loris    = 15 // of each kind
	)
	root := t.TempDir()
	layout := spool.Layout{Root: filepath.Join(root, "spool")}
	if err := layout.CreateSingleUser(filepath.Join(root, "dl")); err != nil {
		t.Fatal(err)
	}
	hook, logs := &memWebhook{}, &syncBuffer{}
	poster := notify.NewAlertPoster("https://hooks.slack.com/services/T0/B0/webhooksecret",
		&notify.Notifier{Client: &http.Client{Transport: hook}, Attempts: 1}, slog.New(slog.DiscardHandler))
	log := audit.WithSink(slog.New(slog.NewJSONHandler(logs, nil)), "receiver", poster)
	s, err := New(Options{SpoolDir: layout.Root, Command: "/ytkeep", AllowedTeams: []string{"T1"},
		AllowedChannels: []string{"*"}, AllowedUsers: []string{"*"},
		ResponseURLAllowed: func(string) bool { return true }, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	v, err := slackreq.NewVerifier(floodSecret, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer("", s.Handler("/slack/commands", v))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := LimitConns(srv, ln, maxConns, log)
	go srv.Serve(l)
	defer srv.Close()
	addr := ln.Addr().String()
	endpoint := "http://" + addr + "/slack/commands"

	// Slowloris: each kind reconnects when the receiver closes it, until
	// the traffic is done.
	done := make(chan struct{})
	var lorisWG sync.WaitGroup
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", addr, hangGuard)
		if err != nil {
			return nil
		}
		c.SetDeadline(time.Now().Add(hangGuard))
		return c
	}
	hold := func(kind int) {
		defer lorisWG.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			c := dial()
			if c == nil {
				return
			}
			go func() { <-done; c.Close() }()
			switch kind {
			case 0: // silent
			case 1: // a header a byte at a time
				for _, b := range []byte("POST /slack/commands HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 10000)) {
					if _, err := c.Write([]byte{b}); err != nil {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
			case 2: // an idle keep-alive
				io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
			}
			io.Copy(io.Discard, c) // until the receiver closes it
			c.Close()
			time.Sleep(10 * time.Millisecond)
		}
	}
	for kind := range 3 {
		for range loris {
			lorisWG.Add(1)
			go hold(kind)
		}
	}

	// Valid and forged requests, four at a time, each on a connection
	// of its own as the limiter sees most of Slack's.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: hangGuard}
	type result struct {
		kind   string
		status int
		body   string
		close  bool
	}
	body := func(team, user string) []byte {
		return []byte(url.Values{"team_id": {team}, "channel_id": {"C1"}, "user_id": {user}, "command": {"/ytkeep"},
			"text": {"https://youtu.be/dQw4w9WgXcQ"}, "response_url": {"https://hooks.slack.com/commands/T1/1/x"}}.Encode())
	}
	var replayMu sync.Mutex
	var replayable []http.Header // headers of valid requests, for replays
	var replayBodies [][]byte
	send := func(kind string, i int) result {
		b := body("T1", fmt.Sprintf("U%05d", i))
		h := http.Header{}
		h.Set("Content-Type", "application/x-www-form-urlencoded")
		switch kind {
		case "valid":
			slackreq.SignRequest(h, floodSecret, time.Now(), b)
		case "bad_signature":
			slackreq.SignRequest(h, "ffffffffffffffffffffffffffffffff", time.Now(), b)
		case "stale_timestamp":
			slackreq.SignRequest(h, floodSecret, time.Now().Add(-10*time.Minute), b)
		case "replay":
			replayMu.Lock()
			h, b = replayable[i%len(replayable)].Clone(), replayBodies[i%len(replayBodies)]
			replayMu.Unlock()
		case "body_too_large":
			b = append(b, "&x="+strings.Repeat("a", slackreq.MaxBodyBytes)...)
			slackreq.SignRequest(h, floodSecret, time.Now(), b)
		case "unauthorized_team":
			b = body("T9", fmt.Sprintf("U%05d", i))
			slackreq.SignRequest(h, floodSecret, time.Now(), b)
		}
		req, _ := http.NewRequest(http.MethodPost, endpoint, bytes.NewReader(b))
		req.Header = h
		resp, err := client.Do(req)
		if err != nil {
			return result{kind: kind, status: -1, body: err.Error()}
		}
		reply, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if kind == "valid" && i < perKind {
			replayMu.Lock()
			replayable, replayBodies = append(replayable, h), append(replayBodies, b)
			replayMu.Unlock()
		}
		return result{kind, resp.StatusCode, string(reply), resp.Close}
	}
	// The replays need valid requests to copy: the first few go first.
	var results []result
	for i := range perKind {
		results = append(results, send("valid", i))
	}
	forged := []string{"bad_signature", "stale_timestamp", "replay", "body_too_large", "unauthorized_team"}
	type task struct {
		kind string
		i    int
	}
	tasks := make(chan task)
	out := make(chan result)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tk := range tasks {
				out <- send(tk.kind, tk.i)
			}
		}()
	}
	go func() {
		f := 0
		for i := perKind; i < valid; i++ {
			tasks <- task{"valid", i}
			if i%7 == 0 && f < perKind*len(forged) {
				tasks <- task{forged[f%len(forged)], 1000 + f}
				f++
			}
		}
		for ; f < perKind*len(forged); f++ {
			tasks <- task{forged[f%len(forged)], 1000 + f}
		}
		close(tasks)
		wg.Wait()
		close(out)
	}()
	for r := range out {
		results = append(results, r)
	}
	close(done)
	lorisWG.Wait()

	// Every valid command queued; no forged one.
	want := map[string]int{"bad_signature": 401, "stale_timestamp": 401, "replay": 401, "body_too_large": 413, "unauthorized_team": 200}
	counts := map[string]int{}
	for _, r := range results {
		counts[r.kind]++
		switch {
		case r.kind == "valid":
			if r.status != 200 || !strings.Contains(r.body, "Queued") {
				t.Errorf("valid request: %d %q", r.status, r.body)
			}
		case r.kind == "body_too_large" && r.status == -1:
			// The receiver answered 413 and closed the connection
			// while the client was still sending: refused all the
			// same (the load tool sees both).
		case r.status != want[r.kind]:
			t.Errorf("%s: status %d, want %d (%q)", r.kind, r.status, want[r.kind], r.body)
		case strings.Contains(r.body, "Queued"):
			t.Errorf("%s accepted: %q", r.kind, r.body)
		case r.kind != "unauthorized_team" && !r.close:
			t.Errorf("%s: connection kept alive", r.kind)
		}
	}
	if counts["valid"] != valid {
		t.Fatalf("%d valid requests sent", counts["valid"])
	}
	ents, err := os.ReadDir(layout.Incoming())
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != valid {
		t.Errorf("%d jobs queued for %d valid requests", len(ents), valid)
	}
	// Each refused for its reason, one audit line each (well under the
	// log's budget).
	for _, k := range forged {
		if n := strings.Count(logs.String(), `"event":"refused","reason":"`+k+`"`) +
			strings.Count(logs.String(), `"event":"refused","alert":true,"reason":"`+k+`"`); n != perKind {
			t.Errorf("%d refusals logged for %s, want %d", n, k, perKind)
		}
	}
	st := l.Stats()
	if st.Open > maxConns || st.Refused != 0 {
		t.Errorf("connections: %+v", st)
	}
	// The slowloris clients did press on the limit.
	if st.EvictedIdle+st.EvictedNew+st.IdleDropped == 0 {
		t.Errorf("no connection was closed to make room: %+v", st)
	}
	t.Logf("connections: %+v", st)

	// The windows close now, not in 10 s: their summaries.
	s.refusals.close()
	s.replays.close()
	s.signed.mu.Lock()
	var gates []*refusalGate
	for _, g := range s.signed.gates {
		gates = append(gates, g)
	}
	s.signed.mu.Unlock()
	for _, g := range gates {
		g.close()
	}
	if err := poster.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var firstUnauth, firstTeam, counted, countedTeam, limitAlerts int
	reqs := regexp.MustCompile(` requests=(\d+) `)
	for _, line := range hook.Lines() {
		n := 0
		if m := reqs.FindStringSubmatch(line); m != nil {
			n, _ = strconv.Atoi(m[1])
		}
		switch {
		case strings.Contains(line, "reason=connection_limit"):
			limitAlerts++
		case strings.Contains(line, "reason=unauthenticated"):
			counted += n
		case strings.Contains(line, "reason=unauthorized_team") && strings.Contains(line, "repeated=true"):
			countedTeam += n
		case strings.Contains(line, "reason=unauthorized_team"):
			firstTeam++
		case regexp.MustCompile(`reason=(bad_signature|stale_timestamp|replay) `).MatchString(line):
			firstUnauth++
		case strings.Contains(line, "refused"):
			t.Errorf("unexpected alert %q", line)
		}
	}
	// When the limit closed or refused a connection to make room, the
	// admins are told, once a minute at most.
	if full := st.EvictedIdle + st.EvictedNew + st.EvictedUnverified + st.EvictedSlackIdle + st.EvictedSlow + st.Refused; (full > 0) != (limitAlerts == 1) || limitAlerts > 1 {
		t.Errorf("%d connection_limit alerts for %d connections closed or refused at the limit", limitAlerts, full)
	}
	// Bad signatures and stale timestamps share a gate; replays (a
	// request Slack signed, sent again) have their own, so that the
	// flood cannot fold them into its summary: two single alerts.
	if firstUnauth != 2 || counted != 3*perKind-2 {
		t.Errorf("unauthenticated flood: %d single alerts, summaries counting %d; want 2 and %d:\n%s",
			firstUnauth, counted, 3*perKind-2, strings.Join(hook.Lines(), "\n"))
	}
	if firstTeam != 1 || countedTeam != perKind-1 {
		t.Errorf("workspace not allowed: %d single alerts, summaries counting %d; want 1 and %d:\n%s",
			firstTeam, countedTeam, perKind-1, strings.Join(hook.Lines(), "\n"))
	}
}

// TestRefusalClosesConnection: a refused request's connection is not
// kept alive (a forger holds no idle slot; the rest of a body over the
// cap is not read), a valid one's is.
func TestRefusalClosesConnection(t *testing.T) {
	w := newFloodWorld(t)
	ts := httptestServer(t, w.http)
	client := &http.Client{Timeout: hangGuard}
	for _, tt := range []struct {
		name, key string
		close     bool
	}{
		{"bad signature", "ffffffffffffffffffffffffffffffff", true},
		{"unsigned", "", true},
		{"valid", floodSecret, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := "team_id=T1&channel_id=C1&user_id=U1&command=%2Fytkeep&text=help&response_url=https%3A%2F%2Fhooks.slack.com%2Fx"
			req, _ := http.NewRequest(http.MethodPost, ts+"/slack/commands", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tt.key != "" {
				slackreq.SignRequest(req.Header, tt.key, time.Now(), []byte(body))
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.Close != tt.close {
				t.Fatalf("status %d, connection closed %v, want %v", resp.StatusCode, resp.Close, tt.close)
			}
		})
	}
}

// httptestServer serves h on loopback with NewServer's settings and
// returns its URL.
func httptestServer(t *testing.T, h http.Handler) string {
	srv := NewServer("", h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(LimitConns(srv, ln, MaxConns, nil))
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}
