package receiver

import (
	"context"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ytkeep/ytkeep/internal/slackreq"
	"github.com/ytkeep/ytkeep/internal/testbed"
)

// BenchmarkSocketMode measures the Socket Mode path as Slack sees it:
// from the envelope sent over the WebSocket to its acknowledgement
// received, the job durable in between (the simulated Slack on
// loopback, slack-go's client, Service.Handle's durable enqueue). It
// reports the median and the 99th percentile.
func BenchmarkSocketMode(b *testing.B) {
	s := benchService(b)
	sm := simSocket(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.RunSocket(ctx, SocketOptions{AppToken: sm.AppToken, APIURL: sm.APIURL()})
	if err := sm.WaitConnected(ctx, 1); err != nil {
		b.Fatal(err)
	}
	inv := testbed.Invocation{User: "U1", Channel: "C1", Command: "/ytkeep", Text: "https://youtu.be/dQw4w9WgXcQ 720p"}
	var took []time.Duration
	for b.Loop() {
		start := time.Now()
		reply, _, err := sm.Send(ctx, inv)
		took = append(took, time.Since(start))
		if err != nil || !strings.HasPrefix(reply, "Queued") {
			b.Fatalf("%q, %v", reply, err)
		}
	}
	slices.Sort(took)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(took[len(took)/2]), "p50-ms")
	b.ReportMetric(ms(took[len(took)*99/100]), "p99-ms")
}

// BenchmarkHTTPPath is the same measure for HTTP mode, for comparison:
// a signed request sent over a loopback connection to its reply.
func BenchmarkHTTPPath(b *testing.B) {
	s := benchService(b)
	sl, err := testbed.NewSlack("T1")
	if err != nil {
		b.Fatal(err)
	}
	defer sl.Close()
	v, err := slackreq.NewVerifier(sl.Secret, nil, 1<<20)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler("/slack/commands", v))
	defer srv.Close()
	inv := testbed.Invocation{User: "U1", Channel: "C1", Command: "/ytkeep", Text: "https://youtu.be/dQw4w9WgXcQ 720p"}
	client := srv.Client()
	var took []time.Duration
	for b.Loop() {
		start := time.Now()
		reply, _, status, err := sl.Send(context.Background(), client, srv.URL+"/slack/commands", inv)
		took = append(took, time.Since(start))
		if err != nil || status != 200 || !strings.HasPrefix(reply, "Queued") {
			b.Fatalf("%d %q, %v", status, reply, err)
		}
	}
	slices.Sort(took)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(took[len(took)/2]), "p50-ms")
	b.ReportMetric(ms(took[len(took)*99/100]), "p99-ms")
}
