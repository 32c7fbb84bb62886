package notify

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ytkeep/ytkeep/internal/audit"
)

// A response_url and a webhook URL are secrets: whoever has one can post
// to the channel. The part after the host is the secret.
const (
	secretReplyPath   = "/commands/T0/1234567890/SECRETresponseURLtoken"
	secretWebhookPath = "/services/T0/B0/SECRETwebhookTOKEN"
)

// hangUp is a server that takes each request and closes the connection
// without an answer: net/http fails with an error that quotes the URL.
func hangUp(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			c.Close()
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// noSecret fails if any line of log holds a secret path (or a piece of
// its token).
func noSecret(t *testing.T, what, log string) {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "SECRET") {
			t.Errorf("%s logged a secret URL: %s", what, line)
		}
	}
}

// TestPostErrorsKeepURLsSecret: a failed post is logged ("couldn't post
// alerts") or returned to be logged (Flush, for the exit alert; a
// Notifier's error, which the courier logs as reply_failed) with the host
// and the cause, never the URL.
func TestPostErrorsKeepURLsSecret(t *testing.T) {
	srv := hangUp(t)
	host := strings.TrimPrefix(srv.URL, "http://")

	t.Run("alerts to the webhook", func(t *testing.T) {
		var log syncBuffer
		n := NewNotifier()
		n.Attempts = 1
		p := NewAlertPoster(srv.URL+secretWebhookPath, n, slog.New(slog.NewJSONHandler(&log, nil)))
		p.Alert(audit.AlertRecord{Daemon: "receiver", Event: audit.Violation})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			p.Run(ctx)
			close(done)
		}()
		deadline := time.Now().Add(time.Minute) // a hang guard: this happens at once
		for !strings.Contains(log.String(), "couldn't post alerts") && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		<-done
		if !strings.Contains(log.String(), "post to "+host+": ") {
			t.Fatalf("no failure logged naming the host %s:\n%s", host, log.String())
		}
		noSecret(t, "Run", log.String())

		p.Alert(audit.AlertRecord{Daemon: "receiver", Event: audit.Crashed})
		err := p.Flush(context.Background())
		if err == nil {
			t.Fatal("Flush to a server that hangs up succeeded")
		}
		noSecret(t, "Flush's error", err.Error())
	})

	t.Run("redirect", func(t *testing.T) {
		to := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://elsewhere.example/SECRETredirectTarget", http.StatusFound)
		}))
		defer to.Close()
		err := NewNotifier().Post(context.Background(), to.URL+secretReplyPath, "x")
		if !errors.Is(err, errRedirect) {
			t.Fatalf("redirect: %v, want errRedirect", err)
		}
		noSecret(t, "a refused redirect", err.Error())
	})

	t.Run("unparsable URL", func(t *testing.T) {
		err := NewNotifier().PostWebhook(context.Background(), "https://hooks.slack.com"+secretWebhookPath+"%zz\x7f", "x")
		if err == nil {
			t.Fatal("posted to an invalid URL")
		}
		noSecret(t, "an invalid URL", err.Error())
	})
}
