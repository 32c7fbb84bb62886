package receiver

import (
	"container/list"
	"context"
	"crypto/tls"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ytkeep/ytkeep/internal/audit"
)

// MaxConns caps the receiver's open HTTP connections: well under the
// unit's LimitNOFILE=4096 (deploy/systemd/ytkeep-receiver.service), which
// the spool, the rate log and the alert webhook's connections share.
// Slack's traffic to one app is a few connections.
const MaxConns = 1024

// slackDeadline is how long Slack waits for the answer to a slash
// command: a request still in progress after it is of no use to anyone.
const slackDeadline = 3 * time.Second

// Connection states, in the order a connection is given up when the
// limit is reached.
const (
	connIdle        = iota // a keep-alive connection between requests
	connNew                // accepted, no complete request header yet
	connUnverified         // reading or answering a request, none signed by Slack on it yet
	connTrustedIdle        // idle, after a request signed by Slack
	connActive             // reading or answering a request, on a connection that carried one signed by Slack
	connStates
)

// ConnLimiter is a listener that holds at most max connections open,
// with its ConnState method as the http.Server's ConnState hook (see
// LimitConns). Idle and slow connections cannot starve a new one: when a
// connection is accepted at the limit, the limiter closes another to make
// room, the first that exists of: the longest idle keep-alive connection
// that has not carried a request signed by Slack (trustConn); the oldest
// connection that has not sent a whole request header yet (slowloris, or
// a client that connects and sends nothing); the oldest request in
// progress on a connection that has carried none signed by Slack,
// whatever its age (a header, then a body withheld: Slack sends its body
// with its header, and its request is verified within milliseconds,
// which makes its connection Slack's); the longest idle of Slack's
// keep-alive connections; the oldest request in progress on one of
// Slack's connections for longer than Slack waits (3 s). Only when every connection is a request younger than
// that is the new connection closed instead (overload: max requests in
// progress at once). Past half the limit, a connection going idle after
// a request is closed at once, unless it carried one of Slack's: no
// keep-alive under pressure for anyone else.
//
// A connection arriving to a full listener thus evicts the oldest of
// those that hold a slot without a request in time: a Slack request on
// a new connection is only closed if max more connections arrive before
// its header does. Every step is O(1); it is safe for concurrent use.
type ConnLimiter struct {
	net.Listener
	max int
	now func() time.Time
	log *slog.Logger // nil: no reports

	reported time.Time // of the last report, at most one a minute

	mu      sync.Mutex
	states  [connStates]list.List // of *limitedConn, oldest first
	open    int
	evicted [connStates]int // connections closed to make room, by state
	refused int             // new connections closed: all were busy
	dropped int             // idle connections closed under pressure
}

// limitedConn is a connection the limiter counts.
type limitedConn struct {
	net.Conn
	l       *ConnLimiter
	elem    *list.Element // nil once removed
	state   int
	since   time.Time
	trusted bool // it carried a request signed by Slack
}

type connKey struct{}

// LimitConns wraps ln in a ConnLimiter of max connections and installs
// its hook as srv.ConnState. Serve or ServeTLS srv on the listener
// returned. When the limit is reached, log (if not nil) gets a warning
// with the counts so far, at most once a minute.
func LimitConns(srv *http.Server, ln net.Listener, max int, log *slog.Logger) *ConnLimiter {
	l := &ConnLimiter{Listener: ln, max: max, now: time.Now, log: log}
	srv.ConnState = l.ConnState
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c)
	}
	return l
}

// Accept accepts a connection, closing another (or, when all are busy,
// this one) if the limit is reached.
func (l *ConnLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		now := l.now()
		lc := &limitedConn{Conn: c, l: l, state: connNew, since: now}
		var victim *limitedConn
		if l.open >= l.max {
			victim = l.victimLocked(now)
			if victim == nil {
				l.refused++
				l.reportLocked(now)
				l.mu.Unlock()
				c.Close()
				continue
			}
			l.evicted[victim.state]++
			l.reportLocked(now)
			l.removeLocked(victim)
		}
		l.open++
		lc.elem = l.states[connNew].PushBack(lc)
		l.mu.Unlock()
		if victim != nil {
			victim.Conn.Close()
		}
		return lc, nil
	}
}

// reportLocked alerts with the counts so far (a connection flood is an
// attack or an overload, for the admins), at most once a minute.
func (l *ConnLimiter) reportLocked(now time.Time) {
	if l.log == nil || now.Sub(l.reported) < time.Minute {
		return
	}
	l.reported = now
	audit.Alert(l.log, audit.Refused, "reason", "connection_limit", "limit", l.max,
		"evicted_idle", l.evicted[connIdle], "evicted_no_header", l.evicted[connNew], "evicted_unverified", l.evicted[connUnverified],
		"evicted_slack_idle", l.evicted[connTrustedIdle], "evicted_past_deadline", l.evicted[connActive], "refused_busy", l.refused, "idle_closed", l.dropped)
}

