package testbed

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The courier's uploads, end to end: the real daemons, the commands as
// Slack sends them, the files into the simulated Web API. The clip is the
// stored file; the uploaded bytes are compared with it.

// jobIDInBlocks finds the job's ID in its status message's blocks.
var jobIDInBlocks = regexp.MustCompile("Job `([a-z2-7]{26})`")

// uploadsDone reports, for WaitFor, that n files were shared.
func uploadsDone(n int) func(*WebAPI) bool {
	return func(a *WebAPI) bool {
		c := 0
		for _, f := range a.Files() {
			if f.Completed {
				c++
			}
		}
		return c == n
	}
}

// dmHas reports, for WaitFor, that user's DM has a message whose text
// contains part.
func dmHas(user, part string) func(*WebAPI) bool {
	return func(a *WebAPI) bool {
		for _, m := range a.Messages(a.DMOf(user)) {
			if strings.Contains(m.Text, part) {
				return true
			}
		}
		return false
	}
}

// savedJob waits for the saved message of the n-th job in the user's DM
// and returns the job's ID and its stored file's path and size.
func savedJob(t *testing.T, ctx context.Context, w *World, n int) (id, path string, size int64) {
	t.Helper()
	api := w.WebAPI
	err := api.WaitFor(ctx, func(a *WebAPI) bool {
		m := a.Messages(a.DMOf(User))
		return len(m) >= n && strings.HasPrefix(m[n-1].Text, ":white_check_mark: Saved")
	})
	if err != nil {
		t.Fatalf("no saved message: %q: %v", dmTexts(api, User), err)
	}
	m := api.Messages(api.DMOf(User))[n-1]
	sub := jobIDInBlocks.FindStringSubmatch(string(m.Blocks))
	file := regexp.MustCompile("as `([^`]+)`").FindStringSubmatch(m.Text)
	if sub == nil || file == nil {
		t.Fatalf("no job ID or file in the saved message %q %s", m.Text, m.Blocks)
	}
	path = filepath.Join(w.DownloadsDir, file[1])
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return sub[1], path, st.Size()
}

