package receiver

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/slackreq"
)

// Socket Mode intake: the receiver opens a WebSocket to Slack (outbound
// only, with the app-level token) and gets slash commands as envelopes.
// Each goes through the same parser (slackreq.ParseCommand, on the
// payload's fields as a form) and the same decisions (Service.Handle) as
// a signed HTTP request, and is acknowledged with the ephemeral reply as
// the acknowledgement's payload only once Handle has returned, i.e. once
// the job is durable.
//
// Trust: the WebSocket is authenticated by the app-level token (TLS to
// Slack's host); there is no per-envelope signature. What arrives on it
// is still parsed as hostile: strictly, within bounds, every field
// checked as for HTTP.

// SocketOptions configure RunSocket.
type SocketOptions struct {
	AppToken string
	// APIURL is Slack's Web API base URL ("" for https://slack.com/api/);
	// a simulated Slack in test mode.
	APIURL string
	// Connections is how many connections this receiver opens (1): a
	// hello that counts more means another client holds the app token.
	Connections int
	// pacer spaces the connections (newPacer when nil; tests set
	// noPacing).
	pacer    *pacer
	noPacing bool
}

// maxEnvelope bounds a Socket Mode message: slash command envelopes are a
// few kilobytes.
const maxEnvelope = 64 << 10

// maxAckPayload bounds the acknowledgement: Slack drops a Socket Mode
// response of 20 KB or more (slack-go refuses to send one).
const maxAckPayload = 16 << 10

// seenEnvelopes bounds the duplicate-delivery memory: the envelope IDs
// answered in the last seenFor.
const (
	seenEnvelopes = 4096
	seenFor       = 15 * time.Minute
)

// RunSocket serves slash commands over Socket Mode until ctx ends or the
// app-level token is refused (an error: the daemon exits and is started
// again, with an alert). slack-go reconnects by itself, with jittered
// backoff, after a disconnect or a failed connection.
func (s *Service) RunSocket(ctx context.Context, opt SocketOptions) error {
	if opt.Connections == 0 {
		opt.Connections = 1
	}
	if opt.pacer == nil && !opt.noPacing {
		opt.pacer = newPacer()
	}
	// No proxy from the environment, no MPTCP (Landlock's TCP rules do
	// not cover it), bounded handshakes.
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	dialer.SetMultipathTCP(false)
	httpClient := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		Proxy: nil, DialContext: dialer.DialContext, TLSHandshakeTimeout: 10 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second, MaxResponseHeaderBytes: 16 << 10,
	},
		// No redirect: Go would send the token on to the same host name
		// on another port or scheme.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	apiOpts := []slack.Option{slack.OptionAppLevelToken(opt.AppToken), slack.OptionHTTPClient(httpClient)}
	if opt.APIURL != "" {
		apiOpts = append(apiOpts, slack.OptionAPIURL(opt.APIURL))
	}
	// slack-go reconnects on a disconnect message without telling why;
	// its debug log is the only place the reason shows, so the receiver
	// reads it there (and writes none of it).
	reasons := make(chan string, 8)
	client := socketmode.New(slack.New("", apiOpts...),
		socketmode.OptionDialer(wsDialer(dialer, opt.APIURL == "", opt.pacer)),
		socketmode.OptionReadLimit(maxEnvelope),
		socketmode.OptionDebug(true), socketmode.OptionLog(disconnectTap(reasons)))
	seen := newEnvelopeCache(seenEnvelopes, seenFor)
	done := make(chan error, 1)
	go func() { done <- client.RunContext(ctx) }()
	st := &socketState{connectedAt: time.Now()}
	watch := time.NewTicker(time.Minute)
	defer watch.Stop()
	for {
		select {
		case err := <-done:
			if ctx.Err() != nil {
				return nil
			}
			// slack-go gives up only when Slack refuses the token.
			audit.Alert(s.log, audit.SocketRefused, "reason", audit.Clean(err.Error(), 100))
			return fmt.Errorf("socket mode: %w", err)
		case r := <-reasons:
			s.disconnectReason(r)
		case <-watch.C:
			if !st.connected && time.Since(st.lostAt) > maxDisconnected {
				audit.Alert(s.log, audit.SocketRefused, "reason", "no connection for "+maxDisconnected.String())
				return fmt.Errorf("socket mode: no connection to Slack for %v", maxDisconnected)
			}
		case ev := <-client.Events:
			if err := s.socketEvent(ctx, client, ev, opt, seen, st); err != nil {
				return err
			}
		}
	}
}

