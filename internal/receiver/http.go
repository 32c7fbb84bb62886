package receiver

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/slackreq"
)

// Handler serves slash commands at path, verified by v.
func (s *Service) Handler(path string, v *slackreq.Verifier) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		if inputHook != nil {
			inputHook(r.URL.RawQuery)
		}
		c, a, err := v.ReadVerifiedRequest(r)
		if err == nil {
			// Signed by Slack: its connection is kept longest.
			trustConn(r.Context())
		}
		if errors.Is(err, slackreq.ErrSSLCheck) {
			// Slack's certificate check: an empty 200, and nothing
			// else happens (no job, no alert). Whether it carried a
			// signature is recorded; the signature is not checked.
			audit.Event(s.log, audit.SSLCheck, "remote", r.RemoteAddr, "has_signature", r.Header.Get("X-Slack-Signature") != "")
			w.WriteHeader(http.StatusOK)
			return
		}
		if err != nil {
			var e *slackreq.Error
			if !errors.As(err, &e) {
				e = &slackreq.Error{Status: http.StatusBadRequest, Reason: slackreq.ReasonBadRequest}
			}
			attrs := []any{"reason", string(e.Reason), "remote", r.RemoteAddr}
			switch {
			case e.Reason == slackreq.ReasonReplay || e.Reason == slackreq.ReasonSignedBeforeStart:
				// A request Slack really signed, sent again: someone
				// holds one. A gate of its own, so that a flood of bad
				// signatures cannot fold it into a summary minutes
				// later, and every one logged, outside the budget.
				if s.replays.alertFirst(string(e.Reason), r.RemoteAddr) {
					audit.Alert(s.log, audit.Refused, attrs...)
				} else {
					audit.Event(s.log, audit.Refused, attrs...)
				}
			case e.Suspicious() && s.refusals.alertFirst(string(e.Reason), r.RemoteAddr):
				audit.Alert(s.log, audit.Refused, attrs...)
			case s.refusals.logEvent(string(e.Reason)):
				audit.Event(s.log, audit.Refused, attrs...)
			}
			// No keep-alive for a request that is not Slack's (nor for
			// the rest of a body too large, which net/http would read).
			w.Header().Set("Connection", "close")
			http.Error(w, http.StatusText(e.Status), e.Status)
			return
		}
		if a != nil {
			// A button click: Slack wants an empty 200 in time; the
			// courier answers at the click's response_url.
			if _, ok := s.handleActionOK(a, ""); !ok {
				// Slack shows the user the click failed.
				http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
				return
			}
			w.WriteHeader(http.StatusOK)
			return
		}
		text := s.Handle(c)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"response_type": "ephemeral", "text": text})
	})
	return mux
}

// NewServer returns an http.Server with limits suited to Slack: it must
// answer within 3 seconds (slackDeadline), and its requests are small.
// A client gets ReadHeaderTimeout for the TLS handshake and the request
// header (slowloris is cut off there), ReadTimeout for header and body
// (slackreq caps the body at MaxBodyBytes), and keeps an idle keep-alive
// connection IdleTimeout at most. Serve it on LimitConns's listener,
// which caps the connections.
//
// HTTP/1.1 only, also when it serves TLS itself: Slack posts slash
// commands over HTTP/1.1, and HTTP/2 would put up to 250 requests, each
// holding a body, on one connection the limiter counts once (and its
// streams would look idle to the limiter before their first request).
func NewServer(addr string, h http.Handler) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: slackDeadline,
		ReadTimeout:       5 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    MaxHeaderBytes,
		Protocols:         &protocols,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
}

// MaxHeaderBytes caps a request's header (net/http allows 4 KiB more
// for its buffer). Slack's are well under 2 KiB.
const MaxHeaderBytes = 8 << 10

// Refusals for a missing, bad, stale or replayed signature (the
// Suspicious ones) are what anyone who can reach the endpoint can cause,
// as fast as they can send. Each is logged, as an event, within
// refusalLogPerSecond; the admins get few alerts for them, from
// refusalGate.
const (
	firstRefusalWindow = 10 * time.Second
	maxRefusalWindow   = 5 * time.Minute
	// maxRefusalAddrs bounds the addresses told apart in one window.
	maxRefusalAddrs = 1024
)

// refusalGate aggregates refusals into few alerts. The first after a
// quiet spell is alerted at once, with its reason and address, and opens
// a window of firstRefusalWindow. The refusals inside the window are only
// counted; when it closes, one alert reports them (event refused, the
// gate's summary attributes, then requests, addresses, reasons, remotes
// and window). While refusals go on, each window is twice as long as the
// one before, up to maxRefusalWindow; a window without any ends the
// spell. A flood of any size thus raises one alert at once and then one
// per window, about a dozen an hour. Memory is bounded (maxRefusalAddrs
// addresses, the reasons are the code's) and each refusal costs O(1). It
// is safe for concurrent use.
type refusalGate struct {
	log     *slog.Logger // with the sink: the alerts reach the admins
	summary []any        // the summary alert's first attributes
	// addrLabel names what addrs holds in the summary: "addresses"
	// (remote hosts) or "users".
	addrLabel, remotesLabel string
	quiet                   func() // called when a spell ends, if set

	mu      sync.Mutex
	window  time.Duration // of the open window; 0 in a quiet spell
	count   int
	reasons map[string]int
	addrs   map[string]bool // at most maxRefusalAddrs
	more    bool            // more addresses than addrs holds
	remotes []string        // the first few addresses, for the alert

	logs refusalLog
}

