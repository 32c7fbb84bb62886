package slackapi

import (
	"context"
	"sync"
	"time"
)

// Slack's published limits, which the client keeps to on its side. Slack
// applies them per method, per app, per workspace (one bot token is one
// app in one workspace); the tiers are "N+ per minute", so N per minute
// is a floor Slack always grants
// (https://docs.slack.dev/apis/web-api/rate-limits).
const (
	// chat.postMessage has the Special tier: "one message per second per
	// channel" with short bursts allowed
	// (https://docs.slack.dev/reference/methods/chat.postMessage,
	// https://docs.slack.dev/apis/web-api/rate-limits). The client allows
	// no burst: one post per channel in any second.
	postPerChannel = 1
	postWindow     = time.Second

	// chat.update is Tier 3, 50+ per minute, for the whole token
	// (https://docs.slack.dev/reference/methods/chat.update).
	updatePerMinute = 50

	// conversations.open is Tier 3, 50+ per minute
	// (https://docs.slack.dev/reference/methods/conversations.open).
	openPerMinute = 50

	// files.getUploadURLExternal and files.completeUploadExternal are
	// Tier 4, 100+ per minute each
	// (https://docs.slack.dev/reference/methods/files.getUploadURLExternal,
	// https://docs.slack.dev/reference/methods/files.completeUploadExternal).
	filesPerMinute = 100

	// maxPostWindows bounds the per-channel state kept for
	// chat.postMessage: past it, the windows of idle channels are dropped.
	maxPostWindows = 1024
)

// window lets at most n calls start in any span of per (a sliding
// window: the (n+1)th waits until the first is per old), and none before
// blockedUntil, set when Slack answers 429. With n = 1 it is a token
// bucket of burst 1 refilled once per per.
type window struct {
	n            int
	per          time.Duration
	starts       []time.Time // the last n starts, a ring once full
	oldest       int         // index of the oldest start once full
	blockedUntil time.Time
}

func newWindow(n int, per time.Duration) *window {
	return &window{n: n, per: per, starts: make([]time.Time, 0, n)}
}

// take returns how long a call must wait from now before it may start;
// when that is zero it counts the call as started now.
func (w *window) take(now time.Time) time.Duration {
	at := now
	if len(w.starts) == w.n {
		if free := w.starts[w.oldest].Add(w.per); free.After(at) {
			at = free
		}
	}
	if w.blockedUntil.After(at) {
		at = w.blockedUntil
	}
	if at.After(now) {
		return at.Sub(now)
	}
	if len(w.starts) < w.n {
		w.starts = append(w.starts, now)
	} else {
		w.starts[w.oldest] = now
		w.oldest = (w.oldest + 1) % w.n
	}
	return 0
}

// block holds every later call until until (Slack's Retry-After).
func (w *window) block(until time.Time) {
	if until.After(w.blockedUntil) {
		w.blockedUntil = until
	}
}

// idle reports whether the window holds nothing back at now: it can be
// dropped and made again without changing what it allows.
func (w *window) idle(now time.Time) bool {
	if w.blockedUntil.After(now) {
		return false
	}
	for _, s := range w.starts {
		if s.Add(w.per).After(now) {
			return false
		}
	}
	return true
}

// limits are the client's windows: one per channel for
// chat.postMessage, one per method for the others.
type limits struct {
	mu       sync.Mutex
	post     map[string]*window
	update   *window
	open     *window
	getURL   *window
	complete *window
}

func newLimits() *limits {
	return &limits{
		post:     make(map[string]*window),
		update:   newWindow(updatePerMinute, time.Minute),
		open:     newWindow(openPerMinute, time.Minute),
		getURL:   newWindow(filesPerMinute, time.Minute),
		complete: newWindow(filesPerMinute, time.Minute),
	}
}

// window returns the window of method (for chat.postMessage, of
// channel), making it when needed. The caller holds l.mu.
func (l *limits) window(method, channel string, now time.Time) *window {
	switch method {
	case methodUpdate:
		return l.update
	case methodOpen:
		return l.open
	case methodGetURL, methodUpload:
		// A 429 from the upload URL holds the next upload at its start.
		return l.getURL
	case methodComplete:
		return l.complete
	case methodPost:
		w := l.post[channel]
		if w == nil {
			if len(l.post) >= maxPostWindows {
				for ch, cw := range l.post {
					if cw.idle(now) {
						delete(l.post, ch)
					}
				}
			}
			w = newWindow(postPerChannel, postWindow)
			l.post[channel] = w
		}
		return w
	}
	panic("slackapi: no rate limit for method " + method)
}

// wait returns when a call of method (on channel, for chat.postMessage)
// may start, and counts it. If ctx ends first it returns an *Error with
// Code CodeClientRateLimited, and the call must not be made.
func (c *Client) wait(ctx context.Context, method, channel string) error {
	if err := ctx.Err(); err != nil {
		return classify(method, err)
	}
	for {
		c.limits.mu.Lock()
		now := c.now()
		d := c.limits.window(method, channel, now).take(now)
		c.limits.mu.Unlock()
		if d == 0 {
			return nil
		}
		if err := c.sleep(ctx, d); err != nil {
			return &Error{Method: method, Code: CodeClientRateLimited, RetryAfter: d, err: err}
		}
	}
}

// block holds later calls of method (on channel, for chat.postMessage)
// for d from now.
func (c *Client) block(method, channel string, d time.Duration) {
	c.limits.mu.Lock()
	defer c.limits.mu.Unlock()
	now := c.now()
	c.limits.window(method, channel, now).block(now.Add(d))
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
