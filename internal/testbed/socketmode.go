package testbed

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// SocketMode simulates Slack's Socket Mode for an app: apps.connections.open
// answers an app-level token with a WebSocket URL, where the app gets a
// hello and then slash commands as envelopes, which it must acknowledge
// with the envelope's ID (and may answer with a payload, the ephemeral
// reply) within 3 s. It can also ask the app to reconnect (a disconnect
// envelope), deliver an envelope twice, and count connections as Slack
// does (num_connections in hello).
//
// It listens on a loopback port of its own: the API's base URL (for
// slack-go's OptionAPIURL) is APIURL.
type SocketMode struct {
	*Server
	slack    *Slack
	AppToken string
	AppID    string

	seq     atomic.Int64
	mu      sync.Mutex
	conns   map[*smConn]bool
	waiting map[string]chan json.RawMessage // envelope id -> its ack's payload
	opened  atomic.Int64                    // apps.connections.open calls answered
	// refuse, when set, is the error apps.connections.open answers.
	refuse atomic.Pointer[string]
	// CloseAfterHello makes each connection close right after its hello,
	// as a broken (or hostile) peer might.
	CloseAfterHello atomic.Bool
	// AckWait is how long Deliver and Click wait for an acknowledgement
	// before ErrNoAck. NewSocketMode sets a minute, a hang guard for tests
	// on a loaded machine; Slack itself waits 3 s (SlackAckWait), which
	// the demo uses. Set it before the first delivery.
	AckWait time.Duration
}

// SlackAckWait is how long Slack waits for an envelope's acknowledgement.
const SlackAckWait = 3 * time.Second

// smConn is one app connection; gorilla's Conn allows one writer.
type smConn struct {
	ws *websocket.Conn
	wm sync.Mutex
	// Under SocketMode.mu: its rank among connections opened (newest
	// highest), and whether Disconnect asked it to go.
	seq      int64
	draining bool
}

func (c *smConn) write(v any) error {
	c.wm.Lock()
	defer c.wm.Unlock()
	c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return c.ws.WriteJSON(v)
}

// smPing is how often the simulated Slack pings each connection (slack-go
// reconnects after 30 s without one).
const smPing = 5 * time.Second

// NewSocketMode starts the Socket Mode side of slack, for an app with a
// random app-level token.
func NewSocketMode(slack *Slack) (*SocketMode, error) {
	sm := &SocketMode{slack: slack, AppToken: "xapp-1-A0TESTAPP-1-" + randomSecret(), AppID: "A0TESTAPP",
		conns: map[*smConn]bool{}, waiting: map[string]chan json.RawMessage{}, AckWait: time.Minute}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/apps.connections.open", sm.open)
	mux.HandleFunc("GET /link/", sm.link)
	srv, err := serve(mux)
	if err != nil {
		return nil, err
	}
	sm.Server = srv
	return sm, nil
}

// APIURL is the Web API's base URL, with its trailing slash.
func (sm *SocketMode) APIURL() string { return sm.URL + "/api/" }

// Refuse makes apps.connections.open answer with error code (e.g.
// "invalid_auth"); "" answers again.
func (sm *SocketMode) Refuse(code string) {
	if code == "" {
		sm.refuse.Store(nil)
		return
	}
	sm.refuse.Store(&code)
}

// Opened returns how many connections apps.connections.open handed out.
func (sm *SocketMode) Opened() int64 { return sm.opened.Load() }

func (sm *SocketMode) open(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	answer := func(v any) { json.NewEncoder(w).Encode(v) }
	if r.Header.Get("Authorization") != "Bearer "+sm.AppToken {
		answer(map[string]any{"ok": false, "error": "invalid_auth"})
		return
	}
	if code := sm.refuse.Load(); code != nil {
		answer(map[string]any{"ok": false, "error": *code})
		return
	}
	sm.opened.Add(1)
	ticket := strconv.FormatInt(sm.seq.Add(1), 10)
	answer(map[string]any{"ok": true, "url": "ws" + strings.TrimPrefix(sm.URL, "http") + "/link/?ticket=" + ticket})
}

