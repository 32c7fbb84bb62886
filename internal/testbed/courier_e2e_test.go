package testbed

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestStatusMessagesEndToEnd: with a bot token, a slash command's job
// gets one status message in the requester's DM, posted when it starts
// and updated in place when it is saved; the acknowledgement says so and
// nothing goes to the response_url. A final message that Slack does not
// take (an outage) survives a kill -9 of the courier and is delivered,
// once, when Slack is back.
func TestStatusMessagesEndToEnd(t *testing.T) {
	w := newWorld(t, WorldOptions{SocketMode: true, Bot: true})
	api := w.WebAPI
	dm := api.DMOf(User)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	reply, rid, err := w.Send(ctx, w.Invocation("https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;t=5s 720p"))
	if err != nil || !strings.Contains(reply, "I'll keep you posted in our direct messages") {
		t.Fatalf("acknowledgement %q, %v", reply, err)
	}
	final := func(n int, prefix string) func(*WebAPI) bool {
		return func(a *WebAPI) bool {
			m := a.Messages(dm)
			return len(m) == n && strings.HasPrefix(m[n-1].Text, prefix)
		}
	}
	if err := api.WaitFor(ctx, final(1, ":white_check_mark: Saved *dQw4w9WgXcQ*")); err != nil {
		t.Fatalf("DM %+v: %v\ncourier log:\n%s", api.Messages(dm), err, w.Courier.Log())
	}
	// Downloading, perhaps its progress (when the courier got to it
	// before the end), then saved: one message, in place.
	m := api.Messages(dm)[0]
	if len(m.Texts) < 2 || len(m.Texts) > 3 || !strings.HasPrefix(m.Texts[0], ":hourglass_flowing_sand: Downloading `dQw4w9WgXcQ` (720p)…") ||
		(len(m.Texts) == 3 && !strings.Contains(m.Texts[1], "% of ")) {
		t.Errorf("the status message went %q, want downloading, its progress perhaps, then saved, in place", m.Texts)
	}
	if got := w.Slack.Messages(rid); len(got) != 0 {
		t.Errorf("posted to the response_url too: %q", got)
	}

	// Slack goes down before the next job ends; the courier is killed
	// while it holds the final message; Slack comes back.
	api.Outage(true)
	if _, _, err := w.Send(ctx, w.Invocation("https://youtu.be/dQw4w9WgXcQ audio")); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(90*time.Second, func() bool {
		return strings.Contains(w.Courier.Log(), `"status":"done","via":"dm","code":"http_error","reason":"will_retry"`)
	}); err != nil {
		t.Fatalf("the final message was not kept for a retry:\n%s", w.Courier.Log())
	}
	if err := w.KillCourier(); err != nil {
		t.Fatal(err)
	}
	api.Outage(false)
	if err := api.WaitFor(ctx, final(2, ":white_check_mark: Saved *dQw4w9WgXcQ*")); err != nil {
		t.Fatalf("DM %+v after the outage and the kill: %v\ncourier log:\n%s", api.Messages(dm), err, w.Courier.Log())
	}
	// Its placeholder, updated once to the final message (a final result
	// is never posted as a new message: see courier's postStatus).
	if m := api.Messages(dm); len(m) != 2 || m[1].Updates != 1 || !strings.HasPrefix(m[1].Texts[0], ":mag: Looking up") || !strings.Contains(m[1].Text, "-audio.m4a") {
		t.Errorf("the second job's message: %+v, want its final message, posted once", m)
	}
	if v := api.Violations(); len(v) != 0 {
		t.Errorf("Slack's limits broken: %q", v)
	}
}

// TestTwoUsersOneDownload: two users ask for the same video and format
// at once: one download, and each gets the saved message on their own
// response_url.
func TestTwoUsersOneDownload(t *testing.T) {
	w := newWorld(t, WorldOptions{AnyUser: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ids := make(chan string, 2)
	for _, user := range []string{User, "U0DEMO0002"} {
		go func() {
			inv := w.Invocation("https://youtu.be/jNQXAC9IVRw 480p")
			inv.User = user
			_, id, err := w.Send(ctx, inv)
			if err != nil {
				t.Error(err)
			}
			ids <- id
		}()
	}
	for range 2 {
		id := <-ids
		msgs, err := w.Slack.WaitFor(ctx, id, Final)
		if err != nil || !strings.HasPrefix(msgs[len(msgs)-1], ":white_check_mark: Saved *jNQXAC9IVRw*") {
			t.Fatalf("response %s: %q, %v", id, msgs, err)
		}
	}
	if n := strings.Count(w.Worker.Log(), `"event":"started","job":`); n != 1 {
		t.Errorf("%d downloads for two requests of one video and format, want 1:\n%s", n, w.Worker.Log())
	}
}
