package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Notifier posts messages to Slack response URLs. It follows no
// redirects, honours 429 Retry-After (up to a minute) and retries server
// errors a few times. It is safe for concurrent use.
//
// A response_url or a webhook URL is a secret: whoever has one can post
// to the channel. Errors name only the URL's host (see PostError), so
// that they can be logged.
type Notifier struct {
	Client   *http.Client
	Attempts int
}

var errRedirect = errors.New("redirect refused")

// NewNotifier returns a Notifier with a 10-second timeout per post.
func NewNotifier() *Notifier {
	return &Notifier{
		Client: &http.Client{
			Timeout: 10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return errRedirect
			},
		},
		Attempts: 3,
	}
}

// Post sends text as an ephemeral message to responseURL.
func (n *Notifier) Post(ctx context.Context, responseURL, text string) error {
	return n.postJSON(ctx, responseURL, map[string]any{"response_type": "ephemeral", "replace_original": false, "text": text})
}

// PostWebhook sends text to a Slack incoming webhook (a channel's).
func (n *Notifier) PostWebhook(ctx context.Context, webhookURL, text string) error {
	return n.postJSON(ctx, webhookURL, map[string]any{"text": text})
}

func (n *Notifier) postJSON(ctx context.Context, rawURL string, msg map[string]any) error {
	body, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if err := n.post(ctx, rawURL, body); err != nil {
		return newPostError(rawURL, err)
	}
	return nil
}

func (n *Notifier) post(ctx context.Context, rawURL string, body []byte) error {
	var last error
	for i := 0; i < n.Attempts; i++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		resp, err := n.Client.Do(req)
		wait := time.Duration(1<<i) * time.Second
		if err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			switch {
			case resp.StatusCode/100 == 2:
				return nil
			case resp.StatusCode == http.StatusTooManyRequests:
				if s, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && s >= 0 && s <= 60 {
					wait = time.Duration(s) * time.Second
				}
				last = errors.New("rate limited by Slack (429)")
			case resp.StatusCode >= 500:
				last = fmt.Errorf("slack answered %d", resp.StatusCode)
			default:
				return fmt.Errorf("slack answered %d", resp.StatusCode)
			}
		} else if errors.Is(err, errRedirect) {
			return err
		} else {
			last = err
		}
		if i+1 < n.Attempts {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return last
}

// PostError is a failed post. Its text names the URL's host and the
// cause, never the URL: net/http's *url.Error, which carries the whole
// URL in its text, is unwrapped to its cause.
type PostError struct {
	Host string
	Err  error // the cause, without the *url.Error around it
}

func (e *PostError) Error() string { return "post to " + e.Host + ": " + e.Err.Error() }

func (e *PostError) Unwrap() error { return e.Err }

func newPostError(rawURL string, err error) error {
	var ue *url.Error
	for errors.As(err, &ue) {
		if err = ue.Err; err == nil {
			err = errors.New(strings.ToLower(ue.Op) + " failed")
		}
	}
	host := "(invalid URL)"
	if u, perr := url.Parse(rawURL); perr == nil && u.Host != "" {
		host = u.Host
	}
	return &PostError{Host: host, Err: err}
}
