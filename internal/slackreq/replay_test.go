package slackreq

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestReplayAfterRestart: the replay cache lives in memory, so a new
// Verifier (a restarted receiver) must refuse a request signed before it
// was created, even one inside the ±300 s window with a good signature.
// Each case runs in a synctest bubble, whose clock slack-go's own window
// check reads too: a first process takes a request, and 20 s later a
// second one starts.
func TestReplayAfterRestart(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	body := "team_id=T1&channel_id=C1&user_id=U1&command=%2Fytkeep&text=x&response_url=https%3A%2F%2Fhooks.slack.com%2Fx"
	signed := func(at time.Time, key string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		SignRequest(r.Header, key, at, []byte(body))
		return r
	}
	tests := []struct {
		name string
		// when the request was signed, given when the first process took
		// the captured request and when the second started
		signed func(captured, start time.Time) time.Time
		key    string
		reason string // "" accepted
	}{
		{"replay of the request the last process took", func(c, _ time.Time) time.Time { return c }, secret, "signed_before_start"},
		{"signed a second past the skew before start", func(_, s time.Time) time.Time { return s.Add(-StartSkew - time.Second) }, secret, "signed_before_start"},
		{"signed within the skew (our clock ahead of Slack's)", func(_, s time.Time) time.Time { return s.Add(-StartSkew) }, secret, ""},
		{"signed after start", func(_, s time.Time) time.Time { return s.Add(time.Second) }, secret, ""},
		// Only a request Slack signed is reported as signed before start.
		{"forged, from before start", func(c, _ time.Time) time.Time { return c }, "another-secret-entirely!", "bad_signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				v1, err := NewVerifier(secret, nil, 0)
				if err != nil {
					t.Fatal(err)
				}
				time.Sleep(10 * time.Second)
				captured := time.Now()
				if _, err := v1.ReadVerified(signed(captured, secret)); err != nil {
					t.Fatalf("fresh request refused: %v", err)
				}
				if _, err := v1.ReadVerified(signed(captured, secret)); reason(err) != "replay" {
					t.Fatalf("replay to the same process: %v", err)
				}
				time.Sleep(20 * time.Second)
				start := time.Now()
				v2, _ := NewVerifier(secret, nil, 0)
				time.Sleep(2 * time.Second)
				_, err = v2.ReadVerified(signed(tt.signed(captured, start), tt.key))
				if tt.reason == "" {
					if err != nil {
						t.Fatalf("refused: %v", err)
					}
					return
				}
				if reason(err) != tt.reason {
					t.Fatalf("got %v, want %s", err, tt.reason)
				}
				var e *Error
				if !errors.As(err, &e) || !e.Suspicious() || e.Status != http.StatusUnauthorized {
					t.Errorf("%v: want a suspicious 401 (an alert)", err)
				}
			})
		})
	}
}