// Bounds of the connection's life: a receiver that has had no
// connection for maxDisconnected, or has made more than maxChurn
// connections in churnWindow (a peer that closes each one at once: slack-go
// reconnects without a pause after an established connection drops),
// stops with an alert; systemd starts it again after RestartSec=.
const (
	maxDisconnected = 10 * time.Minute
	maxChurn        = 20
	churnWindow     = time.Minute
)

// disconnectTap is slack-go's logger: it passes on the reason of each
// disconnect message (without blocking: a reason is dropped when eight
// wait) and discards every other line.
type disconnectTap chan<- string

// receivedPrefix starts slack-go's debug line for each message read from
// the WebSocket (TestDisconnectReasons fails if a new slack-go changes it).
const receivedPrefix = "Received WebSocket message: "

func (t disconnectTap) Output(_ int, line string) error {
	msg, ok := strings.CutPrefix(line, receivedPrefix)
	if !ok {
		return nil
	}
	if r, ok := parseDisconnect([]byte(strings.TrimSuffix(msg, "\n"))); ok {
		select {
		case t <- r:
		default:
		}
	}
	return nil
}

// parseDisconnect returns the reason of a disconnect message (Slack's
// refresh_requested, warning, link_disabled; "" when it gives none, or
// another word, bounded): the message is the peer's, so only a JSON
// object of type "disconnect" with a string reason counts.
//
// slack-go matches JSON keys without regard to case and the line it logs
// is re-encoded with its keys sorted, so a message with "type" and "Type"
// could read as a disconnect here and as something else there: a key
// that is "type" or "reason" in another case is refused.
func parseDisconnect(msg []byte) (string, bool) {
	var m map[string]json.RawMessage
	if len(msg) > maxEnvelope || json.Unmarshal(msg, &m) != nil {
		return "", false
	}
	for k := range m {
		if l := strings.ToLower(k); (l == "type" || l == "reason") && k != l {
			return "", false
		}
	}
	var typ, reason string
	if json.Unmarshal(m["type"], &typ) != nil || typ != socketmode.RequestTypeDisconnect {
		return "", false
	}
	if r, ok := m["reason"]; ok && json.Unmarshal(r, &reason) != nil {
		return "", false
	}
	return audit.Clean(reason, 40), true
}

// disconnectReason reports why Slack closes the connection: moving it
// (refresh_requested) or about to (warning) is routine; link_disabled
// means an admin turned Socket Mode off for the app, and no command will
// arrive until it is on again: an alert. Other reasons are logged. slack-go reconnects in every
// case; with Socket Mode off that fails, and after maxDisconnected the
// receiver stops (socket_refused).
func (s *Service) disconnectReason(r string) {
	if r == "link_disabled" {
		audit.Alert(s.log, audit.SocketDisabled, "reason", r)
		return
	}
	s.log.Info("socket mode: Slack closes this connection; reconnecting", "reason", r)
}

// socketState is what RunSocket knows of its connection.
type socketState struct {
	connected   bool
	connectedAt time.Time   // the last connection's
	lostAt      time.Time   // when the last one ended (or the start)
	recent      []time.Time // connections in the last churnWindow
}

// ackWait bounds an acknowledgement: Slack wants it within 3 s, and
// slack-go's send blocks while its queue is full and no connection drains
// it (which also stops it from reconnecting, as its events wait here).
const ackWait = 2 * time.Second

