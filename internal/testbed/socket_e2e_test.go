package testbed

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestSocketModeEndToEnd: the receiver in Socket Mode, against the
// simulated Slack's Socket Mode server. A command typed in Slack arrives
// as an envelope, is acknowledged with the ephemeral reply and downloaded;
// the receiver listens on no port; a second delivery of the same envelope
// gets the same reply and makes no second job; after Slack asks it to
// reconnect (a disconnect envelope), commands still work.
func TestSocketModeEndToEnd(t *testing.T) {
	w := newWorld(t, WorldOptions{SocketMode: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if ports := listening(t, w.Receiver.Cmd.Process.Pid); len(ports) > 0 {
		t.Errorf("the receiver listens in Socket Mode: %v", ports)
	}

	e, err := w.Socket.Envelope(w.Invocation("https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;t=30s audio"))
	if err != nil {
		t.Fatal(err)
	}
	reply, err := w.Socket.Deliver(ctx, e, 0)
	if err != nil || !strings.HasPrefix(reply, "Queued `dQw4w9WgXcQ` (audio) as job `") {
		t.Fatalf("ack %q, %v", reply, err)
	}
	// Slack redelivers an envelope it did not see acknowledged: the same
	// answer, no second job.
	again, err := w.Socket.Deliver(ctx, e, 1)
	if err != nil || again != reply {
		t.Fatalf("redelivery: %q, %v; want the first reply %q", again, err, reply)
	}
	msgs, err := w.Slack.WaitFor(ctx, e.ResponseID, Final)
	if err != nil {
		t.Fatalf("%v\nworker log:\n%s", err, w.Worker.Log())
	}
	if last := msgs[len(msgs)-1]; !strings.HasPrefix(last, ":white_check_mark: Saved *dQw4w9WgXcQ*") {
		t.Fatalf("final message %q", last)
	}
	time.Sleep(500 * time.Millisecond) // a second job, if any, would be queued by now
	if n := strings.Count(w.Receiver.Log(), `"event":"accepted"`); n != 1 {
		t.Errorf("%d jobs accepted for one envelope delivered twice", n)
	}
	if n := strings.Count(w.Receiver.Log(), `"event":"duplicate"`); n != 1 {
		t.Errorf("%d duplicates logged, want 1", n)
	}

	// Slack moves the connection: the receiver opens a new one.
	opened := w.Socket.Opened()
	w.Socket.Disconnect("refresh_requested", time.Second)
	if err := waitFor(2*time.Minute, func() bool { return w.Socket.Opened() > opened && w.Socket.Connections() == 1 }); err != nil {
		t.Fatalf("no new connection after a disconnect: %v\nreceiver log:\n%s", err, w.Receiver.Log())
	}
	reply, id, err := w.Send(ctx, w.Invocation("<https://youtu.be/dQw4w9WgXcQ> 720p"))
	if err != nil || !strings.HasPrefix(reply, "Queued `dQw4w9WgXcQ` (720p)") {
		t.Fatalf("after the reconnect: %q, %v", reply, err)
	}
	if _, err := w.Slack.WaitFor(ctx, id, Final); err != nil {
		t.Fatal(err)
	}
	// Refusals answer in the acknowledgement too.
	if reply, _, err := w.Send(ctx, w.Invocation("<@U0DEMO0002> https://youtu.be/dQw4w9WgXcQ")); err != nil || !strings.Contains(reply, "mentions") {
		t.Errorf("a mention: %q, %v", reply, err)
	}
}

// listening returns the TCP ports process pid listens on.
func listening(t *testing.T, pid int) []string {
	t.Helper()
	ports, err := ListeningPorts(pid)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// TestSocketModeCrashBeforeAck: the receiver writes the job, its
// acknowledgement is lost and it is killed (SIGKILL) before Slack sees
// one; Slack delivers the envelope again to the receiver started since,
// which has no memory of it. The job is done once: the same job ID in
// the reply, one download, one final message.
func TestSocketModeCrashBeforeAck(t *testing.T) {
	w := newWorld(t, WorldOptions{SocketMode: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e, err := w.Socket.Envelope(w.Invocation("https://youtu.be/dQw4w9WgXcQ 360p"))
	if err != nil {
		t.Fatal(err)
	}
	first, err := w.Socket.Deliver(ctx, e, 0) // the reply Slack never sees
	if err != nil || !strings.HasPrefix(first, "Queued `dQw4w9WgXcQ` (360p) as job `") {
		t.Fatalf("first delivery: %q, %v", first, err)
	}
	if err := w.KillReceiver(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := w.Socket.Deliver(ctx, e, 1)
	if err != nil || again != first {
		t.Fatalf("redelivery to the new receiver: %q, %v; want %q", again, err, first)
	}
	msgs, err := w.Slack.WaitFor(ctx, e.ResponseID, Final)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // a second run, if any, would have posted by now
	finals := 0
	for _, m := range w.Slack.Messages(e.ResponseID) {
		if Final(m) {
			finals++
		}
	}
	if finals != 1 {
		t.Errorf("%d final messages, want 1: %q", finals, msgs)
	}
	if n := strings.Count(w.Worker.Log(), `"event":"claimed"`); n > 1 {
		t.Errorf("the worker claimed %d jobs for one envelope", n)
	}
}
