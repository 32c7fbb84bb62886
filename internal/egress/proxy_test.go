package egress

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// world is a proxy in front of a loopback "internet": names resolve as
// the test says, and any public address is dialled as the echo server.
type world struct {
	p      *Proxy
	addr   string // the proxy's
	echo   string // the echo server's
	mu     sync.Mutex
	events []Event
	dialed []string
}

func newWorld(t *testing.T, names map[string][]string, opts ...func(*Proxy)) *world {
	t.Helper()
	w := &world{}
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echo.Close() })
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	w.echo = echo.Addr().String()
	origin, err := netip.ParseAddrPort(w.echo)
	if err != nil {
		t.Fatal(err)
	}
	w.p = &Proxy{
		Policy:   Policy{Hosts: DefaultHosts, Ports: []uint16{443}, TestOrigin: origin.String()},
		MaxConns: 2, MaxBytes: 1 << 20,
		Report: func(e Event) { w.mu.Lock(); w.events = append(w.events, e); w.mu.Unlock() },
		Resolve: func(_ context.Context, host string) ([]netip.Addr, error) {
			var ips []netip.Addr
			for _, s := range names[host] {
				ips = append(ips, netip.MustParseAddr(s))
			}
			if len(ips) == 0 {
				return nil, errors.New("no such host")
			}
			return ips, nil
		},
		Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			w.mu.Lock()
			w.dialed = append(w.dialed, addr)
			w.mu.Unlock()
			var d net.Dialer
			return d.DialContext(ctx, "tcp", w.echo) // the whole internet echoes
		},
		HeadTimeout: 5 * time.Second,
	}
	for _, o := range opts {
		o(w.p)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go w.p.Serve(ln)
	w.addr = ln.Addr().String()
	return w
}

func auth(c Credentials) string {
	return "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(c.User+":"+c.Token)) + "\r\n"
}

// ask sends a request head and returns the proxy's status line and the
// connection (positioned after the response head).
func (w *world) ask(t *testing.T, head string) (string, net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err != nil {
		return "", c, br
	}
	for {
		l, err := br.ReadString('\n')
		if err != nil || l == "\r\n" {
			break
		}
	}
	return strings.TrimSpace(status), c, br
}

func (w *world) lastEvent() Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.events) == 0 {
		return Event{}
	}
	return w.events[len(w.events)-1]
}

func TestProxyTunnelsToAnAllowedHost(t *testing.T) {
	w := newWorld(t, map[string][]string{"rr1.googlevideo.com": {"142.250.185.14", "2a00:1450:4001:82b::200e"}})
	cred, done := w.p.Register("jobid", "dQw4w9WgXcQ")
	defer done()
	status, c, br := w.ask(t, "CONNECT rr1.googlevideo.com:443 HTTP/1.1\r\n"+auth(cred)+"\r\n")
	if status != "HTTP/1.1 200 Connection established" {
		t.Fatalf("status %q", status)
	}
	io.WriteString(c, "hello")
	b := make([]byte, 5)
	if _, err := io.ReadFull(br, b); err != nil || string(b) != "hello" {
		t.Fatalf("tunnel: %q %v", b, err)
	}
	c.Close()
	// The proxy connected to the address it checked, and reports it.
	deadline := time.Now().Add(30 * time.Second)
	for w.lastEvent().Addr == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	e := w.lastEvent()
	if e.Refused != "" || e.Job != "jobid" || e.Video != "dQw4w9WgXcQ" || e.Addr != "142.250.185.14:443" || e.Up != 5 || e.Down != 5 {
		t.Fatalf("event %+v", e)
	}
}