// wsDialer dials the WebSocket URL apps.connections.open gives: in
// production only over TLS to Slack's own hosts (slack.com, GovSlack's
// slack-gov.com, and their subdomains), whatever the answer says; in
// test mode (a loopback Web API) also plain ws.
//
// Each dial waits first as p says (nil: no wait): jittered backoff
// between connections, which slack-go does not do after an established
// connection drops.
func wsDialer(d *net.Dialer, production bool, p *pacer) *websocket.Dialer {
	return &websocket.Dialer{Proxy: nil, HandshakeTimeout: 10 * time.Second, WriteBufferSize: 32 << 10,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if production {
				return nil, errors.New("refusing a Socket Mode URL without TLS")
			}
			if err := p.wait(ctx); err != nil {
				return nil, err
			}
			return d.DialContext(ctx, network, addr)
		},
		NetDialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if production && !slackHost(host) {
				return nil, fmt.Errorf("refusing a Socket Mode URL on %q, not Slack's", host)
			}
			if err := p.wait(ctx); err != nil {
				return nil, err
			}
			td := &tls.Dialer{NetDialer: d, Config: &tls.Config{ServerName: host, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}}
			return td.DialContext(ctx, network, addr)
		},
	}
}

// pacer spaces the WebSocket connections: the first after a quiet
// spell at once, then each one waits base, 2 base, 4 base… up to max,
// each with ±50 % jitter, until no connection was made for quiet.
type pacer struct {
	base, max, quiet time.Duration
	mu               sync.Mutex
	last             time.Time
	streak           int
	now              func() time.Time
	jitter           func() float64 // in [0, 1)
	sleep            func(context.Context, time.Duration) error
}

func newPacer() *pacer {
	return &pacer{base: time.Second, max: time.Minute, quiet: 5 * time.Minute, now: time.Now, jitter: rand.Float64,
		sleep: func(ctx context.Context, d time.Duration) error {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}}
}

// delay returns how long the next connection waits, and counts it.
func (p *pacer) delay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if p.last.IsZero() || now.Sub(p.last) > p.quiet {
		p.streak = 0
	}
	p.last = now
	p.streak++
	if p.streak == 1 {
		return 0
	}
	d := p.base << min(p.streak-2, 16)
	if d > p.max || d <= 0 {
		d = p.max
	}
	return time.Duration(float64(d) * (0.5 + p.jitter()))
}

func (p *pacer) wait(ctx context.Context) error {
	if p == nil {
		return nil
	}
	if d := p.delay(); d > 0 {
		return p.sleep(ctx, d)
	}
	return nil
}

// slackHost reports whether host is Slack's: slack.com or slack-gov.com,
// or a subdomain of either.
func slackHost(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, d := range []string{"slack.com", "slack-gov.com"} {
		if host == d || strings.HasSuffix(host, "."+d) {
			return true
		}
	}
	return false
}

