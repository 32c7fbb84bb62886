package slackapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ytkeep/ytkeep/internal/metrics"
)

// Bounds of one HTTP exchange.
const (
	dialTimeout           = 10 * time.Second
	tlsTimeout            = 10 * time.Second
	responseHeaderTimeout = 15 * time.Second
	maxResponseHeader     = 16 << 10
	// callTimeout bounds a whole Web API call, answer read included.
	callTimeout = 30 * time.Second
	// maxAnswer bounds the body the client reads of an answer: Slack's
	// answers to these methods are a few kilobytes (a posted message
	// comes back with its blocks, at most 50).
	maxAnswer = 1 << 20
	// uploadFloor is the slowest upload rate the upload's timeout allows
	// for (256 KiB/s, about 2 Mbit/s): callTimeout plus one second per
	// 256 KiB, about 68 minutes for 1 GiB.
	uploadFloor = 256 << 10
)

// Retry-After bounds: Slack gives whole seconds
// (https://docs.slack.dev/apis/web-api/rate-limits). A 429 without a
// usable value waits defaultRetryAfter; no value holds a method longer
// than maxRetryAfter (the caller's ctx bounds each wait anyway).
const (
	minRetryAfter     = time.Second
	defaultRetryAfter = time.Minute
	maxRetryAfter     = time.Hour
)

// UploadTimeout is how long Upload gives the POST of size bytes to the
// upload URL: 30 s, plus 1 s per 256 KiB (the slowest rate it allows for,
// about 2 Mbit/s). A caller's deadline for a whole upload adds the other
// calls and their rate-limit waits to it.
func UploadTimeout(size int64) time.Duration {
	return callTimeout + time.Duration(size/uploadFloor+1)*time.Second
}

// dialer is the client's only way to the network.
//
// In production it connects only over TLS (verified against the system's
// roots, TLS 1.2 or later, HTTP/1.1), to port 443 of Slack's hosts:
// slack.com, slack-gov.com (GovSlack) and their subdomains, which include
// the Web API (slack.com) and the upload host (files.slack.com). Plain TCP
// is refused. In test mode it connects only to the one loopback host:port
// of the Web API URL it was given, with the URL's scheme.
type dialer struct {
	net        *net.Dialer
	production bool
	addr       string         // test mode: the host:port allowed
	tls        bool           // test mode: whether addr is https
	roots      *x509.CertPool // test mode over https: the server's CA (nil: the system's roots)
}

func newDialer(production bool, addr string, useTLS bool, roots *x509.CertPool) *dialer {
	// No MPTCP: Landlock's TCP rules, under which the courier runs, do
	// not cover it.
	nd := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	nd.SetMultipathTCP(false)
	return &dialer{net: nd, production: production, addr: addr, tls: useTLS, roots: roots}
}

// dial is the transport's DialContext, used for http URLs.
func (d *dialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := checkNetwork(network); err != nil {
		return nil, err
	}
	if d.production || d.tls {
		return nil, fmt.Errorf("%w: %s without TLS", errRefused, addr)
	}
	if addr != d.addr {
		return nil, fmt.Errorf("%w: %s is not the test Web API's %s", errRefused, addr, d.addr)
	}
	return d.net.DialContext(ctx, network, addr)
}

