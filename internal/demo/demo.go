// Package demo runs ytkeep end to end on loopback and narrates it as a
// Slack user would see it, and drives the receiver under load.
package demo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ytkeep/ytkeep/internal/confine"
	"github.com/ytkeep/ytkeep/internal/testbed"
)

// slackWait is how long the demo's Slack waits for an acknowledgement,
// and its courier for an intermediate status update: 3 s, as Slack and
// production do. TestDemo sets a hang guard instead, for a loaded machine.
var slackWait = testbed.SlackAckWait

// Run performs the demo in a temporary directory, writing the narration
// to out. It returns an error if any step failed.
//
// The receiver runs in Socket Mode, as the example configuration does
// (an outbound WebSocket to a simulated Slack: no port is opened), or,
// with httpMode, takes signed HTTP requests on a loopback port.
func Run(ctx context.Context, out io.Writer, binDir string, keep, httpMode bool) (err error) {
	dir, err := os.MkdirTemp("", "ytkeep-demo-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	say("ytkeep demo: everything runs on 127.0.0.1 in %s", dir)

	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	w, err := testbed.NewWorld(ctx, testbed.WorldOptions{Dir: dir, BinDir: binDir, SocketMode: !httpMode, Bot: true,
		AckWait: slackWait, UpdateWait: slackWait})
	if err != nil {
		return err
	}
	defer func() {
		say("\n[7/7] Stopping the receiver, the worker, the downloader and the courier.")
		if cerr := w.Close(); cerr != nil && err == nil {
			err = cerr
		}
		if err != nil {
			say("\nreceiver log:\n%s\nworker log:\n%s\ndownloader log:\n%s\ncourier log:\n%s", tail(w.Receiver.Log(), 20), tail(w.Worker.Log(), 20),
				tail(w.Downloader.Log(), 20), tail(w.Courier.Log(), 20))
		}
	}()
	clip, _ := os.Stat(w.Clip)
	say("\n[1/7] Made a 3-second test clip with ffmpeg (%d bytes).", clip.Size())
	say("[2/7] Serving it at %s (this stands in for YouTube).", w.Media.BaseURL())
	intake := w.Endpoint
	if w.Socket != nil {
		intake = "Socket Mode"
	}
	say("[3/7] Started ytkeep-receiver (pid %d, %s), ytkeep-worker (pid %d), ytkeep-downloader (pid %d) and ytkeep-courier (pid %d)",
		w.Receiver.Cmd.Process.Pid, intake, w.Worker.Cmd.Process.Pid, w.Downloader.Cmd.Process.Pid, w.Courier.Cmd.Process.Pid)
	say("      as separate processes: the receiver takes commands, the courier posts the results with the app's bot token.")
	ports, err := testbed.ListeningPorts(w.Receiver.Cmd.Process.Pid)
	if err != nil {
		return err
	}
	if w.Socket != nil {
		if len(ports) > 0 {
			return fmt.Errorf("the receiver listens in Socket Mode: %v", ports)
		}
		say("      The receiver holds one outbound WebSocket to (simulated) Slack, opened with the app-level token,")
		say("      and listens on no port: checked in its socket table (%d connection(s) at Slack's end).", w.Socket.Connections())
	} else {
		say("      HTTP mode: the receiver listens on %s for signed requests.", strings.Join(ports, ", "))
	}
	layers := fmt.Sprintf("Landlock ABI %d, seccomp, no_new_privs, rlimits", confine.LandlockABI())
	if os.Geteuid() == 0 {
		say("      Confinement: receiver as uid %d, worker as uid %d, downloader as uid %d, courier as uid %d, each with %s.",
			testbed.ReceiverUID, testbed.WorkerUID, testbed.DownloaderUID, testbed.CourierUID, layers)
	} else {
		say("      WARNING: not root, so the four daemons run as your user: Unix-user separation is OFF.")
		say("      Confinement that is on: %s.", layers)
	}

	// Idle memory, once each daemon is ready (the worker says so last).
	if err := waitLog(ctx, w.Worker, `"msg":"worker ready"`); err == nil {
		var rss []string
		for _, d := range []*testbed.Daemon{w.Receiver, w.Worker, w.Downloader, w.Courier} {
			if n, err := d.RSS(); err == nil {
				rss = append(rss, fmt.Sprintf("%s %.1f MiB", strings.TrimPrefix(d.Name, "ytkeep-"), float64(n)/(1<<20)))
			}
		}
		say("      Idle memory (resident): %s.", strings.Join(rss, ", "))
	}

	text := "https://www.youtube.com/watch?v=dQw4w9WgXcQ 720p send"
	say("\n[4/7] In Slack you type:\n        /ytkeep %s", text)
	if w.Socket != nil {
		say("      Slack sends the command to ytkeep as an envelope over the WebSocket; ytkeep writes the job to disk,")
		say("      then acknowledges the envelope with its reply, within Slack's 3 seconds.")
	}
	reply, id, err := w.Send(ctx, w.Invocation(text))
	if err != nil {
		return err
	}
	if !strings.HasPrefix(reply, "Queued") {
		return fmt.Errorf("unexpected acknowledgement: %s", reply)
	}
	say("      Slack shows you (only you):\n        %s", reply)

	say("\n[5/7] In your direct messages with ytkeep, one status message, which the courier updates in place:")
	dm := w.WebAPI.DMOf(testbed.User)
	err = w.WebAPI.WaitFor(ctx, func(a *testbed.WebAPI) bool {
		m := a.Messages(dm)
		return len(m) == 1 && testbed.Final(m[0].Text)
	})
	msgs := w.WebAPI.Messages(dm)
	if len(msgs) == 1 {
		for i, t := range msgs[0].Texts {
			verb := "posted"
			if i > 0 {
				verb = "updated"
			}
			say("        (%s) %s", verb, t)
		}
	}
	if err != nil {
		return fmt.Errorf("no final status message in the DM: %w", err)
	}
	if !strings.HasPrefix(msgs[0].Text, ":white_check_mark:") {
		return fmt.Errorf("the download failed")
	}
	if posted := w.Slack.Messages(id); len(posted) != 0 {
		return fmt.Errorf("the courier also posted to the response_url: %q", posted)
	}
	say("      (Slack keeps this message, however long the download takes; without a bot token, results go to the")
	say("      command's response_url instead, which Slack accepts for 30 minutes.)")
	stored := filepath.Join(w.DownloadsDir, "dQw4w9WgXcQ-720p.mp4")
	st, err := os.Stat(stored)
	if err != nil {
		return err
	}
	say("\n      On the server: %s (%d bytes, mode %v)", stored, st.Size(), st.Mode().Perm())
	side, err := os.ReadFile(filepath.Join(w.DownloadsDir, "dQw4w9WgXcQ-720p.json"))
	if err != nil {
		return err
	}
	say("      Metadata sidecar: %s", strings.TrimSpace(string(side)))

	// "send": the courier uploads the stored file into the DM too.
	if err := w.WebAPI.WaitFor(ctx, func(a *testbed.WebAPI) bool {
		for _, f := range a.Files() {
			if f.Completed && f.Channel == dm {
				return true
			}
		}
		return false
	}); err != nil {
		return fmt.Errorf("the file was not delivered in the DM: %w", err)
	}
	sum, err := fileSHA256(stored)
	if err != nil {
		return err
	}
	for _, f := range w.WebAPI.Files() {
		if f.Completed && f.Channel == dm {
			same := "the same bytes as on the server"
			if f.SHA256 != sum || f.Size != st.Size() {
				return fmt.Errorf("the file in the DM (%d bytes) is not the stored one", f.Size)
			}
			say("\n      \"send\" asked for the file in Slack too: the courier uploaded %s into your DM (%d bytes, %s),", f.Name, f.Size, same)
			say("      through Slack's upload flow, within courier.max_upload_mb and your daily upload quota.")
		}
	}

	say("\n[6/7] You type:\n        /ytkeep list")
	_, lid, err := w.Send(ctx, w.Invocation("list"))
	if err != nil {
		return err
	}
	note, err := w.Slack.WaitFor(ctx, lid, func(string) bool { return true })
	if err != nil {
		return fmt.Errorf("no answer to list: %w", err)
	}
	var list string
	if err := w.WebAPI.WaitFor(ctx, func(a *testbed.WebAPI) bool {
		for _, m := range a.Messages(dm) {
			if strings.Contains(m.Text, "Your last job") {
				list = m.Text
				return true
			}
		}
		return false
	}); err != nil {
		return fmt.Errorf("no list in the DM: %w", err)
	}
	say("      Slack shows you (only you), in the channel: %s", note[0])
	say("      and in your direct messages (only there: the list names your videos):")
	for _, line := range strings.Split(list, "\n") {
		say("        %s", line)
	}
	say("      (\"/ytkeep cancel <job id | link>\" stops a job while it waits or downloads; so does the Cancel button on its status message.)")
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitLog waits until d's log holds part (or 10 s have passed).
func waitLog(ctx context.Context, d *testbed.Daemon, part string) error {
	for i := 0; i < 100; i++ {
		if strings.Contains(d.Log(), part) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not log %s", d.Name, part)
}
