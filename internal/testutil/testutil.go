// Package testutil holds the small fakes several packages' tests share:
// a log buffer safe for concurrent use and two stand-ins for Slack's
// incoming side (response URLs and webhooks). Tests only.
package testutil

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// SyncBuffer is a bytes.Buffer safe for concurrent writers, for a daemon's
// log read by the test.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Slack is a loopback HTTP server that collects what is posted to it,
// each post as "<path> <text>" (response URLs and webhooks alike).
type Slack struct {
	mu    sync.Mutex
	posts []string
	srv   *httptest.Server
}

// NewSlack starts a Slack, closed when tb ends.
func NewSlack(tb testing.TB) *Slack {
	f := &Slack{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct{ Text string }
		json.NewDecoder(r.Body).Decode(&m)
		f.mu.Lock()
		f.posts = append(f.posts, r.URL.Path+" "+m.Text)
		f.mu.Unlock()
	}))
	tb.Cleanup(f.srv.Close)
	return f
}

// URL is the server's base URL.
func (f *Slack) URL() string { return f.srv.URL }

// Posts returns the posts so far.
func (f *Slack) Posts() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.posts...)
}

// MemWebhook is the admins' Slack channel, in memory: a RoundTripper, so
// that it works inside a synctest bubble (no sockets).
type MemWebhook struct {
	mu    sync.Mutex
	posts []string
}

func (m *MemWebhook) RoundTrip(r *http.Request) (*http.Response, error) {
	var msg struct{ Text string }
	if err := json.NewDecoder(r.Body).Decode(&msg); err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.posts = append(m.posts, msg.Text)
	m.mu.Unlock()
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok")), Request: r}, nil
}

// Posts returns the texts posted so far.
func (m *MemWebhook) Posts() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.posts...)
}

// Lines returns the alert lines of every post (each post's first line is
// its heading).
func (m *MemWebhook) Lines() []string {
	var ls []string
	for _, p := range m.Posts() {
		ls = append(ls, strings.Split(p, "\n")[1:]...)
	}
	return ls
}