// socketEvent handles one event of the Socket Mode client; an error stops
// the receiver.
func (s *Service) socketEvent(ctx context.Context, client *socketmode.Client, ev socketmode.Event, opt SocketOptions, seen *envelopeCache, st *socketState) error {
	switch ev.Type {
	case socketmode.EventTypeConnecting:
		if st.connected {
			st.connected, st.lostAt = false, time.Now()
		}
		s.log.Info("socket mode connecting")
	case socketmode.EventTypeConnected:
		now := time.Now()
		st.connected, st.connectedAt = true, now
		st.recent = append(slices.DeleteFunc(st.recent, func(t time.Time) bool { return now.Sub(t) > churnWindow }), now)
		audit.Event(s.log, audit.SocketConnected)
		if len(st.recent) > maxChurn {
			audit.Alert(s.log, audit.SocketRefused, "reason", fmt.Sprintf("%d connections in %v: each one closed at once", len(st.recent), churnWindow))
			return fmt.Errorf("socket mode: %d connections in %v", len(st.recent), churnWindow)
		}
	case socketmode.EventTypeErrorWriteFailed, socketmode.EventTypeIncomingError, socketmode.EventTypeConnectionError:
		if ctx.Err() != nil {
			// Stopping: the connection (or the request for one) ends
			// under the reader; nothing failed.
			return nil
		}
		if ev.Type == socketmode.EventTypeConnectionError {
			s.log.Warn("socket mode connection failed; retrying", "err", fmt.Sprint(ev.Data))
			return nil
		}
		s.log.Warn("socket mode connection error", "event", string(ev.Type), "err", audit.Clean(fmt.Sprint(ev.Data), 200))
	case socketmode.EventTypeInvalidAuth:
		// RunContext returns next, and RunSocket alerts.
		s.log.Warn("socket mode: Slack refused the app-level token")
	case socketmode.EventTypeHello:
		if ev.Request != nil && ev.Request.NumConnections > opt.Connections {
			// Slack counts the app's open connections: more than this
			// receiver opened means another client holds the app token.
			audit.Alert(s.log, audit.SocketExtraConnection, "connections", ev.Request.NumConnections, "ours", opt.Connections)
		}
	case socketmode.EventTypeSlashCommand:
		if ev.Request == nil {
			return nil
		}
		if inputHook != nil {
			inputHook(string(ev.Request.Payload))
		}
		s.envelope(ctx, client, ev.Request.EnvelopeID, ev.Request.Payload, ev.Request.RetryAttempt, seen)
	case socketmode.EventTypeErrorBadMessage:
		// slack-go could not read it (a field of the wrong JSON type): if
		// it is an envelope, answer it as one, which refuses it.
		bad, _ := ev.Data.(*socketmode.ErrorBadMessage)
		if bad == nil {
			return nil
		}
		if inputHook != nil {
			inputHook(string(bad.Message))
		}
		var env struct {
			Type       string          `json:"type"`
			EnvelopeID string          `json:"envelope_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		if json.Unmarshal(bad.Message, &env) == nil && env.Type == socketmode.RequestTypeSlashCommands && validEnvelopeID(env.EnvelopeID) {
			s.envelope(ctx, client, env.EnvelopeID, env.Payload, 0, seen)
			return nil
		}
		audit.Event(s.log, audit.Refused, "reason", "bad_envelope")
	case socketmode.EventTypeInteractive:
		if ev.Request != nil {
			s.interaction(ctx, client, ev.Request.EnvelopeID, ev.Request.Payload, seen)
		}
	case socketmode.EventTypeEventsAPI:
		// The manifest subscribes to none; acknowledge, do nothing.
		if ev.Request != nil {
			actx, cancel := context.WithTimeout(ctx, ackWait)
			client.AckCtx(actx, ev.Request.EnvelopeID, nil)
			cancel()
		}
		audit.Event(s.log, audit.Refused, "reason", "unexpected_envelope", "type", string(ev.Type))
	}
	return nil
}

// envelope answers one slash command envelope: a duplicate (the same
// envelope ID again, as Slack redelivers one it did not see acknowledged)
// gets the first reply and no second job; a new one is parsed and handled
// (durably) before it is acknowledged.
func (s *Service) envelope(ctx context.Context, client *socketmode.Client, id string, payload json.RawMessage, retry int, seen *envelopeCache) {
	if !validEnvelopeID(id) {
		audit.Event(s.log, audit.Refused, "reason", "bad_envelope")
		return
	}
	reply, dup := seen.get(id)
	if dup {
		audit.Event(s.log, audit.Duplicate, "envelope", id, "retry", retry)
	} else {
		reply = s.socketCommand(payload, id)
		seen.put(id, reply)
	}
	if len(reply) > maxAckPayload {
		reply = reply[:maxAckPayload]
	}
	actx, cancel := context.WithTimeout(ctx, ackWait)
	defer cancel()
	if err := client.AckCtx(actx, id, map[string]string{"response_type": "ephemeral", "text": reply}); err != nil {
		// Slack shows the user an error; a redelivery gets this reply.
		s.log.Error("couldn't acknowledge a Socket Mode envelope", "envelope", id, "err", err)
	}
}

// interaction handles a button click envelope: parsed and made durable
// (a redelivery, by its envelope ID, makes no second request) before the
// acknowledgement, which carries nothing: the courier answers at the
// click's response_url.
func (s *Service) interaction(ctx context.Context, client *socketmode.Client, id string, payload json.RawMessage, seen *envelopeCache) {
	if !validEnvelopeID(id) {
		audit.Event(s.log, audit.Refused, "reason", "bad_envelope")
		return
	}
	if inputHook != nil {
		inputHook(string(payload))
	}
	if _, dup := seen.get(id); dup {
		audit.Event(s.log, audit.Duplicate, "envelope", id)
	} else {
		if a, err := slackreq.ParseAction(payload); err != nil {
			audit.Event(s.log, audit.Refused, "reason", "bad_interaction", "err", audit.Clean(err.Error(), 200))
		} else {
			s.handleAction(a, "envelope "+id)
		}
		seen.put(id, "")
	}
	actx, cancel := context.WithTimeout(ctx, ackWait)
	defer cancel()
	if err := client.AckCtx(actx, id, nil); err != nil {
		s.log.Error("couldn't acknowledge a Socket Mode envelope", "envelope", id, "err", err)
	}
}

// socketCommand parses a slash command payload and handles it, returning
// the ephemeral reply. The job's ID comes from the envelope's (id): a
// redelivery to a receiver started since queues no second job.
func (s *Service) socketCommand(payload json.RawMessage, id string) string {
	form, err := payloadForm(payload)
	if err == nil && len(form.Encode()) > slackreq.MaxBodyBytes {
		// The HTTP mode's body cap: the same command either way.
		err = errors.New("payload larger than an HTTP body may be")
	}
	if err == nil {
		var c *slackreq.Command
		if c, err = slackreq.ParseCommand([]byte(form.Encode())); err == nil {
			return s.handle(c, "envelope "+id)
		}
	}
	audit.Event(s.log, audit.Refused, "reason", "bad_form", "err", audit.Clean(err.Error(), 200))
	return "This request is malformed."
}

// payloadForm turns a slash command payload, a JSON object whose values
// are strings (or booleans, as is_enterprise_install may be), into the
// form the HTTP body would have been. Anything else is refused: nested
// objects, arrays, numbers, null, a repeated key, more than 64 keys.
func payloadForm(payload json.RawMessage) (url.Values, error) {
	if len(payload) > maxEnvelope {
		return nil, errors.New("payload too large")
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, errors.New("payload is not a JSON object")
	}
	form := url.Values{}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := k.(string)
		if key == "" || len(form) >= 64 {
			return nil, errors.New("bad payload key")
		}
		if form.Has(key) {
			return nil, fmt.Errorf("payload field %s repeated", key)
		}
		v, err := dec.Token()
		if err != nil {
			return nil, err
		}
		switch v := v.(type) {
		case string:
			form.Set(key, v)
		case bool:
			form.Set(key, strconv.FormatBool(v))
		default:
			return nil, fmt.Errorf("payload field %s is not a string", key)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the payload")
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("trailing data after the payload")
	}
	return form, nil
}

// validEnvelopeID accepts what Slack's envelope IDs look like (a UUID):
// letters, digits and dashes, at most 64.
func validEnvelopeID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// envelopeCache remembers the replies to the last envelopes, bounded in
// number and age.
type envelopeCache struct {
	mu    sync.Mutex
	max   int
	ttl   time.Duration
	now   func() time.Time
	m     map[string]seenReply
	order []string
}

type seenReply struct {
	reply string
	at    time.Time
}

func newEnvelopeCache(max int, ttl time.Duration) *envelopeCache {
	return &envelopeCache{max: max, ttl: ttl, now: time.Now, m: map[string]seenReply{}}
}

func (c *envelopeCache) get(id string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.m[id]
	if !ok || c.now().Sub(r.at) > c.ttl {
		return "", false
	}
	return r.reply, true
}

func (c *envelopeCache) put(id, reply string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for len(c.order) > 0 && (len(c.order) >= c.max || now.Sub(c.m[c.order[0]].at) > c.ttl) {
		delete(c.m, c.order[0])
		c.order = c.order[1:]
	}
	c.m[id] = seenReply{reply: reply, at: now}
	c.order = append(c.order, id)
}
