package courier

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/notify"
	"github.com/ytkeep/ytkeep/internal/slackapi"
	"github.com/ytkeep/ytkeep/internal/testbed"
)

// botFixture is a courier with a bot token on a simulated Web API, on
// the wall clock, retrying every 20 ms.
func botFixture(t testing.TB) (*fixture, *testbed.WebAPI) { return botFixtureWith(t, nil) }

// botFixtureWith is botFixture with options mut changes last.
func botFixtureWith(t testing.TB, mut func(*Options)) (*fixture, *testbed.WebAPI) {
	t.Helper()
	sl, err := testbed.NewSlack("T1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sl.Close)
	api, err := testbed.NewWebAPI(sl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(api.Close)
	bot, err := slackapi.New(slackapi.Options{Token: api.BotToken, APIURL: api.APIURL()})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixtureWith(t, func(o *Options) {
		o.Now, o.Slack, o.RetryBase = time.Now, bot, 20*time.Millisecond
		// Every intermediate update is wanted, however slow the machine:
		// a hang guard, not the production 3 s.
		o.UpdateWait = time.Minute
		if mut != nil {
			mut(o)
		}
	})
	return f, api
}

// dm returns the messages in the requester's DM.
func dm(api *testbed.WebAPI) []testbed.Msg { return api.Messages(api.DMOf(requester)) }

// waitDM waits until the requester's DM has one message whose text starts with
// prefix and returns it.
func waitDM(t *testing.T, api *testbed.WebAPI, prefix string) testbed.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := api.WaitFor(ctx, func(a *testbed.WebAPI) bool {
		m := dm(a)
		return len(m) == 1 && strings.HasPrefix(m[0].Text, prefix)
	})
	if err != nil {
		t.Fatalf("the requester's DM: %+v, want one message %q…: %v", dm(api), prefix, err)
	}
	return dm(api)[0]
}

func waitLog(t *testing.T, f *fixture, part string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !strings.Contains(f.log.String(), part); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s in the log:\n%s", part, f.log.String())
		}
	}
}

// TestStatusMessage: with a bot token, a job's records become one
// message in the requester's DM, posted at the first and updated in
// place to the last; nothing goes to the response_url; Slack's limits
// are kept.
func TestStatusMessage(t *testing.T) {
	f, api := botFixture(t)
	f.runResults(t)
	j := f.job(t, "dQw4w9WgXcQ", job.Format720, "/r/1")
	f.writeResult(t, j.Result(job.StatusStarted, job.ClassNone))
	first := waitDM(t, api, ":hourglass_flowing_sand: Downloading `dQw4w9WgXcQ` (720p)")
	done := j.Result(job.StatusDone, job.ClassNone)
	done.Title, done.Size, done.File = "<!channel> title", 5<<20, "dQw4w9WgXcQ-720p.mp4"
	f.writeResult(t, done)
	m := waitDM(t, api, ":white_check_mark: Saved *&lt;!channel&gt; title* (5.0 MiB)")
	if m.TS != first.TS || m.Updates != 1 {
		t.Errorf("the status message was not updated in place: %+v then %+v", first, m)
	}
	if !strings.Contains(string(m.Blocks), j.ID) {
		t.Errorf("the blocks do not name the job: %s", m.Blocks)
	}
	if p := f.slack.Posts(); len(p) != 0 {
		t.Errorf("posted to the response_url too: %q", p)
	}
	if v := api.Violations(); len(v) != 0 {
		t.Errorf("Slack's limits broken: %q", v)
	}
	// The same final result again (the worker's repeat after a crash)
	// changes nothing and raises no alert.
	f.writeResult(t, done)
	waitLog(t, f, `"reason":"repeat"`)
	if strings.Contains(f.log.String(), `"alert":true`) {
		t.Errorf("a repeated final result raised an alert:\n%s", f.log.String())
	}
	// Another result after the final one is refused, with an alert.
	f.writeResult(t, j.Result(job.StatusFailed, job.ClassTimeout))
	waitLog(t, f, `"reason":"result_after_final"`)
	if m := dm(api); len(m) != 1 || m[0].Updates != 1 {
		t.Errorf("a result after the final one changed the DM: %+v", m)
	}
}

