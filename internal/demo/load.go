package demo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ytkeep/ytkeep/internal/slackreq"
	"github.com/ytkeep/ytkeep/internal/testbed"
)

// LoadOptions configure a load run against a real receiver process.
type LoadOptions struct {
	BinDir   string
	Rate     int           // requests per second, valid and forged together
	Duration time.Duration // how long to send
	Dir      string        // spool location; empty for a temporary directory
	// Forged is the fraction of the requests that are forged (0 to 1),
	// spread evenly over ForgedKinds.
	Forged float64
	// Slowloris is the number of hostile connections held open at once:
	// a third connect and send nothing, a third send a request header a
	// byte at a time, a third hold an idle keep-alive connection after a
	// request. Each connects again when the receiver closes it.
	Slowloris int
}

// ForgedKinds are the forged requests the load tool sends, named by the
// reason the receiver refuses them for: a bad signature, a stale
// timestamp, the replay of an earlier valid request, a body over
// slackreq.MaxBodyBytes, and a correctly signed command from a
// workspace that is not allowed.
var ForgedKinds = []string{"bad_signature", "stale_timestamp", "replay", "body_too_large", "unauthorized_team"}

// p99Target is the receiver's latency target for valid requests at 500
// a second (docs/performance.md).
const p99Target = 10 * time.Millisecond