// victimLocked returns the connection to close for a new one, or nil.
func (l *ConnLimiter) victimLocked(now time.Time) *limitedConn {
	for s := range connStates {
		e := l.states[s].Front()
		if e == nil {
			continue
		}
		c := e.Value.(*limitedConn)
		if s == connActive && now.Sub(c.since) < slackDeadline {
			return nil
		}
		return c
	}
	return nil
}

func (l *ConnLimiter) removeLocked(c *limitedConn) {
	if c.elem == nil {
		return
	}
	l.states[c.state].Remove(c.elem)
	c.elem = nil
	l.open--
}

// ConnState is the http.Server's hook: it tracks each connection's
// state, and closes a connection going idle past half the limit.
func (l *ConnLimiter) ConnState(nc net.Conn, state http.ConnState) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, ok := nc.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	if c.elem == nil { // closed already
		l.mu.Unlock()
		return
	}
	switch state {
	case http.StateActive, http.StateIdle:
		s := connActive
		if !c.trusted {
			s = connUnverified
		}
		if state == http.StateIdle {
			s = connIdle
			if c.trusted {
				s = connTrustedIdle
			} else if l.open > l.max/2 {
				l.dropped++
				l.removeLocked(c)
				l.mu.Unlock()
				c.Conn.Close()
				return
			}
		}
		l.states[c.state].Remove(c.elem)
		c.state, c.since = s, l.now()
		c.elem = l.states[s].PushBack(c)
	case http.StateHijacked, http.StateClosed:
		l.removeLocked(c)
	}
	l.mu.Unlock()
}

// trustConn marks the connection of a request (its context) as one that
// carried a request signed by Slack: when idle, it is the last to be
// closed to make room. A connection not from a ConnLimiter is ignored.
func trustConn(ctx context.Context) {
	nc, _ := ctx.Value(connKey{}).(net.Conn)
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if c, ok := nc.(*limitedConn); ok {
		l := c.l
		l.mu.Lock()
		c.trusted = true
		if c.elem != nil && c.state == connUnverified {
			// Its request is Slack's: the 3 s protection from now on.
			l.states[c.state].Remove(c.elem)
			c.state = connActive
			c.elem = l.states[connActive].PushBack(c)
		}
		l.mu.Unlock()
	}
}

// Close closes the connection and gives its slot back.
func (c *limitedConn) Close() error {
	c.l.mu.Lock()
	c.l.removeLocked(c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// ConnStats are a ConnLimiter's counts.
type ConnStats struct {
	Open int
	// EvictedIdle, EvictedNew, EvictedSlackIdle and EvictedSlow are
	// connections closed to make room: idle keep-alive, without a whole
	// request header, idle after a request signed by Slack, with a
	// request older than Slack's deadline.
	EvictedIdle, EvictedNew, EvictedSlackIdle, EvictedSlow int
	// EvictedUnverified: with a request in progress, none signed by
	// Slack on the connection (a body withheld, or slow).
	EvictedUnverified int
	Refused           int // new connections closed, all others busy
	IdleDropped       int // keep-alive connections closed under pressure
}

// Stats returns the limiter's counts.
func (l *ConnLimiter) Stats() ConnStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return ConnStats{Open: l.open, EvictedIdle: l.evicted[connIdle], EvictedNew: l.evicted[connNew],
		EvictedSlackIdle: l.evicted[connTrustedIdle], EvictedSlow: l.evicted[connActive], EvictedUnverified: l.evicted[connUnverified],
		Refused: l.refused, IdleDropped: l.dropped}
}

// serverLogPerMinute caps the lines of net/http's own error log (a TLS
// handshake that failed or timed out, a bad request line): a slowloris
// client causes one per connection.
const serverLogPerMinute = 10

// ServerErrorLog returns a logger for http.Server.ErrorLog that passes
// serverLogPerMinute lines a minute to l (level INFO, "http server") and
// counts the rest, reported in the first line of a later minute
// (suppressed=<n>).
func ServerErrorLog(l *slog.Logger) *log.Logger {
	return log.New(&serverLog{l: l, now: time.Now}, "", 0)
}

type serverLog struct {
	l   *slog.Logger
	now func() time.Time

	mu         sync.Mutex
	minute     int64
	n          int
	suppressed int
}

func (w *serverLog) Write(p []byte) (int, error) {
	m := w.now().Unix() / 60
	w.mu.Lock()
	if m != w.minute {
		w.minute, w.n = m, 0
	}
	if w.n >= serverLogPerMinute {
		w.suppressed++
		w.mu.Unlock()
		return len(p), nil
	}
	w.n++
	suppressed := w.suppressed
	w.suppressed = 0
	w.mu.Unlock()
	attrs := []any{"err", strings.TrimSpace(string(p))}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	w.l.Info("http server", attrs...)
	return len(p), nil
}
