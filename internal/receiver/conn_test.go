package receiver

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// hangGuard bounds every wait of these tests; none of them measures time.
const hangGuard = 20 * time.Second

// limitedServer is a test server behind a ConnLimiter of max
// connections, plain or TLS, with NewServer's settings but timeouts long
// enough that only the limiter closes connections.
func limitedServer(t *testing.T, max int, useTLS bool) (*httptest.Server, *ConnLimiter, func() net.Conn) {
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = NewServer("", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/slack" { // as if signed by Slack
			trustConn(r.Context())
		}
		w.Write([]byte("ok"))
	}))
	ts.Config.ReadHeaderTimeout, ts.Config.ReadTimeout, ts.Config.WriteTimeout, ts.Config.IdleTimeout = time.Hour, time.Hour, time.Hour, time.Hour
	l := LimitConns(ts.Config, ts.Listener, max, nil)
	ts.Listener = l
	if useTLS {
		ts.StartTLS()
	} else {
		ts.Start()
	}
	t.Cleanup(ts.Close)
	addr := ts.Listener.Addr().String()
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", addr, hangGuard)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(hangGuard))
		if useTLS {
			tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
			t.Cleanup(func() { tc.Close() })
			return tc
		}
		return c
	}
	return ts, l, dial
}

// waitState waits for n connections of l in state (net/http runs the
// hook after the client may have read the answer).
func waitState(t *testing.T, l *ConnLimiter, state, n int) {
	deadline := time.Now().Add(hangGuard)
	for {
		l.mu.Lock()
		got := l.states[state].Len()
		l.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections in state %d, want %d", got, state, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// get sends a GET on c and reads the answer; it reports the status.
func get(t *testing.T, c net.Conn, br *bufio.Reader, close bool) int {
	return getPath(t, c, br, "/", close)
}

// getPath is get for path.
func getPath(t *testing.T, c net.Conn, br *bufio.Reader, path string, close bool) int {
	req := "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n"
	if close {
		req = "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	}
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// closedByServer reports whether the server closed c (a read ends in EOF
// or a reset, not the hang guard).
func closedByServer(c net.Conn, br *bufio.Reader) bool {
	_, err := br.ReadByte()
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// TestConnLimit: more connections than the limit, idle keep-alive ones
// and silent ones, and a request on a new connection still gets its
// answer: the oldest idle and silent connections were closed for it,
// and no more than the limit were ever open.
func TestConnLimit(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := "http"
		if useTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			const max = 8
			_, l, dial := limitedServer(t, max, useTLS)
			// Three keep-alive connections, idle after a request each
			// (below half the limit: kept).
			var idle []net.Conn
			var idleR []*bufio.Reader
			for range 3 {
				c := dial()
				br := bufio.NewReader(c)
				if code := get(t, c, br, false); code != http.StatusOK {
					t.Fatalf("keep-alive request: %d", code)
				}
				idle, idleR = append(idle, c), append(idleR, br)
			}
			waitState(t, l, connIdle, 3)
			// Twelve that connect and send nothing (for TLS, not even a
			// handshake).
			var silent []net.Conn
			for range 12 {
				c, err := net.DialTimeout("tcp", l.Addr().String(), hangGuard)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(hangGuard))
				silent = append(silent, c)
			}
			// A request on a new connection: accepted after all of them.
			c := dial()
			if code := get(t, c, bufio.NewReader(c), true); code != http.StatusOK {
				t.Fatalf("request at the limit: %d", code)
			}
			st := l.Stats()
			if st.Open > max {
				t.Errorf("%d connections open, limit %d", st.Open, max)
			}
			// 16 connections for 8 slots: the 3 idle and 5 silent ones
			// made room, the oldest first.
			if st.EvictedIdle != 3 || st.EvictedNew != 5 || st.Refused != 0 {
				t.Errorf("stats %+v, want 3 idle and 5 silent connections evicted", st)
			}
			for i, c := range idle {
				if !closedByServer(c, idleR[i]) {
					t.Errorf("idle keep-alive connection %d still open", i)
				}
			}
			for i, c := range silent[:5] {
				if !closedByServer(c, bufio.NewReader(c)) {
					t.Errorf("silent connection %d still open", i)
				}
			}
		})
	}
}

// TestConnLimitIdleUnderPressure: past half the limit, a connection
// going idle after its request is closed instead of kept alive.
func TestConnLimitIdleUnderPressure(t *testing.T) {
	_, l, dial := limitedServer(t, 4, false)
	var conns []net.Conn
	var readers []*bufio.Reader
	for range 3 {
		c := dial()
		br := bufio.NewReader(c)
		if code := get(t, c, br, false); code != http.StatusOK {
			t.Fatalf("request: %d", code)
		}
		conns, readers = append(conns, c), append(readers, br)
	}
	// The third went idle with three open, past 4/2.
	if !closedByServer(conns[2], readers[2]) {
		t.Fatal("the keep-alive connection past half the limit was kept")
	}
	if st := l.Stats(); st.IdleDropped != 1 || st.Open != 2 {
		t.Fatalf("stats %+v, want one idle connection dropped and two open", st)
	}
	// The first two are still served.
	for i, c := range conns[:2] {
		if code := get(t, c, readers[i], false); code != http.StatusOK {
			t.Fatalf("kept connection %d: %d", i, code)
		}
	}
}

// TestConnLimitKeepsSlackConnections: an idle keep-alive connection
// that carried a request signed by Slack is the last idle one closed to
// make room, after every other idle and every silent one, and is kept
// past half the limit.
func TestConnLimitKeepsSlackConnections(t *testing.T) {
	const max = 6
	_, l, dial := limitedServer(t, max, false)
	slack := dial()
	slackR := bufio.NewReader(slack)
	if code := getPath(t, slack, slackR, "/slack", false); code != http.StatusOK {
		t.Fatalf("Slack's request: %d", code)
	}
	waitState(t, l, connTrustedIdle, 1)
	other := dial()
	if code := get(t, other, bufio.NewReader(other), false); code != http.StatusOK {
		t.Fatalf("other request: %d", code)
	}
	waitState(t, l, connIdle, 1)
	// 30 silent connections: each makes room by closing the oldest
	// untrusted one.
	for range 30 {
		c, err := net.DialTimeout("tcp", l.Addr().String(), hangGuard)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	// A request on a new connection, accepted after all of them (it
	// closes one more silent one).
	marker := dial()
	if code := get(t, marker, bufio.NewReader(marker), true); code != http.StatusOK {
		t.Fatalf("request on a new connection: %d", code)
	}
	// Slack's connection is still served.
	if code := getPath(t, slack, slackR, "/slack", false); code != http.StatusOK {
		t.Fatalf("Slack's connection after the flood: %d", code)
	}
	waitState(t, l, connTrustedIdle, 1)
	if st := l.Stats(); st.EvictedSlackIdle != 0 || st.EvictedIdle != 1 || st.EvictedNew != 30-(max-2)-1+1 || st.Open > max {
		t.Fatalf("stats %+v", st)
	}
	// Past half the limit, Slack's connection goes idle and stays.
	if st := l.Stats(); st.Open <= max/2 || st.IdleDropped != 0 {
		t.Fatalf("stats %+v, want more than half the limit open and nothing dropped", st)
	}
}

// TestConnLimitBusy: when every slot holds a request in progress for
// less than Slack's deadline, a new connection is closed, not one of
// them.
func TestConnLimitBusy(t *testing.T) {
	_, l, dial := limitedServer(t, 2, false)
	now := time.Unix(1_800_000_000, 0)
	l.mu.Lock()
	l.now = func() time.Time { return now }
	l.mu.Unlock()
	// Two requests whose bodies never finish, each on a connection that
	// carried one of Slack's before: active, Slack's.
	for range 2 {
		c := dial()
		if code := getPath(t, c, bufio.NewReader(c), "/slack", false); code != http.StatusOK {
			t.Fatalf("Slack's request: %d", code)
		}
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
	}
	// Both active (the hook runs when the header is read).
	waitState(t, l, connActive, 2)
	c := dial()
	if !closedByServer(c, bufio.NewReader(c)) {
		t.Fatal("a new connection was kept beyond the limit")
	}
	if st := l.Stats(); st.Refused != 1 || st.EvictedSlow != 0 {
		t.Fatalf("stats %+v, want one refused", st)
	}
	// Past Slack's deadline the oldest request makes room.
	l.mu.Lock()
	now = now.Add(slackDeadline)
	l.mu.Unlock()
	c = dial()
	if code := get(t, c, bufio.NewReader(c), true); code != http.StatusOK {
		t.Fatalf("request after the deadline: %d", code)
	}
	if st := l.Stats(); st.EvictedSlow != 1 {
		t.Fatalf("stats %+v, want one slow request evicted", st)
	}
}

// TestSlowHeader: a client that sends its header a byte at a time, and
// one that sends nothing, are cut off by NewServer's ReadHeaderTimeout (the wait
// is bounded by hangGuard, not measured).
func TestSlowHeader(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the header timeout")
	}
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = NewServer("", http.NotFoundHandler())
	// Only the header's timeout may cut them off.
	ts.Config.ReadTimeout = time.Hour
	ts.Start()
	defer ts.Close()
	for _, slow := range []bool{false, true} {
		c, err := net.DialTimeout("tcp", ts.Listener.Addr().String(), hangGuard)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(hangGuard))
		done := make(chan struct{})
		if slow {
			go func() {
				defer close(done)
				for _, b := range []byte("POST /slack/commands HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 1000)) {
					if _, err := c.Write([]byte{b}); err != nil {
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()
		} else {
			close(done)
		}
		if !closedByServer(c, bufio.NewReader(c)) {
			t.Fatalf("slow client (byte at a time: %v) not cut off", slow)
		}
		c.Close()
		<-done
	}
}

// TestHeaderTooLarge: a header over MaxHeaderBytes (and net/http's 4 KiB
// of slack) is refused with 431.
func TestHeaderTooLarge(t *testing.T) {
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = NewServer("", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	ts.Start()
	defer ts.Close()
	c, err := net.DialTimeout("tcp", ts.Listener.Addr().String(), hangGuard)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(hangGuard))
	go io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", MaxHeaderBytes+4096)+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
}

// TestServerErrorLog: net/http's error lines are passed on up to
// serverLogPerMinute a minute; the rest are counted and reported with
// the next minute's first line.
func TestServerErrorLog(t *testing.T) {
	var buf syncBuffer
	now := time.Unix(1_800_000_000, 0)
	l := ServerErrorLog(slog.New(slog.NewJSONHandler(&buf, nil)))
	l.Writer().(*serverLog).now = func() time.Time { return now }
	for range 1000 {
		l.Print("http: TLS handshake error from 192.0.2.1:1234: EOF")
	}
	now = now.Add(time.Minute)
	l.Print("http: TLS handshake error from 192.0.2.1:1234: EOF")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != serverLogPerMinute+1 || !strings.Contains(lines[len(lines)-1], fmt.Sprintf(`"suppressed":%d`, 1000-serverLogPerMinute)) {
		t.Fatalf("%d lines, the last %q", len(lines), lines[len(lines)-1])
	}
}

// TestConnLimitWithheldBody: requests whose header came but whose body is
// withheld, on connections that never carried one of Slack's, hold no
// slot against a new connection, whatever their age: the oldest is
// closed for it. (An attacker sending headers and then nothing would
// otherwise hold every slot for 3 s at a time, and refuse Slack.)
func TestConnLimitWithheldBody(t *testing.T) {
	_, l, dial := limitedServer(t, 2, false)
	now := time.Unix(1_800_000_000, 0)
	l.mu.Lock()
	l.now = func() time.Time { return now }
	l.mu.Unlock()
	var held []net.Conn
	for i := range 2 {
		c := dial()
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
		held = append(held, c)
		waitState(t, l, connUnverified, i+1) // in this order
	}
	c := dial()
	if code := getPath(t, c, bufio.NewReader(c), "/slack", true); code != http.StatusOK {
		t.Fatalf("Slack's request next to withheld bodies: %d", code)
	}
	if st := l.Stats(); st.EvictedUnverified != 1 || st.Refused != 0 {
		t.Fatalf("stats %+v, want the oldest withheld body evicted", st)
	}
	if !closedByServer(held[0], bufio.NewReader(held[0])) {
		t.Error("the oldest withheld body is still open")
	}
}

// TestNoHTTP2: served over TLS as the receiver serves it (ServeTLS),
// it speaks HTTP/1.1 only, even to a client that offers HTTP/2: an
// HTTP/2 connection would carry many requests (and their bodies) in the
// one slot the limiter counts.
func TestNoHTTP2(t *testing.T) {
	certs := httptest.NewTLSServer(http.NotFoundHandler()) // for its certificate
	cert := certs.TLS.Certificates
	certs.Close()
	srv := NewServer("", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	srv.TLSConfig = &tls.Config{Certificates: cert}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTLS(LimitConns(srv, ln, 8, nil), "", "")
	defer srv.Close()
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: hangGuard}).Get("https://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 1 {
		t.Errorf("answered over %s, want HTTP/1.1", resp.Proto)
	}
}