// upgrader takes any Origin: clients send Slack's own
// (https://api.slack.com), not this server's.
var upgrader = websocket.Upgrader{ReadBufferSize: 32 << 10, WriteBufferSize: 32 << 10,
	CheckOrigin: func(*http.Request) bool { return true }}

func (sm *SocketMode) link(w http.ResponseWriter, r *http.Request) {
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &smConn{ws: ws}
	// The hello goes first, as from Slack: a delivery to the connection,
	// once it is counted, waits for it (c.wm).
	c.wm.Lock()
	sm.mu.Lock()
	c.seq = sm.seq.Add(1)
	sm.conns[c] = true
	n := len(sm.conns)
	sm.mu.Unlock()
	defer func() {
		sm.mu.Lock()
		delete(sm.conns, c)
		sm.mu.Unlock()
		ws.Close()
	}()
	hello := map[string]any{"type": "hello", "num_connections": n,
		"debug_info":      map[string]any{"host": "applink-sim", "approximate_connection_time": 18060},
		"connection_info": map[string]any{"app_id": sm.AppID}}
	ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	err = ws.WriteJSON(hello)
	c.wm.Unlock()
	if err != nil || sm.CloseAfterHello.Load() {
		return
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(smPing)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				c.wm.Lock()
				err := ws.WriteControl(websocket.PingMessage, []byte("ping"), time.Now().Add(5*time.Second))
				c.wm.Unlock()
				if err != nil {
					return
				}
			}
		}
	}()
	ws.SetReadLimit(64 << 10)
	for {
		var ack struct {
			EnvelopeID string          `json:"envelope_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		if err := ws.ReadJSON(&ack); err != nil {
			return
		}
		sm.mu.Lock()
		ch := sm.waiting[ack.EnvelopeID]
		delete(sm.waiting, ack.EnvelopeID)
		sm.mu.Unlock()
		if ch != nil {
			ch <- ack.Payload
		}
	}
}

// Connections returns how many app connections are open.
func (sm *SocketMode) Connections() int {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return len(sm.conns)
}

// live returns how many connections are open and not asked to go.
func (sm *SocketMode) live() int {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	n := 0
	for c := range sm.conns {
		if !c.draining {
			n++
		}
	}
	return n
}

// WaitConnected waits until n connections are open that Disconnect has
// not asked to go.
func (sm *SocketMode) WaitConnected(ctx context.Context, n int) error {
	for sm.live() < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d Socket Mode connections: %w", sm.Connections(), n, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// anyConn returns an open connection: the newest of those Disconnect has
// not asked to go, else the newest.
func (sm *SocketMode) anyConn() *smConn {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	var best *smConn
	for c := range sm.conns {
		if best == nil || (best.draining && !c.draining) || (best.draining == c.draining && c.seq > best.seq) {
			best = c
		}
	}
	return best
}

// Envelope is one slash command as Socket Mode delivers it.
type Envelope struct {
	ID         string
	ResponseID string // the id of its response URL (Slack.Messages)
	payload    map[string]string
}

// Envelope builds the envelope of a slash command: the payload holds the
// fields of the HTTP form body (Slack.Body), as strings.
func (sm *SocketMode) Envelope(inv Invocation) (*Envelope, error) {
	body, responseID := sm.slack.Body(inv)
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, err
	}
	p := map[string]string{}
	for k, v := range form {
		p[k] = v[0]
	}
	return &Envelope{ID: fmt.Sprintf("%08x-sim-%d", time.Now().UnixNano()&0xffffffff, sm.seq.Add(1)), ResponseID: responseID, payload: p}, nil
}

// ErrNoAck is returned when the app did not acknowledge an envelope
// within AckWait: Slack would then show the user an error (and retry some
// kinds of envelopes, never slash commands).
var ErrNoAck = errors.New("no acknowledgement in time")

// Deliver sends e over a connection (retry > 0 marks a redelivery) and
// waits up to AckWait for its acknowledgement; it returns the ephemeral
// reply's text, if the acknowledgement carried one.
func (sm *SocketMode) Deliver(ctx context.Context, e *Envelope, retry int) (reply string, err error) {
	c := sm.anyConn()
	if c == nil {
		return "", errors.New("no Socket Mode connection")
	}
	ch := make(chan json.RawMessage, 1)
	sm.mu.Lock()
	sm.waiting[e.ID] = ch
	sm.mu.Unlock()
	defer func() {
		sm.mu.Lock()
		delete(sm.waiting, e.ID)
		sm.mu.Unlock()
	}()
	msg := map[string]any{"envelope_id": e.ID, "type": "slash_commands", "accepts_response_payload": true, "payload": e.payload}
	if retry > 0 {
		msg["retry_attempt"], msg["retry_reason"] = retry, "timeout"
	}
	if err := c.write(msg); err != nil {
		return "", err
	}
	select {
	case p := <-ch:
		if len(p) == 0 || string(p) == "null" {
			return "", nil
		}
		var r struct {
			ResponseType string `json:"response_type"`
			Text         string `json:"text"`
		}
		if err := json.Unmarshal(p, &r); err != nil {
			return "", fmt.Errorf("ack payload is not a message: %q", p)
		}
		if r.ResponseType != "" && r.ResponseType != "ephemeral" {
			return "", fmt.Errorf("reply is %q, not ephemeral", r.ResponseType)
		}
		return r.Text, nil
	case <-time.After(sm.AckWait):
		return "", fmt.Errorf("%w (%v)", ErrNoAck, sm.AckWait)
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Send delivers inv as a new envelope, as Slack does when a user types a
// slash command; it returns the reply and the response URL id.
func (sm *SocketMode) Send(ctx context.Context, inv Invocation) (reply, responseID string, err error) {
	e, err := sm.Envelope(inv)
	if err != nil {
		return "", "", err
	}
	reply, err = sm.Deliver(ctx, e, 0)
	return reply, e.ResponseID, err
}

// Disconnect asks every connection to reconnect, as Slack does before it
// moves a connection (reason "refresh_requested"; also "warning",
// "link_disabled"), then closes them after grace.
func (sm *SocketMode) Disconnect(reason string, grace time.Duration) {
	sm.mu.Lock()
	conns := make([]*smConn, 0, len(sm.conns))
	for c := range sm.conns {
		c.draining = true
		conns = append(conns, c)
	}
	sm.mu.Unlock()
	for _, c := range conns {
		c.write(map[string]any{"type": "disconnect", "reason": reason,
			"debug_info": map[string]any{"host": "applink-sim"}})
	}
	if grace >= 0 {
		time.AfterFunc(grace, func() {
			for _, c := range conns {
				c.ws.Close()
			}
		})
	}
}

// ListeningPorts returns the TCP addresses process pid listens on
// ("127.0.0.1:3000"), found by
// matching the process's socket descriptors with the listening entries of
// its network namespace's tables. A process with no socket at all is an
// error: the check would show nothing.
func ListeningPorts(pid int) ([]string, error) {
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	if len(inodes) == 0 {
		return nil, fmt.Errorf("process %d has no socket at all", pid)
	}
	var ports []string
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			// local address, state (0A: LISTEN), inode
			if len(fields) > 9 && fields[3] == "0A" && inodes[fields[9]] {
				ports = append(ports, procAddr(fields[1]))
			}
		}
		f.Close()
	}
	return ports, nil
}

// procAddr turns an address of /proc/net/tcp{,6} ("0100007F:0BB8": the
// address in 32-bit words of host order, the port in hex) into
// "127.0.0.1:3000"; what it cannot read it returns as is.
func procAddr(a string) string {
	host, port, ok := strings.Cut(a, ":")
	p, err := strconv.ParseUint(port, 16, 16)
	raw, herr := hex.DecodeString(host)
	if !ok || err != nil || herr != nil || (len(raw) != 4 && len(raw) != 16) {
		return a
	}
	for i := 0; i < len(raw); i += 4 { // each word from little-endian
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	ip, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(ip.Unmap(), uint16(p)).String()
}