// TestFinalThroughOutage: while Slack answers 503, the intermediate
// update is dropped and the final one is kept (claimed) and retried;
// once Slack is back, it is delivered, once.
func TestFinalThroughOutage(t *testing.T) {
	f, api := botFixture(t)
	f.runResults(t)
	api.Outage(true)
	j := f.job(t, "dQw4w9WgXcQ", job.FormatBest, "/r/1")
	f.writeResult(t, j.Result(job.StatusStarted, job.ClassNone))
	waitLog(t, f, `"reason":"update_dropped"`)
	f.writeResult(t, j.Result(job.StatusFailed, job.ClassUnavailable))
	waitLog(t, f, `"reason":"will_retry"`)
	if kept, _ := os.ReadDir(f.layout.Courier("claimed")); len(kept) != 1 {
		t.Fatalf("%d results kept for a retry, want the final one", len(kept))
	}
	api.Outage(false)
	waitDM(t, api, ":x: Couldn't keep `dQw4w9WgXcQ` (best)")
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if kept, _ := os.ReadDir(f.layout.Courier("claimed")); len(kept) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the delivered result is still claimed")
		}
	}
	time.Sleep(100 * time.Millisecond) // five retry periods: none may post again
	// One message: its placeholder, updated once to the final result.
	if m := dm(api); len(m) != 1 || m[0].Updates != 1 {
		t.Errorf("the requester's DM after the outage: %+v, want the final message, posted once", m)
	}
}

// TestFinalAfterResponseURLExpiry: a job that ends hours after the
// command still reaches the user (the response_url would be dead).
func TestFinalAfterResponseURLExpiry(t *testing.T) {
	f, api := botFixture(t)
	f.now = time.Now().Add(-3 * time.Hour) // the command came 3 h ago
	j := f.job(t, "dQw4w9WgXcQ", job.FormatAudio, "/r/1")
	f.runResults(t)
	done := j.Result(job.StatusDone, job.ClassNone)
	done.Size, done.File = 1<<20, "dQw4w9WgXcQ-audio.m4a"
	f.writeResult(t, done)
	waitDM(t, api, ":white_check_mark: Saved *dQw4w9WgXcQ*")
}

// TestFinalSurvivesRestart: a final message not yet delivered when the
// courier stops is delivered by the next courier, once.
func TestFinalSurvivesRestart(t *testing.T) {
	f, api := botFixture(t)
	api.Outage(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.s.RunResults(ctx) }()
	j := f.job(t, "dQw4w9WgXcQ", job.FormatBest, "/r/1")
	f.writeResult(t, j.Result(job.StatusFailed, job.ClassTimeout))
	waitLog(t, f, `"reason":"will_retry"`)
	cancel()
	<-done
	api.Outage(false)
	next, err := New(f.s.opt, notify.NewNotifier())
	if err != nil {
		t.Fatal(err)
	}
	f.s = next
	f.runResults(t)
	waitDM(t, api, ":x: Couldn't keep `dQw4w9WgXcQ` (best)")
}

// TestDMRefusedFallsBack: a final message the DM refuses for good goes
// to the response_url instead (while it is valid), with an alert.
func TestDMRefusedFallsBack(t *testing.T) {
	f, api := botFixture(t)
	j := f.job(t, "dQw4w9WgXcQ", job.FormatBest, "/r/9")
	// A permanent refusal: Slack no longer takes the token (invalid_auth).
	f.s.opt.Slack = mustBot(t, "xoxb-0000000000-revoked-token", api.APIURL())
	f.runResults(t)
	f.writeResult(t, j.Result(job.StatusFailed, job.ClassTimeout))
	waitLog(t, f, `"reason":"dm_refused"`)
	posts := waitPostsCourier(t, f)
	if !strings.HasPrefix(posts[0], "/r/9 :x: Couldn't keep") {
		t.Errorf("fallback post %q", posts[0])
	}
}