// Load starts a receiver (no worker: jobs pile up in the spool, each one
// durably enqueued), sends slash commands at a fixed rate, validly signed
// and forged, while slowloris clients hold connections, and prints what
// was accepted and refused, the latency of the valid requests, the alerts
// the receiver raised and the connections held.
func Load(ctx context.Context, out io.Writer, opt LoadOptions) error {
	if opt.Forged < 0 || opt.Forged > 1 {
		return errors.New("the forged fraction must be between 0 and 1")
	}
	dir := opt.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "ytkeep-load-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	w, err := testbed.NewWorld(ctx, testbed.WorldOptions{Dir: dir, BinDir: opt.BinDir, NoWorker: true, AnyUser: true})
	if err != nil {
		return err
	}
	defer w.Close()
	addr := strings.TrimSuffix(strings.TrimPrefix(w.Endpoint, "http://"), "/slack/commands")

	loris := startSlowloris(addr, opt.Slowloris)
	// Let the slowloris connections open first.
	loris.waitOpen(opt.Slowloris, 10*time.Second)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 0}, Timeout: 10 * time.Second}
	// Forged requests on connections of their own: the receiver closes
	// each after its refusal.
	forgedClient := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	total := int(float64(opt.Rate) * opt.Duration.Seconds())
	type outcome struct {
		kind    string // "valid" or a forged kind
		lat     time.Duration
		status  int
		queued  bool
		problem string
	}
	res := make([]outcome, total)
	var replay struct {
		sync.Mutex
		h    http.Header
		body []byte
	}
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(opt.Rate)
	start := time.Now()
	nforged := 0
	for i := 0; i < total; i++ {
		// Open-loop: request i is due at start + i*interval, whatever the
		// latency of earlier ones (no coordinated omission).
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		kind := "valid"
		if int(float64(i+1)*opt.Forged) > int(float64(i)*opt.Forged) {
			kind = ForgedKinds[nforged%len(ForgedKinds)]
			nforged++
		}
		wg.Add(1)
		go func(i int, due time.Time, kind string) {
			defer wg.Done()
			o := outcome{kind: kind}
			inv := w.Invocation("https://youtu.be/dQw4w9WgXcQ")
			inv.User = fmt.Sprintf("ULOAD%06d", i) // each user is rate-limited
			body, _ := w.Slack.Body(inv)
			h := http.Header{}
			h.Set("Content-Type", "application/x-www-form-urlencoded")
			c := client
			switch kind {
			case "valid":
				slackreq.SignRequest(h, w.Slack.Secret, time.Now(), body)
			case "bad_signature":
				slackreq.SignRequest(h, "forged-"+w.Slack.Secret, time.Now(), body)
			case "stale_timestamp":
				slackreq.SignRequest(h, w.Slack.Secret, time.Now().Add(-10*time.Minute), body)
			case "replay":
				replay.Lock()
				if replay.h != nil {
					h, body = replay.h.Clone(), replay.body
				}
				replay.Unlock()
			case "body_too_large":
				body = append(body, "&pad="+strings.Repeat("a", slackreq.MaxBodyBytes)...)
				slackreq.SignRequest(h, w.Slack.Secret, time.Now(), body)
			case "unauthorized_team":
				v, _ := url.ParseQuery(string(body))
				v.Set("team_id", "T0FORGED1")
				body = []byte(v.Encode())
				slackreq.SignRequest(h, w.Slack.Secret, time.Now(), body)
			}
			if kind != "valid" {
				c = forgedClient
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, w.Endpoint, bytes.NewReader(body))
			req.Header = h
			resp, err := c.Do(req)
			o.lat = time.Since(due)
			if err != nil {
				o.problem = err.Error()
			} else {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
				resp.Body.Close()
				o.status = resp.StatusCode
				var r struct{ Text string }
				json.Unmarshal(b, &r)
				o.queued = resp.StatusCode == http.StatusOK && strings.HasPrefix(r.Text, "Queued")
				if kind == "valid" && !o.queued {
					o.problem = fmt.Sprintf("HTTP %d: %.200s", resp.StatusCode, b)
				}
				if kind == "valid" && o.queued {
					// An accepted request, to be replayed.
					replay.Lock()
					if replay.h == nil {
						replay.h, replay.body = h.Clone(), body
					}
					replay.Unlock()
				}
			}
			res[i] = o
		}(i, due, kind)
	}
	wg.Wait()
	elapsed := time.Since(start)
	held := loris.stop()

	// Valid requests.
	var lat []time.Duration
	var validSent, validOK, slow int
	var problems []string
	forged := map[string]map[string]int{} // kind -> outcome -> n
	forgedSent, forgedAccepted := 0, 0
	for _, o := range res {
		if o.kind == "valid" {
			validSent++
			lat = append(lat, o.lat)
			if o.queued && o.lat < 3*time.Second {
				validOK++
			} else if o.problem != "" {
				problems = append(problems, o.problem)
			} else {
				problems = append(problems, fmt.Sprintf("answered after %v, past Slack's 3 s", o.lat))
			}
			if o.lat > p99Target {
				slow++
			}
			continue
		}
		forgedSent++
		if forged[o.kind] == nil {
			forged[o.kind] = map[string]int{}
		}
		switch {
		case o.queued:
			forgedAccepted++
			forged[o.kind]["ACCEPTED"]++
		case o.problem != "":
			forged[o.kind]["connection closed"]++
		default:
			forged[o.kind][strconv.Itoa(o.status)]++
		}
	}
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[int(p*float64(len(lat)-1))]
	}
	queued, _ := os.ReadDir(w.SpoolDir + "/incoming")

	// The receiver's view: refusals by reason, and alerts. Summaries come
	// when a window closes (10 s after the first, then 20 s, …): wait
	// for the one that counts the last forged request, at most 80 s.
	var rs receiverStats
	deadline := time.Now().Add(80 * time.Second)
	for {
		rs, err = readReceiverLog(w.Receiver.LogPath)
		if err != nil || rs.settled() || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		return err
	}

	fmt.Fprintf(out, "load: %d slash commands at %d req/s for %v (%.0f%% forged) against a receiver process, %d slowloris connections\n",
		total, opt.Rate, opt.Duration, 100*opt.Forged, opt.Slowloris)
	fmt.Fprintf(out, "sent %.1f req/s\n", float64(total)/elapsed.Seconds())
	fmt.Fprintf(out, "valid: sent %d, accepted %d, dropped %d, jobs durably queued %d\n", validSent, validOK, validSent-validOK, len(queued))
	fmt.Fprintf(out, "valid latency: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms; over the %v target: %d\n",
		ms(pct(0.5)), ms(pct(0.9)), ms(pct(0.99)), ms(pct(1)), p99Target, slow)
	fmt.Fprintf(out, "forged: sent %d, accepted %d\n", forgedSent, forgedAccepted)
	for _, k := range ForgedKinds {
		var parts []string
		for o, n := range forged[k] {
			parts = append(parts, fmt.Sprintf("%s ×%d", o, n))
		}
		sort.Strings(parts)
		fmt.Fprintf(out, "  %-18s %s; receiver logged refused reason=%s: %d\n", k, strings.Join(parts, ", "), k, rs.refused[k])
	}
	fmt.Fprintf(out, "receiver log: %d refusals not logged one by one (reason=unlogged)\n", rs.unlogged)
	fmt.Fprintf(out, "alerts: unauthenticated (bad signature, stale, replay): %d at once + %d summaries counting %d; unauthorized workspace: %d at once + %d summaries counting %d; other alerts %d %v; webhook posts %d\n",
		rs.unauthFirst, rs.unauthSummaries, rs.unauthCounted, rs.teamFirst, rs.teamSummaries, rs.teamCounted, rs.otherAlerts, rs.otherEvents, len(w.AdminAlerts()))
	fmt.Fprintf(out, "slowloris: held %d connections at the end of the traffic (of %d), %d reconnects after the receiver closed one (silent %d, byte-at-a-time header %d, idle keep-alive %d)\n",
		held.open, opt.Slowloris, held.closed[0]+held.closed[1]+held.closed[2], held.closed[0], held.closed[1], held.closed[2])

	var errs []string
	if len(problems) > 0 {
		errs = append(errs, fmt.Sprintf("%d valid requests failed, first: %s", len(problems), problems[0]))
	}
	if len(queued) != validOK {
		errs = append(errs, fmt.Sprintf("%d jobs queued for %d accepted requests", len(queued), validOK))
	}
	if forgedAccepted > 0 {
		errs = append(errs, fmt.Sprintf("%d forged requests accepted", forgedAccepted))
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// receiverStats is what the receiver's log says of a load run.
type receiverStats struct {
	refused                                     map[string]int // refused events by reason, alerts included
	unlogged                                    int
	unauthFirst, unauthSummaries, unauthCounted int
	teamFirst, teamSummaries, teamCounted       int
	otherAlerts                                 int
	otherEvents                                 map[string]int // the other alerts, by event (and reason)
	unauthRefused, teamRefused                  int            // all refusals, logged or counted
}

// settled says every refusal the gates saw is in an alert: the first
// one or a summary.
func (s receiverStats) settled() bool {
	return s.unauthFirst+s.unauthCounted >= s.unauthRefused && s.teamFirst+s.teamCounted >= s.teamRefused
}

var unloggedRe = regexp.MustCompile(`([a-z_]+):(\d+)`)

func readReceiverLog(path string) (receiverStats, error) {
	s := receiverStats{refused: map[string]int{}, otherEvents: map[string]int{}}
	f, err := os.Open(path)
	if err != nil {
		return s, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	unauth := map[string]bool{"bad_signature": true, "stale_timestamp": true, "replay": true,
		"missing_signature": true, "bad_timestamp": true, "signed_before_start": true}
	for sc.Scan() {
		var l struct {
			Event    string `json:"event"`
			Alert    bool   `json:"alert"`
			Reason   string `json:"reason"`
			Repeated bool   `json:"repeated"`
			Requests int    `json:"requests"`
			Reasons  string `json:"reasons"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Event == "" {
			continue
		}
		if l.Event != "refused" {
			if l.Alert {
				s.otherAlerts++
				s.otherEvents[l.Event]++
			}
			continue
		}
		switch {
		case l.Reason == "unlogged":
			s.unlogged += l.Requests
			for _, m := range unloggedRe.FindAllStringSubmatch(l.Reasons, -1) {
				n, _ := strconv.Atoi(m[2])
				if unauth[m[1]] {
					s.unauthRefused += n
				}
			}
		case l.Reason == "unauthenticated":
			s.unauthSummaries++
			s.unauthCounted += l.Requests
		case l.Reason == "unauthorized_team" && l.Repeated:
			s.teamSummaries++
			s.teamCounted += l.Requests
		default:
			s.refused[l.Reason]++
			switch {
			case unauth[l.Reason]:
				s.unauthRefused++
				if l.Alert {
					s.unauthFirst++
				}
			case l.Reason == "unauthorized_team":
				s.teamRefused++
				if l.Alert {
					s.teamFirst++
				}
			case l.Alert:
				s.otherAlerts++
				s.otherEvents[l.Event+" "+l.Reason]++
			}
		}
	}
	return s, sc.Err()
}

// slowloris holds hostile connections to the receiver.
type slowloris struct {
	addr   string
	done   chan struct{}
	wg     sync.WaitGroup
	open   atomic.Int64
	closed [3]atomic.Int64 // by kind: connections the receiver closed
}

type lorisHeld struct {
	open   int
	closed [3]int64
}

func startSlowloris(addr string, n int) *slowloris {
	s := &slowloris{addr: addr, done: make(chan struct{})}
	for i := range n {
		s.wg.Add(1)
		go s.hold(i % 3)
	}
	return s
}

// waitOpen waits until n connections are open, or for at most d.
func (s *slowloris) waitOpen(n int, d time.Duration) {
	deadline := time.Now().Add(d)
	for int(s.open.Load()) < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// hold keeps one connection of kind open (0 silent, 1 a header a byte
// at a time, 2 an idle keep-alive), connecting again when the receiver
// closes it.
func (s *slowloris) hold(kind int) {
	defer s.wg.Done()
	for {
		select {
		case <-s.done:
			return
		default:
		}
		c, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		s.open.Add(1)
		stop := make(chan struct{})
		go func() {
			select {
			case <-s.done:
			case <-stop:
			}
			c.Close()
		}()
		switch kind {
		case 1:
			go func() {
				hdr := "POST /slack/commands HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Slow: " + strings.Repeat("a", 4000)
				t := time.NewTicker(100 * time.Millisecond)
				defer t.Stop()
				for i := 0; i < len(hdr); i++ {
					if _, err := c.Write([]byte{hdr[i]}); err != nil {
						return
					}
					select {
					case <-t.C:
					case <-stop:
						return
					}
				}
			}()
		case 2:
			io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		}
		io.Copy(io.Discard, c) // until the receiver (or stop) closes it
		s.open.Add(-1)
		close(stop)
		select {
		case <-s.done:
			return
		default:
		}
		s.closed[kind].Add(1)
		time.Sleep(50 * time.Millisecond)
	}
}

// stop closes every connection and returns how many were open.
func (s *slowloris) stop() lorisHeld {
	h := lorisHeld{open: int(s.open.Load())}
	close(s.done)
	s.wg.Wait()
	for i := range h.closed {
		h.closed[i] = s.closed[i].Load()
	}
	return h
}