// dmTexts are the texts of the messages in user's DM.
func dmTexts(a *WebAPI, user string) []string {
	var out []string
	for _, m := range a.Messages(a.DMOf(user)) {
		out = append(out, m.Text)
	}
	return out
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// command sends a slash command and returns its response id.
func command(t *testing.T, ctx context.Context, w *World, text string) string {
	t.Helper()
	reply, rid, err := w.Send(ctx, w.Invocation(text))
	if err != nil {
		t.Fatalf("%q: %v", text, err)
	}
	if strings.HasPrefix(reply, "Sorry") || strings.Contains(reply, "Usage") {
		t.Fatalf("%q refused: %q", text, reply)
	}
	return rid
}

// TestUploadEndToEnd: "/ytkeep <link> send" saves the video and uploads
// it into the requester's DM: the stored file's bytes, once. "/ytkeep
// list" then names the job, "/ytkeep send <job>" does not send it again
// so soon, and uploads another saved job: each answered in the DM, its
// response_url told only that.
func TestUploadEndToEnd(t *testing.T) {
	w := newWorld(t, WorldOptions{Bot: true})
	api := w.WebAPI
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	command(t, ctx, w, "https://youtu.be/dQw4w9WgXcQ send")
	id, path, size := savedJob(t, ctx, w, 1)
	if err := api.WaitFor(ctx, uploadsDone(1)); err != nil {
		t.Fatalf("no upload: %+v: %v", api.Files(), err)
	}
	f := api.Files()[0]
	if f.Channel != api.DMOf(User) || f.Name != filepath.Base(path) || f.Size != size || f.SHA256 != sha256File(t, path) {
		t.Errorf("uploaded %+v, want %s (%d bytes, SHA-256 %s) in %s", f, filepath.Base(path), size, sha256File(t, path), api.DMOf(User))
	}

	rid := command(t, ctx, w, "list")
	answeredInDM(t, ctx, w, rid)
	if err := api.WaitFor(ctx, dmHas(User, "`"+id+"` :white_check_mark: saved")); err != nil {
		t.Fatalf("the DM %q, %v; want the list with the saved job %s", dmTexts(api, User), err, id)
	}

	rid = command(t, ctx, w, "send "+id)
	answeredInDM(t, ctx, w, rid)
	if err := api.WaitFor(ctx, dmHas(User, "`"+filepath.Base(path)+"` was already sent")); err != nil {
		t.Fatalf("the DM %q, %v; want the repeat refused", dmTexts(api, User), err)
	}

	command(t, ctx, w, "https://youtu.be/aaaaaaaaaaa")
	other, otherPath, _ := savedJob(t, ctx, w, 4) // after the list and the refusal
	rid = command(t, ctx, w, "send "+other)
	answeredInDM(t, ctx, w, rid)
	if err := api.WaitFor(ctx, dmHas(User, "Sending `"+filepath.Base(otherPath)+"`")); err != nil {
		t.Fatal(err)
	}
	if err := api.WaitFor(ctx, uploadsDone(2)); err != nil {
		t.Fatalf("no second upload: %+v: %v", api.Files(), err)
	}
	if f := api.Files()[1]; f.Channel != api.DMOf(User) || f.SHA256 != sha256File(t, otherPath) {
		t.Errorf("second upload %+v", f)
	}
	if v := api.Violations(); len(v) != 0 {
		t.Errorf("Slack's limits broken: %q", v)
	}
	// Logged once Slack has answered the last step.
	if err := waitFor(time.Minute, func() bool { return strings.Count(w.Courier.Log(), `"event":"uploaded"`) == 2 }); err != nil {
		t.Errorf("%d upload events, want 2:\n%s", strings.Count(w.Courier.Log(), `"event":"uploaded"`), w.Courier.Log())
	}
}

// answeredInDM waits for the note on the response_url of request rid
// that its answer is in the DM; anything else there fails.
func answeredInDM(t *testing.T, ctx context.Context, w *World, rid string) {
	t.Helper()
	msgs, err := w.Slack.WaitFor(ctx, rid, func(string) bool { return true })
	if err != nil || len(msgs) != 1 || msgs[0] != "I've answered in our direct messages." {
		t.Fatalf("the response_url got %q, %v; want only the note", msgs, err)
	}
}

// TestUploadOverCapEndToEnd: with courier.max_upload_mb = 1, a clip of
// more than 1 MB is not uploaded; the DM says why, with its size, the
// limit and its name on the server.
func TestUploadOverCapEndToEnd(t *testing.T) {
	w := newWorld(t, WorldOptions{Bot: true, ClipSeconds: 90})
	if err := w.ReconfigureCourier("max_upload_mb = 1"); err != nil {
		t.Fatal(err)
	}
	api := w.WebAPI
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	command(t, ctx, w, "https://youtu.be/dQw4w9WgXcQ send")
	_, path, size := savedJob(t, ctx, w, 1)
	if size <= 1_000_000 {
		t.Fatalf("the clip is %d bytes: not over 1 MB, the test shows nothing", size)
	}
	if err := api.WaitFor(ctx, dmHas(User, "over this server's upload limit")); err != nil {
		t.Fatalf("no refusal in the DM: %q", dmTexts(api, User))
	}
	var refusal string
	for _, m := range api.Messages(api.DMOf(User)) {
		if strings.Contains(m.Text, "upload limit") {
			refusal = m.Text
		}
	}
	name := filepath.Base(path)
	for _, part := range []string{"`" + name + "` is 1.", "MB, over this server's upload limit of 1.00 MB", "It stays on the server as `" + name + "`"} {
		if !strings.Contains(refusal, part) {
			t.Errorf("refusal %q does not say %q", refusal, part)
		}
	}
	if fs := api.Files(); len(fs) != 0 {
		t.Errorf("uploaded over the cap: %+v", fs)
	}
	if !strings.Contains(w.Courier.Log(), `"event":"upload_refused"`) || !strings.Contains(w.Courier.Log(), `"reason":"over_cap"`) {
		t.Errorf("no upload_refused event:\n%s", w.Courier.Log())
	}
}

// TestUploadQuotaEndToEnd: with courier.upload_quota_mb_per_day = 2, a
// clip of more than 1 MB goes once; another saved one asked for
// ("/ytkeep send <job>") is over what is left of the day, and the
// answer (in the DM) says so.
func TestUploadQuotaEndToEnd(t *testing.T) {
	w := newWorld(t, WorldOptions{Bot: true, ClipSeconds: 90})
	if err := w.ReconfigureCourier("upload_quota_mb_per_day = 2"); err != nil {
		t.Fatal(err)
	}
	api := w.WebAPI
	// The courier counts uploads per UTC day on the real clock: the
	// scenario must not straddle 00:00 UTC, or the second send would
	// find a new day's quota. It runs within ctx's bound (a hang guard);
	// closer to midnight than that, wait for the new day first (a few
	// minutes, in a few runs in a thousand).
	const bound = 5 * time.Minute
	if left := time.Until(time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)); left < bound+30*time.Second {
		t.Logf("waiting %v for 00:00 UTC: the upload quota's day must not change during the test", left.Round(time.Second))
		time.Sleep(left + time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()

	command(t, ctx, w, "https://youtu.be/dQw4w9WgXcQ send")
	_, _, size := savedJob(t, ctx, w, 1)
	if size <= 1_000_000 {
		t.Fatalf("the clip is %d bytes: two of them fit in 2 MB, the test shows nothing", size)
	}
	if err := api.WaitFor(ctx, uploadsDone(1)); err != nil {
		t.Fatalf("no first upload: %+v: %v", api.Files(), err)
	}

	command(t, ctx, w, "https://youtu.be/aaaaaaaaaaa")
	id, path, _ := savedJob(t, ctx, w, 2)
	rid := command(t, ctx, w, "send "+id)
	answeredInDM(t, ctx, w, rid)
	if err := api.WaitFor(ctx, dmHas(User, "upload quota")); err != nil {
		t.Fatalf("the DM %q, %v; want the refusal", dmTexts(api, User), err)
	}
	var answer string
	for _, m := range api.Messages(api.DMOf(User)) {
		if strings.Contains(m.Text, "upload quota") {
			answer = m.Text
		}
	}
	name := filepath.Base(path)
	for _, part := range []string{"`" + name + "` is 1.", "MB left of your upload quota today (2.00 MB a day, UTC)", "It stays on the server as `" + name + "`"} {
		if !strings.Contains(answer, part) {
			t.Errorf("answer %q does not say %q", answer, part)
		}
	}
	if !strings.Contains(w.Courier.Log(), `"reason":"over_quota"`) { // logged before the answer
		t.Errorf("no over_quota event:\n%s", w.Courier.Log())
	}
	if n := len(api.Files()); n != 1 {
		t.Errorf("%d uploads, want 1 within the quota", n)
	}
}
