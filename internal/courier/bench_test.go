package courier

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/reply"
	"github.com/ytkeep/ytkeep/internal/testbed"
)

// BenchmarkFinalMessage measures the courier's part of the round's
// target, the final Slack message at most 1 s after the result: from the
// worker's final record landing in results/ to the message in the
// requester's DM of the simulated Web API (inotify, claim, the checks,
// opening the token, conversations.open and chat.postMessage over
// loopback HTTP). Each iteration is another user's job, so that no
// client-side limit makes it wait (Slack's limits are per DM, and 50
// conversations.open a minute: run at most 40 iterations a minute, e.g.
// -benchtime=40x). It reports the median and the worst, in ms.
func BenchmarkFinalMessage(b *testing.B) {
	f, api := botFixture(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.s.RunResults(ctx)
	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		user := fmt.Sprintf("U0BENCH%04d", i)
		j := &job.Job{V: job.Version, ID: job.NewID(), Video: "dQw4w9WgXcQ", Format: job.FormatBest, Team: "T1", User: user, Channel: "C1", Created: time.Now().Unix()}
		tok, err := f.sealer.Seal(j.ID, reply.Info{URL: f.slack.URL() + "/r/1", Created: j.Created, Video: j.Video, Format: j.Format, User: user})
		if err != nil {
			b.Fatal(err)
		}
		j.Reply = tok
		start := time.Now()
		f.writeResult(b, j.Result(job.StatusFailed, job.ClassTimeout))
		wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
		err = api.WaitFor(wctx, func(a *testbed.WebAPI) bool {
			m := a.Messages(a.DMOf(user))
			return len(m) == 1 && strings.HasPrefix(m[0].Text, ":x:")
		})
		wcancel()
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "worst-ms")
}