// newRefusalGate returns the gate of unauthenticated requests: its
// summary is "refused reason=unauthenticated", over remote addresses.
func newRefusalGate(log *slog.Logger) *refusalGate {
	return &refusalGate{log: log, summary: []any{"reason", "unauthenticated"}, addrLabel: "addresses", remotesLabel: "remotes",
		reasons: map[string]int{}, addrs: map[string]bool{}}
}

// alertFirst records a refusal for reason from remote (host:port, or a
// user ID). It reports whether to alert about it now; if not, it is
// counted for the window's summary.
func (g *refusalGate) alertFirst(reason, remote string) bool {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.window == 0 {
		g.window = firstRefusalWindow
		time.AfterFunc(g.window, g.close)
		return true
	}
	g.count++
	g.reasons[reason]++
	switch {
	case g.addrs[host]:
	case len(g.addrs) >= maxRefusalAddrs:
		g.more = true
	default:
		g.addrs[host] = true
		if len(g.remotes) < 3 {
			g.remotes = append(g.remotes, host)
		}
	}
	return false
}

// close ends the open window: it alerts with what was counted in it and
// opens a longer one, or, if nothing was, ends the spell.
func (g *refusalGate) close() {
	g.mu.Lock()
	if g.count == 0 {
		g.window = 0
		g.mu.Unlock()
		if g.quiet != nil {
			g.quiet()
		}
		return
	}
	reasons := make([]string, 0, len(g.reasons))
	for r, n := range g.reasons {
		reasons = append(reasons, fmt.Sprintf("%s:%d", r, n))
	}
	sort.Strings(reasons)
	addrs := strconv.Itoa(len(g.addrs))
	if g.more {
		addrs = "more than " + addrs
	}
	remotes := strings.Join(g.remotes, " ")
	if len(g.addrs) > len(g.remotes) || g.more {
		remotes += " …"
	}
	attrs := append(slices.Clone(g.summary), "requests", g.count, g.addrLabel, addrs,
		"reasons", strings.Join(reasons, " "), g.remotesLabel, remotes, "window", g.window.String())
	g.count, g.more, g.remotes = 0, false, nil
	clear(g.reasons)
	clear(g.addrs)
	g.window = min(2*g.window, maxRefusalWindow)
	time.AfterFunc(g.window, g.close)
	g.mu.Unlock()
	audit.Alert(g.log, audit.Refused, attrs...)
}

// refusalLogPerSecond caps the refused events logged one by one for
// requests refused before (or at) the signature check: anyone can send
// them as fast as the network allows, and a line for each would flood
// the journal (journald's own rate limit would then drop the receiver's
// other lines too, accepted jobs and alerts included). Past the cap in a
// second, refusals are counted, and one event at the end of the second
// reports them: refused reason=unlogged requests=<n> reasons=<reason:n …>.
const refusalLogPerSecond = 50

// refusalLog is refusalGate's log budget; its lock is the gate's.
type refusalLog struct {
	second   int64 // the Unix second the budget is for
	logged   int
	unlogged map[string]int // by reason, in the current second
	pending  bool           // a report of unlogged is scheduled
}

// logEvent reports whether to log a refusal for reason one by one; if
// not, it is counted for the second's report.
func (g *refusalGate) logEvent(reason string) bool {
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	l := &g.logs
	if sec := now.Unix(); sec != l.second {
		l.second, l.logged = sec, 0
	}
	if l.logged < refusalLogPerSecond {
		l.logged++
		return true
	}
	if l.unlogged == nil {
		l.unlogged = map[string]int{}
	}
	l.unlogged[reason]++
	if !l.pending {
		l.pending = true
		time.AfterFunc(time.Unix(l.second+1, 0).Sub(now), g.reportUnlogged)
	}
	return false
}

// reportUnlogged logs the count of the refusals not logged one by one.
func (g *refusalGate) reportUnlogged() {
	g.mu.Lock()
	l := &g.logs
	n := 0
	reasons := make([]string, 0, len(l.unlogged))
	for r, c := range l.unlogged {
		reasons = append(reasons, fmt.Sprintf("%s:%d", r, c))
		n += c
	}
	sort.Strings(reasons)
	clear(l.unlogged)
	l.pending = false
	g.mu.Unlock()
	audit.Event(g.log, audit.Refused, "reason", "unlogged", "requests", n, "reasons", strings.Join(reasons, " "))
}