func TestProxyRefuses(t *testing.T) {
	w := newWorld(t, map[string][]string{
		"www.youtube.com":     {"127.0.0.1"},                  // rebinding to loopback
		"m.youtube.com":       {"142.250.185.14", "10.0.0.5"}, // one private answer among public ones
		"i.ytimg.com":         {"::ffff:169.254.169.254"},     // metadata, IPv4-mapped
		"yt3.ggpht.com":       {"64:ff9b::a9fe:a9fe"},         // metadata through NAT64
		"evil.example":        {"142.250.185.14"},             // not an allowed name
		"rr2.googlevideo.com": {"142.250.185.14"},
	})
	cred, done := w.p.Register("jobid", "dQw4w9WgXcQ")
	defer done()
	a := auth(cred)
	for _, tt := range []struct{ name, head, status, why string }{
		{"metadata service by address", "CONNECT 169.254.169.254:80 HTTP/1.1\r\n" + a + "\r\n", "403", "port 80"},
		{"metadata service on 443", "CONNECT 169.254.169.254:443 HTTP/1.1\r\n" + a + "\r\n", "403", "IP address"},
		{"loopback TLS front end", "CONNECT 127.0.0.1:443 HTTP/1.1\r\n" + a + "\r\n", "403", "IP address"},
		{"private address", "CONNECT 10.0.0.1:443 HTTP/1.1\r\n" + a + "\r\n", "403", "IP address"},
		{"ipv6 loopback", "CONNECT [::1]:443 HTTP/1.1\r\n" + a + "\r\n", "403", "IP address"},
		{"name not allowed", "CONNECT evil.example:443 HTTP/1.1\r\n" + a + "\r\n", "403", "not an allowed host"},
		{"allowed name, other port", "CONNECT rr2.googlevideo.com:22 HTTP/1.1\r\n" + a + "\r\n", "403", "port 22"},
		{"allowed name resolving to loopback", "CONNECT www.youtube.com:443 HTTP/1.1\r\n" + a + "\r\n", "403", "non-public"},
		{"allowed name with one private answer", "CONNECT m.youtube.com:443 HTTP/1.1\r\n" + a + "\r\n", "403", "non-public"},
		{"mapped metadata address", "CONNECT i.ytimg.com:443 HTTP/1.1\r\n" + a + "\r\n", "403", "non-public"},
		{"NAT64 metadata address", "CONNECT yt3.ggpht.com:443 HTTP/1.1\r\n" + a + "\r\n", "403", "non-public"},
		{"internal name", "CONNECT intranet.corp:443 HTTP/1.1\r\n" + a + "\r\n", "403", "not an allowed host"},
		{"plain http to an allowed name", "GET http://www.youtube.com:443/ HTTP/1.1\r\n" + a + "\r\n", "403", "plain http"},
		{"no credentials", "CONNECT rr2.googlevideo.com:443 HTTP/1.1\r\n\r\n", "407", "no job"},
		{"another job's guess", "CONNECT rr2.googlevideo.com:443 HTTP/1.1\r\nProxy-Authorization: Basic am9iOnRva2Vu\r\n\r\n", "407", "no job"},
		{"malformed", "CONNECT rr2.googlevideo.com HTTP/1.1\r\n" + a + "\r\n", "400", "no port"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, _, _ := w.ask(t, tt.head)
			if !strings.HasPrefix(status, "HTTP/1.1 "+tt.status+" ") {
				t.Fatalf("status %q, want %s", status, tt.status)
			}
			if e := w.lastEvent(); !strings.Contains(e.Refused, tt.why) {
				t.Fatalf("event %+v, want a refusal mentioning %q", e, tt.why)
			}
		})
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.dialed) != 0 {
		t.Fatalf("the proxy dialled %v", w.dialed)
	}
}

func TestProxyTestOrigin(t *testing.T) {
	w := newWorld(t, nil)
	cred, done := w.p.Register("jobid", "dQw4w9WgXcQ")
	defer done()
	// A GET through the proxy reaches the test origin (here the echo
	// server, which returns the rewritten request).
	status, _, _ := w.ask(t, "GET http://"+w.echo+"/media/x.mp4 HTTP/1.1\r\n"+auth(cred)+"Accept: */*\r\n\r\n")
	if status != "GET /media/x.mp4 HTTP/1.1" {
		t.Fatalf("the origin got %q", status)
	}
}

func TestProxyCapsConnections(t *testing.T) {
	w := newWorld(t, map[string][]string{"rr1.googlevideo.com": {"142.250.185.14"}})
	cred, done := w.p.Register("jobid", "dQw4w9WgXcQ")
	defer done()
	head := "CONNECT rr1.googlevideo.com:443 HTTP/1.1\r\n" + auth(cred) + "\r\n"
	for i := 0; i < 2; i++ {
		if status, _, _ := w.ask(t, head); status != "HTTP/1.1 200 Connection established" {
			t.Fatalf("connection %d: %q", i, status)
		}
	}
	if status, _, _ := w.ask(t, head); !strings.HasPrefix(status, "HTTP/1.1 503 ") {
		t.Fatalf("third connection at once: %q", status)
	}
}