// TestFinalExpires: a final message Slack never takes is given up after
// FinalTTL, with an alert, and not kept.
func TestFinalExpires(t *testing.T) {
	f, api := botFixture(t)
	f.s.opt.FinalTTL = time.Hour
	f.now = time.Now().Add(-90 * time.Minute)
	j := f.job(t, "dQw4w9WgXcQ", job.FormatBest, "/r/1")
	api.Outage(true)
	f.runResults(t)
	f.writeResult(t, j.Result(job.StatusFailed, job.ClassTimeout))
	waitLog(t, f, `"reason":"final_undelivered"`)
	if kept, _ := os.ReadDir(f.layout.Courier("claimed")); len(kept) != 0 {
		t.Errorf("%d results kept after the TTL", len(kept))
	}
}

func mustBot(t testing.TB, token, apiURL string) *slackapi.Client {
	t.Helper()
	c, err := slackapi.New(slackapi.Options{Token: token, APIURL: apiURL})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func waitPostsCourier(t *testing.T, f *fixture) []string { return waitPosts(t, f.slack, 1) }

// TestOldTokenRefused: a record whose token is older than FinalTTL and
// the grace (one the worker kept, replayed to write to the requester
// again) is refused with an alert, before any call to Slack.
func TestOldTokenRefused(t *testing.T) {
	f, api := botFixture(t)
	f.s.opt.FinalTTL = time.Hour
	f.now = time.Now().Add(-3 * time.Hour)
	j := f.job(t, "dQw4w9WgXcQ", job.FormatBest, "/r/1")
	f.runResults(t)
	f.writeResult(t, j.Result(job.StatusStarted, job.ClassNone))
	f.writeResult(t, j.Result(job.StatusFailed, job.ClassTimeout))
	waitLog(t, f, `"status":"failed","via":"dm","reason":"token_expired"`)
	waitLog(t, f, `"status":"started","via":"dm","reason":"token_expired"`)
	if c := api.Calls(); len(c) != 0 {
		t.Errorf("Slack was called for an expired token: %+v", c)
	}
}

// TestUpdatesNeverDelayFinals: a flood of intermediate updates (a
// compromised worker replaying every token it kept) while Slack hangs is
// dropped without holding up a final message, which goes out once Slack
// answers again. Had the updates been delivered in line (each waiting
// for Slack), the final would wait for all of them: the test's deadline.
func TestUpdatesNeverDelayFinals(t *testing.T) {
	// The production bound: each hung update ends after 3 s.
	f, api := botFixtureWith(t, func(o *Options) { o.UpdateWait = interWait })
	f.runResults(t)
	api.Hang("chat.postMessage", -1)
	for range 200 {
		j := f.job(t, "dQw4w9WgXcQ", job.FormatBest, "/r/1")
		f.writeResult(t, j.Result(job.StatusStarted, job.ClassNone))
	}
	waitLog(t, f, `"code":"queue_full"`)
	api.Hang("chat.postMessage", 0)
	final := f.job(t, "aaaaaaaaaaa", job.FormatAudio, "/r/2")
	f.writeResult(t, final.Result(job.StatusFailed, job.ClassUnavailable))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := api.WaitFor(ctx, func(a *testbed.WebAPI) bool {
		for _, m := range a.Messages(a.DMOf(requester)) {
			if strings.HasPrefix(m.Text, ":x: Couldn't keep `aaaaaaaaaaa`") {
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("the final message waited behind the updates: %v", err)
	}
}

// TestEndedFileEndsItsRetries: two final results of one job, both kept
// through an outage; once Slack is back the first goes out and the
// second is refused (after the final) and removed, and nothing tries it
// again. Without forgetting it, every retry tick finds its file gone and
// quarantines nothing with an alert, forever.
func TestEndedFileEndsItsRetries(t *testing.T) {
	f, api := botFixture(t)
	f.runResults(t)
	api.Outage(true)
	j := f.job(t, "dQw4w9WgXcQ", job.FormatBest, "/r/1")
	f.writeResult(t, j.Result(job.StatusFailed, job.ClassTimeout))
	done := j.Result(job.StatusDone, job.ClassNone)
	done.Size, done.File = 1, "dQw4w9WgXcQ-best.mp4"
	f.writeResult(t, done)
	for deadline := time.Now().Add(time.Minute); strings.Count(f.log.String(), `"reason":"will_retry"`) < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("both finals were not kept:\n%s", f.log.String())
		}
	}
	api.Outage(false)
	waitLog(t, f, `"reason":"result_after_final"`)
	time.Sleep(300 * time.Millisecond) // thirty retry ticks
	if n := strings.Count(f.log.String(), `"event":"quarantined"`); n != 0 {
		t.Errorf("%d quarantine alerts for a file that ended:\n%s", n, f.log.String())
	}
	if n := strings.Count(f.log.String(), `"reason":"result_after_final"`); n != 1 {
		t.Errorf("%d result_after_final alerts, want 1", n)
	}
}

// TestProgressInStatusMessage: the worker's progress records update the
// status message in place (percent, size, speed, time left) between the
// start and the end; without a bot token they are dropped, not posted.
func TestProgressInStatusMessage(t *testing.T) {
	progress := func(f *fixture, j *job.Job, seq, pct int) {
		t.Helper()
		p := &job.Progress{V: job.Version, Job: j.ID, Seq: seq, Percent: pct, Bytes: 5 << 20, Total: 12 << 20, Speed: 1 << 20, ETA: 7, Reply: j.Reply}
		b, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		f.put(t, p.FileName(), b)
	}
	f, api := botFixture(t)
	f.runResults(t)
	j := f.job(t, "dQw4w9WgXcQ", job.Format720, "/r/1")
	f.writeResult(t, j.Result(job.StatusStarted, job.ClassNone))
	waitDM(t, api, ":hourglass_flowing_sand: Downloading `dQw4w9WgXcQ` (720p)…")
	progress(f, j, 1, 42)
	waitDM(t, api, ":hourglass_flowing_sand: Downloading `dQw4w9WgXcQ` (720p)… 42% of 12.0 MiB, 1.0 MiB/s, about 0:07 left")
	done := j.Result(job.StatusDone, job.ClassNone)
	done.Size, done.File = 12<<20, "dQw4w9WgXcQ-720p.mp4"
	f.writeResult(t, done)
	m := waitDM(t, api, ":white_check_mark: Saved")
	if len(m.Texts) != 3 || m.Updates != 2 {
		t.Errorf("the status message went %q, want start, progress, end", m.Texts)
	}

	// Without a bot token: nothing to the response_url, the file gone.
	g := newFixture(t)
	g.runResults(t)
	k := g.job(t, "dQw4w9WgXcQ", job.Format720, "/r/1")
	progress(g, k, 1, 42)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		left, _ := os.ReadDir(g.layout.Results())
		claimed, _ := os.ReadDir(g.layout.Courier("claimed"))
		if len(left)+len(claimed) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the progress record was not taken")
		}
	}
	if p := g.slack.Posts(); len(p) != 0 {
		t.Errorf("progress posted to the response_url: %q", p)
	}
}

// TestPlaceholderNotPostedTwice: when the placeholder's record cannot be
// written (here courier/status is gone, as a full disk would refuse it)
// and the update to the final result fails too, the retry updates the
// placeholder it posted, kept in memory: one message in the DM, not one
// more per retry.
func TestPlaceholderNotPostedTwice(t *testing.T) {
	f, api := botFixture(t)
	if err := os.Remove(f.layout.Courier("status")); err != nil { // empty: no job yet
		t.Fatal(err)
	}
	api.Fail("chat.update", 1, 500)
	f.runResults(t)
	j := f.job(t, "dQw4w9WgXcQ", job.FormatBest, "/r/1")
	done := j.Result(job.StatusDone, job.ClassNone)
	done.Size, done.File = 1, "dQw4w9WgXcQ-best.mp4"
	f.writeResult(t, done)
	waitDM(t, api, ":white_check_mark: Saved")
	if m := dm(api); len(m) != 1 || m[0].Updates != 1 {
		t.Errorf("the requester's DM: %+v, want one message, its placeholder updated once", m)
	}
}
