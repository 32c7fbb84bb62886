package egress

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// benchSize is the "large file": what one download moves.
const benchSize = 256 << 20

// serveBytes answers every connection on a loopback port with benchSize
// bytes, then closes it; it returns the address.
func serveBytes(b *testing.B) string {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	chunk := make([]byte, 1<<20)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for sent := 0; sent < benchSize; sent += len(chunk) {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// BenchmarkDownload moves benchSize bytes from a loopback server, directly
// and through the egress proxy (a CONNECT tunnel, as yt-dlp's https
// downloads use it), and reports MB/s for each: the proxy's cost is the
// ratio (docs/performance.md). The proxy's policy and its accounting run
// as in production; only its resolver and dialer point at loopback.
func BenchmarkDownload(b *testing.B) {
	origin := serveBytes(b)
	b.Run("direct", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			c, err := net.Dial("tcp4", origin)
			if err != nil {
				b.Fatal(err)
			}
			if n, err := io.Copy(io.Discard, c); err != nil || n != benchSize {
				b.Fatalf("read %d bytes: %v", n, err)
			}
			c.Close()
		}
	})
	b.Run("proxy", func(b *testing.B) {
		p := &Proxy{Policy: Policy{Hosts: []string{"*.googlevideo.com"}, Ports: []uint16{443}}, MaxConns: 16, MaxBytes: 1 << 40,
			Resolve: func(context.Context, string) ([]netip.Addr, error) {
				return []netip.Addr{netip.MustParseAddr("142.250.0.1")}, nil
			},
			Dial: func(ctx context.Context, addr string) (net.Conn, error) {
				if addr != "142.250.0.1:443" {
					return nil, fmt.Errorf("dialled %s", addr)
				}
				var d net.Dialer
				return d.DialContext(ctx, "tcp4", origin)
			}}
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go p.Serve(ln)
		b.Cleanup(func() { ln.Close() })
		cred, forget := p.Register("bench", "dQw4w9WgXcQ")
		defer forget()
		head := "CONNECT rr1.googlevideo.com:443 HTTP/1.1\r\nHost: rr1.googlevideo.com:443\r\n" + auth(cred) + "\r\n"
		b.SetBytes(benchSize)
		for b.Loop() {
			c, err := net.Dial("tcp4", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.WriteString(c, head); err != nil {
				b.Fatal(err)
			}
			br := bufio.NewReader(c)
			status, err := br.ReadString('\n')
			if err != nil || !strings.Contains(status, " 200 ") {
				b.Fatalf("CONNECT: %q %v", status, err)
			}
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					b.Fatal(err)
				}
				if l == "\r\n" {
					break
				}
			}
			// The rest straight from the socket, as in the direct case
			// (not through bufio's 4 KiB buffer).
			rest, _ := br.Peek(br.Buffered())
			n, err := io.Copy(io.Discard, c)
			if n += int64(len(rest)); err != nil || n != benchSize {
				b.Fatalf("read %d bytes: %v", n, err)
			}
			c.Close()
		}
	})
}

// BenchmarkYtDlp is the same comparison as a user meets it: the installed
// yt-dlp downloads benchSize bytes from a loopback HTTP server, directly
// and through the egress proxy (the test origin, as in test mode), in
// pairs, and MB/s are reported for each with their ratio. The proxy's
// share of a download's time is what yt-dlp (Python, one connection)
// leaves to it.
func BenchmarkYtDlp(b *testing.B) {
	ytdlp, err := exec.LookPath("yt-dlp")
	if err != nil {
		b.Skip("SKIPPED: no yt-dlp")
	}
	data := make([]byte, benchSize)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "big.mp4", time.Time{}, bytes.NewReader(data))
	}))
	b.Cleanup(srv.Close)
	origin := strings.TrimPrefix(srv.URL, "http://")
	var relayed atomic.Int64 // proof that the proxied runs went through it
	p := &Proxy{Policy: Policy{Hosts: []string{"*.googlevideo.com"}, Ports: []uint16{443}, TestOrigin: origin}, MaxConns: 16, MaxBytes: 1 << 40,
		Report: func(e Event) { relayed.Add(e.Down) }}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go p.Serve(ln)
	b.Cleanup(func() { ln.Close() })
	cred, forget := p.Register("bench", "dQw4w9WgXcQ")
	defer forget()
	dir := b.TempDir()
	proxy := "http://" + cred.User + ":" + cred.Token + "@" + ln.Addr().String()
	run := func(viaProxy bool) time.Duration {
		out := filepath.Join(dir, "big.mp4")
		os.Remove(out)
		args := []string{"--ignore-config", "--no-part", "--no-progress", "--quiet", "-o", out, srv.URL + "/big.mp4"}
		cmd := exec.Command(ytdlp, args...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir}
		if viaProxy {
			cmd.Env = append(cmd.Env, "http_proxy="+proxy, "https_proxy="+proxy)
		}
		start := time.Now()
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("yt-dlp: %v\n%s", err, msg)
		}
		took := time.Since(start)
		if st, err := os.Stat(out); err != nil || st.Size() != benchSize {
			b.Fatalf("downloaded %v: %v", st, err)
		}
		return took
	}
	// Each iteration downloads the file once directly and once through
	// the proxy, in alternating order, so that whatever else loads the
	// machine weighs on both alike; the ratio is of the two totals.
	var direct, proxied time.Duration
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			direct += run(false)
			proxied += run(true)
		} else {
			proxied += run(true)
			direct += run(false)
		}
		i++
	}
	if relayed.Load() < int64(i)*benchSize {
		b.Fatalf("the proxy relayed %d bytes: yt-dlp went around it", relayed.Load())
	}
	mbps := func(d time.Duration) float64 { return float64(i) * benchSize / 1e6 / d.Seconds() }
	b.ReportMetric(mbps(direct), "direct-MB/s")
	b.ReportMetric(mbps(proxied), "proxy-MB/s")
	b.ReportMetric(direct.Seconds()/proxied.Seconds(), "proxy/direct")
}