func TestProxyByteBudget(t *testing.T) {
	w := newWorld(t, map[string][]string{"rr1.googlevideo.com": {"142.250.185.14"}}, func(p *Proxy) { p.MaxBytes = 64 << 10 })
	cred, done := w.p.Register("jobid", "dQw4w9WgXcQ")
	defer done()
	_, c, br := w.ask(t, "CONNECT rr1.googlevideo.com:443 HTTP/1.1\r\n"+auth(cred)+"\r\n")
	go func() {
		chunk := make([]byte, 16<<10)
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	n, _ := io.Copy(io.Discard, br) // ends when the proxy cuts the tunnel
	if n > 256<<10 {
		t.Fatalf("relayed %d bytes past a 64 KiB budget", n)
	}
	// And the job gets no new connection.
	if status, _, _ := w.ask(t, "CONNECT rr1.googlevideo.com:443 HTTP/1.1\r\n"+auth(cred)+"\r\n"); !strings.HasPrefix(status, "HTTP/1.1 503 ") {
		t.Fatalf("after the budget: %q", status)
	}
}

// TestProxyByteBudgetDownload: the download's way (spliced in the kernel)
// stops at the budget too, when the far end sends and the child only reads.
func TestProxyByteBudgetDownload(t *testing.T) {
	flood, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer flood.Close()
	go func() {
		for {
			c, err := flood.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				chunk := make([]byte, 64<<10)
				for {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
		}
	}()
	w := newWorld(t, map[string][]string{"rr1.googlevideo.com": {"142.250.185.14"}}, func(p *Proxy) {
		p.MaxBytes = 3 << 20
		p.Dial = func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp4", flood.Addr().String())
		}
	})
	cred, done := w.p.Register("jobid", "dQw4w9WgXcQ")
	defer done()
	_, _, br := w.ask(t, "CONNECT rr1.googlevideo.com:443 HTTP/1.1\r\n"+auth(cred)+"\r\n")
	n, _ := io.Copy(io.Discard, br) // ends when the proxy cuts the tunnel
	if n > 3<<20+1 {
		t.Fatalf("relayed %d bytes past a 3 MiB budget", n)
	}
	if n < 3<<20 {
		t.Fatalf("relayed %d bytes, less than the 3 MiB budget", n)
	}
}

// A child that opens a connection and sends nothing is cut off after the
// head timeout, and holds no slot.
func TestProxySlowHead(t *testing.T) {
	w := newWorld(t, nil, func(p *Proxy) { p.HeadTimeout = 100 * time.Millisecond })
	c, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "CONNECT rr1.googlevideo.com:443 HTTP/1.1\r\n") // and never the end
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	b, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(b), "HTTP/1.1 400 ") {
		t.Fatalf("got %q", b)
	}
}

// Connections that never send a request head cannot hold the proxy: past
// MaxPendingHeads they are refused at once, and an honest job is served
// meanwhile.
func TestProxyCapsPendingHeads(t *testing.T) {
	// The idle connections must stay pending for the whole test, however
	// slow the machine: a head timeout far past it. (With the default
	// 5 s they could time out first, and the connection past the cap,
	// closed on its own head timeout, would pass for refused.)
	w := newWorld(t, map[string][]string{"rr1.googlevideo.com": {"142.250.185.14"}}, func(p *Proxy) { p.HeadTimeout = 10 * time.Minute })
	var idle []net.Conn
	for i := 0; i < MaxPendingHeads; i++ {
		c, err := net.Dial("tcp", w.addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	// One more idle connection is closed by the proxy at once.
	extra, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(60 * time.Second)) // a hang guard
	if n, err := extra.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the connection past the cap was kept: %d, %v", n, err)
	}
	// Freeing one slot lets an honest job through.
	idle[0].Close()
	cred, done := w.p.Register("jobid", "dQw4w9WgXcQ")
	defer done()
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, _, _ := w.ask(t, "CONNECT rr1.googlevideo.com:443 HTTP/1.1\r\n"+auth(cred)+"\r\n")
		if status == "HTTP/1.1 200 Connection established" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("an honest request after a slot was freed: %q", status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