// dialTLS is the transport's DialTLSContext, used for https URLs: it
// connects and completes the TLS handshake (each bounded on its own).
func (d *dialer) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := checkNetwork(network); err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", errRefused, addr, err)
	}
	switch {
	case d.production && (port != "443" || !slackHost(host)):
		return nil, fmt.Errorf("%w: %s is not Slack's", errRefused, addr)
	case !d.production && (!d.tls || addr != d.addr):
		return nil, fmt.Errorf("%w: %s is not the test Web API's %s", errRefused, addr, d.addr)
	}
	conn, err := d.net.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(conn, &tls.Config{ServerName: host, RootCAs: d.roots,
		MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
	hctx, cancel := context.WithTimeout(ctx, tlsTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}

func checkNetwork(network string) error {
	switch network {
	case "tcp", "tcp4", "tcp6":
		return nil
	}
	return fmt.Errorf("%w: network %q", errRefused, network)
}

// slackHost reports whether host is one of Slack's: slack.com or
// slack-gov.com, or a subdomain of either. A host name with a trailing
// dot, an IP address or anything with another suffix is not.
func slackHost(host string) bool {
	host = strings.ToLower(host)
	for _, d := range []string{"slack.com", "slack-gov.com"} {
		if host == d || (strings.HasSuffix(host, "."+d) && validLabels(strings.TrimSuffix(host, "."+d))) {
			return true
		}
	}
	return false
}

// validLabels reports whether s is dot-separated DNS labels: letters,
// digits and inner hyphens, 1 to 63 each.
func validLabels(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// newHTTPClient is the client's HTTP client: no proxy from the
// environment, bounded handshakes and response headers, every connection
// through d, no HTTP/2, no redirect followed (Go would carry the
// Authorization header of an upload on to the same host name on another
// port or scheme, and a redirect from Slack's API is never expected), and
// every answer read through guard.
func newHTTPClient(d *dialer, m *metrics.Set) *http.Client {
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            d.dial,
		DialTLSContext:         d.dialTLS,
		TLSHandshakeTimeout:    tlsTimeout,
		ResponseHeaderTimeout:  responseHeaderTimeout,
		MaxResponseHeaderBytes: maxResponseHeader,
		ExpectContinueTimeout:  time.Second,
		MaxIdleConns:           8,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
	}
	return &http.Client{
		Transport:     guard{tr, m},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// guard bounds what is read of each answer (maxAnswer) and rewrites a
// 429's Retry-After to whole seconds within [minRetryAfter,
// maxRetryAfter] (defaultRetryAfter when absent or malformed), so that
// slack-go always reports it as a *slack.RateLimitedError.
type guard struct {
	next    http.RoundTripper
	metrics *metrics.Set // counts each request by method and status
}

func (g guard) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := g.next.RoundTrip(req)
	if err != nil {
		g.metrics.SlackCall(methodOf(req.URL.Path), 0)
		return nil, err
	}
	g.metrics.SlackCall(methodOf(req.URL.Path), resp.StatusCode)
	if resp.StatusCode == http.StatusTooManyRequests {
		d := parseRetryAfter(resp.Header.Values("Retry-After"))
		resp.Header.Set("Retry-After", strconv.FormatInt(int64(d/time.Second), 10))
	}
	resp.Body = &capReader{rc: resp.Body, left: maxAnswer}
	return resp, nil
}

// parseRetryAfter reads a 429's Retry-After header: exactly one value of
// 1 to 10 ASCII digits, seconds, clamped to [minRetryAfter,
// maxRetryAfter]; anything else is defaultRetryAfter.
func parseRetryAfter(values []string) time.Duration {
	if len(values) != 1 {
		return defaultRetryAfter
	}
	v := strings.TrimSpace(values[0])
	if v == "" || len(v) > 10 {
		return defaultRetryAfter
	}
	var n int64 // at most 10 digits: no overflow
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return defaultRetryAfter
		}
		n = n*10 + int64(v[i]-'0')
	}
	if n > int64(maxRetryAfter/time.Second) {
		return maxRetryAfter
	}
	return clampRetryAfter(time.Duration(n) * time.Second)
}

func clampRetryAfter(d time.Duration) time.Duration {
	return min(max(d, minRetryAfter), maxRetryAfter)
}

// capReader fails a read past left bytes: an answer cut at the cap would
// be a different answer.
type capReader struct {
	rc   io.ReadCloser
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		var one [1]byte
		n, err := c.rc.Read(one[:])
		if n > 0 {
			return 0, errAnswerTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.rc.Read(p)
	c.left -= int64(n)
	return n, err
}

func (c *capReader) Close() error { return c.rc.Close() }

// methodOf names the Web API method a request's path calls, or "upload"
// for anything else (the upload URL Slack gave): a metric's label, so
// one of the client's own methods.
func methodOf(path string) string {
	switch m := path[strings.LastIndexByte(path, '/')+1:]; m {
	case methodOpen, methodPost, methodUpdate, methodGetURL, methodComplete:
		return m
	}
	return methodUpload
}
