package receiver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Notifier posts messages to Slack response URLs. It follows no
// redirects, honours 429 Retry-After (up to a minute) and retries server
// errors a few times. It is safe for concurrent use.
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

func (n *Notifier) postJSON(ctx context.Context, url string, msg map[string]any) error {
	body, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	var last error
	for i := 0; i < n.Attempts; i++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
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
