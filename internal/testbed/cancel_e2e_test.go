package testbed

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ytkeep/ytkeep/internal/job"
)

// trickle serves one video slowly, for as long as the client reads: a
// download that is still running when the test cancels it. It counts
// the bytes sent and the requests still open.
type trickle struct {
	sent, open atomic.Int64
}

func (tr *trickle) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tr.open.Add(1)
	defer tr.open.Add(-1)
	w.Header().Set("Content-Type", "video/mp4")
	w.Header().Set("Content-Length", strconv.Itoa(64<<20))
	chunk := make([]byte, 16<<10)
	for {
		if _, err := w.Write(chunk); err != nil {
			return
		}
		tr.sent.Add(int64(len(chunk)))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var jobIDInReply = regexp.MustCompile("as job `([a-z2-7]{26})`")

func jobIDOf(t *testing.T, reply string) string {
	t.Helper()
	m := jobIDInReply.FindStringSubmatch(reply)
	if m == nil {
		t.Fatalf("no job ID in the acknowledgement %q", reply)
	}
	return m[1]
}

// TestCancelEndToEnd: with one download slot, a user's second job waits
// with its place in the queue; they cancel it with the status message's
// button (it never starts) and the running download with "/ytkeep
// cancel <link>" (its connection to the media server closes: the
// download really stops); each status message ends "cancelled", each
// request is answered, and "/ytkeep list" shows both jobs. Both
// transports: Socket Mode, and HTTP with the interactivity URL.
func TestCancelEndToEnd(t *testing.T) {
	for _, socket := range []bool{true, false} {
		t.Run(map[bool]string{true: "socket", false: "http"}[socket], func(t *testing.T) {
			testCancel(t, socket)
		})
	}
}

func testCancel(t *testing.T, socket bool) {
	w := newWorld(t, WorldOptions{SocketMode: socket, Bot: true, ExtraWorker: "concurrency = 1\n"})
	slow := &trickle{}
	w.Media.Handle("GET /media/sLowCaNceL1.mp4", slow)
	api := w.WebAPI
	dm := api.DMOf(User)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	logs := func() string {
		return "\nworker log:\n" + w.Worker.Log() + "\ncourier log:\n" + w.Courier.Log() + "\nreceiver log:\n" + w.Receiver.Log()
	}

	reply, _, err := w.Send(ctx, w.Invocation("https://youtu.be/sLowCaNceL1"))
	if err != nil {
		t.Fatal(err)
	}
	running := jobIDOf(t, reply)
	if err := waitFor(time.Minute, func() bool { return slow.sent.Load() > 256<<10 }); err != nil {
		t.Fatalf("the slow download did not start%s", logs())
	}
	reply, _, err = w.Send(ctx, w.Invocation("https://youtu.be/dQw4w9WgXcQ"))
	if err != nil {
		t.Fatal(err)
	}
	queued := jobIDOf(t, reply)
	if err := api.WaitFor(ctx, func(a *WebAPI) bool {
		m := a.Messages(dm)
		return len(m) == 2 && strings.Contains(strings.ToLower(m[1].Text), "queue")
	}); err != nil {
		t.Fatalf("no queued status message: %+v%s", api.Messages(dm), logs())
	}

	// The Cancel button on the queued job's status message.
	rid, err := w.Click(ctx, Click{User: User, Channel: dm, ActionID: job.ActionCancel, Value: queued})
	if err != nil {
		t.Fatalf("click: %v%s", err, logs())
	}
	if _, err := w.Slack.WaitFor(ctx, rid, func(m string) bool { return strings.Contains(strings.ToLower(m), "cancel") }); err != nil {
		t.Fatalf("the click was not answered: %v%s", err, logs())
	}
	if err := api.WaitFor(ctx, func(a *WebAPI) bool {
		m := a.Messages(dm)
		return len(m) == 2 && strings.Contains(strings.ToLower(m[1].Text), "cancelled")
	}); err != nil {
		t.Fatalf("the queued job's status message: %+v%s", api.Messages(dm), logs())
	}

	// The running download, by its link.
	reply, rid, err = w.Send(ctx, w.Invocation("cancel https://youtu.be/sLowCaNceL1"))
	if err != nil || !strings.Contains(reply, "Cancelling your jobs of `sLowCaNceL1`") {
		t.Fatalf("cancel: %q, %v", reply, err)
	}
	if _, err := w.Slack.WaitFor(ctx, rid, func(m string) bool { return strings.Contains(strings.ToLower(m), "cancel") }); err != nil {
		t.Fatalf("the cancel was not answered: %v%s", err, logs())
	}
	if err := waitFor(time.Minute, func() bool { return slow.open.Load() == 0 }); err != nil {
		t.Fatalf("the cancelled download still reads from the media server%s", logs())
	}
	sent := slow.sent.Load()
	if err := api.WaitFor(ctx, func(a *WebAPI) bool {
		m := a.Messages(dm)
		return len(m) == 2 && strings.Contains(strings.ToLower(m[0].Text), "cancelled")
	}); err != nil {
		t.Fatalf("the running job's status message: %+v%s", api.Messages(dm), logs())
	}
	if strings.Contains(w.Worker.Log(), `"event":"started","job":"`+queued) {
		t.Errorf("the cancelled queued job started%s", logs())
	}

	// The list shows both, cancelled, in the DM; its response_url gets
	// only a note.
	_, rid, err = w.Send(ctx, w.Invocation("list"))
	if err != nil {
		t.Fatal(err)
	}
	if msgs, err := w.Slack.WaitFor(ctx, rid, func(m string) bool { return m == "I've answered in our direct messages." }); err != nil {
		t.Fatalf("list: %q, %v%s", msgs, err, logs())
	}
	if err := api.WaitFor(ctx, func(a *WebAPI) bool {
		for _, m := range a.Messages(dm) {
			if strings.Contains(m.Text, running) && strings.Contains(m.Text, queued) {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatalf("list: %+v, %v%s", api.Messages(dm), err, logs())
	}
	if slow.sent.Load() != sent || slow.open.Load() != 0 {
		t.Errorf("the media server was read again after the cancel")
	}
	if v := api.Violations(); len(v) != 0 {
		t.Errorf("Slack's limits broken: %q", v)
	}
}
