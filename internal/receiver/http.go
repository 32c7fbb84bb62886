package receiver

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
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
			if e.Suspicious() && s.refusals.alertFirst(string(e.Reason), r.RemoteAddr) {
				audit.Alert(s.log, audit.Refused, attrs...)
			} else {
				audit.Event(s.log, audit.Refused, attrs...)
			}
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

// NewServer returns an http.Server with timeouts suited to Slack: it must
// answer within 3 seconds, and requests are small.
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}

// Refusals for a missing, bad, stale or replayed signature (the
// Suspicious ones) are what anyone who can reach the endpoint can cause,
// as fast as they can send. Each is logged, as an event; the admins get
// few alerts for them, from refusalGate.
const (
	firstRefusalWindow = 10 * time.Second
	maxRefusalWindow   = 5 * time.Minute
	// maxRefusalAddrs bounds the addresses told apart in one window.
	maxRefusalAddrs = 1024
)

// refusalGate aggregates unauthenticated refusals into few alerts. The
// first after a quiet spell is alerted at once, with its reason and
// address, and opens a window of firstRefusalWindow. The refusals inside
// the window are only counted; when it closes, one alert reports them
// (event refused, reason unauthenticated, with requests, addresses,
// reasons, remotes and window). While refusals go on, each window is
// twice as long as the one before, up to maxRefusalWindow; a window
// without any ends the spell. A flood of any size thus raises one alert
// at once and then one per window, about a dozen an hour. It is safe for
// concurrent use.
type refusalGate struct {
	log *slog.Logger // with the sink: the alerts reach the admins

	mu      sync.Mutex
	window  time.Duration // of the open window; 0 in a quiet spell
	count   int
	reasons map[string]int
	addrs   map[string]bool // at most maxRefusalAddrs
	more    bool            // more addresses than addrs holds
	remotes []string        // the first few addresses, for the alert
}

func newRefusalGate(log *slog.Logger) *refusalGate {
	return &refusalGate{log: log, reasons: map[string]int{}, addrs: map[string]bool{}}
}

// alertFirst records a refusal for reason from remote (host:port). It
// reports whether to alert about it now; if not, it is counted for the
// window's summary.
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
	attrs := []any{"reason", "unauthenticated", "requests", g.count, "addresses", addrs,
		"reasons", strings.Join(reasons, " "), "remotes", remotes, "window", g.window.String()}
	g.count, g.more, g.remotes = 0, false, nil
	clear(g.reasons)
	clear(g.addrs)
	g.window = min(2*g.window, maxRefusalWindow)
	time.AfterFunc(g.window, g.close)
	g.mu.Unlock()
	audit.Alert(g.log, audit.Refused, attrs...)
}
