package testbed

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// WebAPI simulates the part of Slack's Web API that a bot token uses to
// talk to users: conversations.open (a DM with a user), chat.postMessage
// and chat.update (status messages), and the external file upload
// (files.getUploadURLExternal, a POST of the bytes to the upload URL,
// files.completeUploadExternal). It speaks Slack's wire format, so that
// slack-go's client works against it unchanged (slack.OptionAPIURL with
// APIURL).
//
// Every call must carry the bot token: in an Authorization: Bearer
// header, or, in a form-encoded body, as the token argument, which is
// how slack-go sends it ("Tokens should be passed as an HTTP
// Authorization header or alternatively, as a POST parameter",
// https://docs.slack.dev/reference/methods/chat.postMessage). A JSON
// body's token is ignored, as Slack ignores it. Without a token the
// answer is not_authed, with another one invalid_auth.
//
// It records every call (Calls), the messages as they now stand
// (Messages), the files (Files) and every breach of Slack's rate limits
// (Violations: they are counted, not refused, so a test can assert there
// were none). Faults are injected with RateLimit, Fail, Hang and Outage.
// Its methods are safe for concurrent use; the exported fields are set
// before the first request and not changed after.
//
// It listens on a loopback port of its own.
//
// BUG(testbed): Only DMs exist: chat.postMessage to a public or private
// channel answers channel_not_found, and conversations.open with more
// than one user (a multi-person DM) is not simulated. A shared file adds
// no message to Messages, and only the first channel of
// files.completeUploadExternal's channels is kept.
type WebAPI struct {
	*Server
	slack    *Slack
	BotToken string

	// Now is the clock of the calls' times, the messages' ts and the
	// rate-limit accounting (time.Now when nil); a test sets its own to
	// make the accounting independent of the machine's speed.
	Now func() time.Time
	// PostBurst is how many chat.postMessage calls to one channel may
	// come at once before the 1-per-second limit counts a violation (3).
	PostBurst int
	// MaxUpload caps the bytes of one uploaded file (64 MiB); more is
	// answered 413.
	MaxUpload int64

	done      chan struct{} // closed by Close: hung calls end
	closeOnce sync.Once

	mu         sync.Mutex
	changed    chan struct{} // closed and replaced on every change
	seq        int
	lastTS     int64             // the latest ts handed out, in µs
	dms        map[string]string // user -> DM channel
	dmUser     map[string]string // DM channel -> user
	messages   map[string][]*Msg // channel -> its messages, oldest first
	files      map[string]*File
	fileOrder  []string
	calls      []Call
	violations []string
	buckets    map[string]*postBucket // channel -> chat.postMessage allowance
	windows    map[string][]time.Time // method -> its calls in the last minute
	outage     bool
	hangs      map[string]int
	fails      map[string]webFault
	rateLimits map[string]webFault
}

// Call is one request the simulated API received.
type Call struct {
	Method  string    // "chat.postMessage", …; "upload" for a file's bytes
	Time    time.Time // when it arrived, by WebAPI.Now
	Channel string    // the channel it was about (a DM for a user ID), if any
	TS      string    // the message's ts (chat.postMessage, chat.update)
	Status  int       // the HTTP status answered; 0 for a call left hanging
	Error   string    // Slack's error code answered ("" when ok)
}

// Msg is a message as it stands after its updates.
type Msg struct {
	TS      string
	Text    string
	Blocks  json.RawMessage // the blocks array, nil when it has none
	Updates int             // chat.update calls that changed it
	Texts   []string        // its text after the post and after each update
}

// File is a file an upload URL was handed out for.
type File struct {
	ID             string
	Name           string // the filename given to files.getUploadURLExternal
	Title          string // the title given when completed (Name by default)
	Length         int64  // the length declared to files.getUploadURLExternal
	Uploaded       bool   // its bytes arrived at the upload URL
	Size           int64  // how many bytes arrived
	SHA256         string // their SHA-256, in hex
	Completed      bool   // files.completeUploadExternal finished it
	Channel        string // where it was shared; "" while private
	InitialComment string
}

type webFault struct {
	n          int // calls left; < 0: until cleared
	status     int
	retryAfter time.Duration
}

type postBucket struct {
	tokens float64
	at     time.Time
}

const (
	// maxAPIBody caps an API call's body.
	maxAPIBody = 1 << 20
	// maxMsgText is the longest text a message keeps: Slack truncates
	// longer ones and answers a message_truncated warning
	// (https://api.slack.com/changelog/2018-04-truncating-really-long-messages).
	// It is a violation here too, so that a test notices.
	maxMsgText = 40000
	// maxMsgBlocks is the most blocks a message may have
	// (https://docs.slack.dev/reference/block-kit/blocks).
	maxMsgBlocks = 50

	simBotUser = "U0SIMBOT"
	simBotID   = "B0SIMBOT"
)

// tierLimits are the per-minute allowances of the rate-limit tiers of the
// simulated methods, each from its method's reference page (Tier 3: 50+
// per minute, Tier 4: 100+ per minute,
// https://docs.slack.dev/apis/web-api/rate-limits). Slack applies them
// "per API method per workspace per app", that is per token here; more
// calls than that in any 60 s are counted as violations. chat.postMessage
// has its own limit (postAllowance).
var tierLimits = map[string]int{
	"chat.update":                  50,  // Tier 3, https://docs.slack.dev/reference/methods/chat.update
	"conversations.open":           50,  // Tier 3, https://docs.slack.dev/reference/methods/conversations.open
	"files.getUploadURLExternal":   100, // Tier 4, https://docs.slack.dev/reference/methods/files.getUploadURLExternal
	"files.completeUploadExternal": 100, // Tier 4, https://docs.slack.dev/reference/methods/files.completeUploadExternal
}

// NewWebAPI starts the Web API side of slack, for a bot with a random
// token.
func NewWebAPI(slack *Slack) (*WebAPI, error) {
	a := &WebAPI{slack: slack, BotToken: "xoxb-" + randomSecret(), PostBurst: 3, MaxUpload: 64 << 20,
		done: make(chan struct{}), changed: make(chan struct{}),
		dms: map[string]string{}, dmUser: map[string]string{}, messages: map[string][]*Msg{},
		files: map[string]*File{}, buckets: map[string]*postBucket{}, windows: map[string][]time.Time{},
		hangs: map[string]int{}, fails: map[string]webFault{}, rateLimits: map[string]webFault{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/{method}", a.api)
	mux.HandleFunc("POST /upload/{id}", a.upload)
	srv, err := serve(mux)
	if err != nil {
		return nil, err
	}
	a.Server = srv
	return a, nil
}

// APIURL is the Web API's base URL, with its trailing slash.
func (a *WebAPI) APIURL() string { return a.URL + "/api/" }

// Close stops the server; calls left hanging end without an answer.
func (a *WebAPI) Close() {
	a.closeOnce.Do(func() { close(a.done) })
	a.Server.Close()
}

func (a *WebAPI) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// RateLimit makes the next n calls of method (n < 0: every call until
// cleared with n = 0) answer as Slack does when an app goes over a
// limit: HTTP 429 with a Retry-After header of whole seconds (retryAfter
// rounded up, at least 1) and {"ok":false,"error":"ratelimited"}
// (https://docs.slack.dev/apis/web-api/rate-limits). Methods are named
// as in the API ("chat.postMessage"); "upload" is the upload URL. It
// applies to calls with a valid token only; Fail, Hang and Outage to any.
func (a *WebAPI) RateLimit(method string, n int, retryAfter time.Duration) {
	a.setFault(a.rateLimits, method, webFault{n: n, retryAfter: retryAfter})
}

// Fail makes the next n calls of method (n < 0: every call until
// cleared with n = 0) answer HTTP status (500, 503, …) with a text body,
// as Slack's front ends do.
func (a *WebAPI) Fail(method string, n int, status int) {
	a.setFault(a.fails, method, webFault{n: n, status: status})
}

// Hang makes the next n calls of method (n < 0: every call until cleared
// with n = 0) get no answer at all: each ends when its client gives up
// (its request's context ends) or the server closes. Its Call has
// Status 0.
func (a *WebAPI) Hang(method string, n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n == 0 {
		delete(a.hangs, method)
		return
	}
	a.hangs[method] = n
}

// Outage makes every call answer 503 while on.
func (a *WebAPI) Outage(on bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.outage = on
}

func (a *WebAPI) setFault(m map[string]webFault, method string, f webFault) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if f.n == 0 {
		delete(m, method)
		return
	}
	m[method] = f
}

// takeFault uses up one of a fault's calls; a.mu is held.
func takeFault(m map[string]webFault, method string) (webFault, bool) {
	f, ok := m[method]
	if !ok {
		return f, false
	}
	if f.n > 0 {
		f.n--
		if f.n == 0 {
			delete(m, method)
		} else {
			m[method] = f
		}
	}
	return f, true
}

// Calls returns the calls received so far, oldest first.
func (a *WebAPI) Calls() []Call {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Call(nil), a.calls...)
}

// Messages returns the messages of a channel, as they stand now, oldest
// first.
func (a *WebAPI) Messages(channel string) []Msg {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Msg
	for _, m := range a.messages[channel] {
		c := *m
		c.Blocks = append(json.RawMessage(nil), m.Blocks...)
		c.Texts = append([]string(nil), m.Texts...)
		out = append(out, c)
	}
	return out
}

// DMOf returns the ID of the bot's DM with user, the one
// conversations.open answers. Like Slack's, it exists whether or not the
// bot opened it.
func (a *WebAPI) DMOf(user string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	dm, _ := a.dmLocked(user)
	return dm
}

// Files returns the files upload URLs were handed out for, in that
// order.
func (a *WebAPI) Files() []File {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]File, 0, len(a.fileOrder))
	for _, id := range a.fileOrder {
		out = append(out, *a.files[id])
	}
	return out
}

// Violations returns, each described, the breaches so far of Slack's
// rate limits, and uploads whose size was not the length declared.
func (a *WebAPI) Violations() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.violations...)
}

// WaitFor waits until ok(a) holds, checking again after every change
// (a call, a message, a file, a violation); ok may call a's methods.
func (a *WebAPI) WaitFor(ctx context.Context, ok func(*WebAPI) bool) error {
	for {
		a.mu.Lock()
		changed := a.changed
		a.mu.Unlock()
		if ok(a) {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("web API never reached the state waited for: %w", ctx.Err())
		}
	}
}

// recordLocked adds c to the calls and wakes the waiters; a.mu is held.
func (a *WebAPI) recordLocked(c Call) {
	a.calls = append(a.calls, c)
	a.changedLocked()
}

func (a *WebAPI) changedLocked() {
	close(a.changed)
	a.changed = make(chan struct{})
}

func (a *WebAPI) violateLocked(format string, args ...any) {
	a.violations = append(a.violations, fmt.Sprintf(format, args...))
}

// dmLocked returns user's DM, making it if need be, and whether it was
// there already; "" for what is not a user ID. a.mu is held.
func (a *WebAPI) dmLocked(user string) (string, bool) {
	if !isUserID(user) {
		return "", false
	}
	if dm, ok := a.dms[user]; ok {
		return dm, true
	}
	a.seq++
	dm := fmt.Sprintf("D0SIM%05d", a.seq)
	a.dms[user], a.dmUser[dm] = dm, user
	return dm, false
}

// isUserID reports whether s looks like a user ID (U… or, in Enterprise
// Grid, W…).
func isUserID(s string) bool {
	if len(s) < 3 || (s[0] != 'U' && s[0] != 'W') {
		return false
	}
	for _, r := range s[1:] {
		if (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// nextTSLocked returns a message ts for now, later than any before it,
// in Slack's form (seconds.microseconds). a.mu is held.
func (a *WebAPI) nextTSLocked(now time.Time) string {
	us := now.UnixMicro()
	if us <= a.lastTS {
		us = a.lastTS + 1
	}
	a.lastTS = us
	return fmt.Sprintf("%d.%06d", us/1e6, us%1e6)
}

// postAllowanceLocked counts a chat.postMessage to channel at now against
// Slack's limit: "chat.postMessage generally allows posting one message
// per second per channel", "Posting messages: 1 per second, short bursts
// >1 allowed" (https://docs.slack.dev/apis/web-api/rate-limits). It is a
// token bucket per channel, PostBurst deep, refilled at 1 per second; a
// post finding it empty is a violation (and takes nothing from it). a.mu
// is held.
func (a *WebAPI) postAllowanceLocked(channel string, now time.Time) {
	burst := float64(max(a.PostBurst, 1))
	b := a.buckets[channel]
	if b == nil {
		b = &postBucket{tokens: burst, at: now}
		a.buckets[channel] = b
	}
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(burst, b.tokens+d.Seconds())
		b.at = now
	}
	if b.tokens < 1 {
		a.violateLocked("chat.postMessage to %s at %s: over 1 per second per channel (burst %d)",
			channel, now.Format("15:04:05.000"), int(burst))
		return
	}
	b.tokens--
}

// tierLocked counts a call of method at now against its tier's
// per-minute allowance (tierLimits). a.mu is held.
func (a *WebAPI) tierLocked(method string, now time.Time) {
	limit, ok := tierLimits[method]
	if !ok {
		return
	}
	w := a.windows[method]
	i := 0
	for i < len(w) && !w[i].After(now.Add(-time.Minute)) {
		i++
	}
	w = append(w[i:], now)
	a.windows[method] = w
	if len(w) > limit {
		a.violateLocked("%s at %s: %d calls in a minute, over its tier's %d", method, now.Format("15:04:05.000"), len(w), limit)
	}
}

// answerJSON writes v as a JSON answer.
func answerJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func apiError(code string) map[string]any { return map[string]any{"ok": false, "error": code} }

// errUnsupportedBody is a body neither form-encoded nor JSON.
var errUnsupportedBody = errors.New("body is neither form-encoded nor JSON")

// readAPIArgs reads a method's arguments from a body that has been read
// whole: form-encoded, or a JSON object, whose values that are not
// strings keep their JSON text (as a form would carry them). The
// second result tells whether it was JSON.
func readAPIArgs(contentType string, body []byte) (map[string]string, bool, error) {
	args := map[string]string{}
	if len(body) == 0 {
		return args, false, nil
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, false, errUnsupportedBody
	}
	switch mt {
	case "application/x-www-form-urlencoded":
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, false, err
		}
		for k, v := range form {
			args[k] = v[0]
		}
		return args, false, nil
	case "application/json":
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(body, &obj); err != nil {
			return nil, true, err
		}
		for k, raw := range obj {
			var s string
			if json.Unmarshal(raw, &s) == nil {
				args[k] = s
			} else {
				args[k] = string(raw)
			}
		}
		delete(args, "token") // Slack takes a JSON body's token from the header only
		return args, true, nil
	}
	return nil, false, errUnsupportedBody
}

// authError returns the error code for a request's credentials: "" for
// the bot token, in the Authorization header or, when allowed, the form's
// token argument.
func (a *WebAPI) authError(r *http.Request, formToken string) string {
	tok, ok := "", false
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok = strings.CutPrefix(h, "Bearer ")
		if !ok {
			return "invalid_auth"
		}
	} else if formToken != "" {
		tok = formToken
	} else {
		return "not_authed"
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(a.BotToken)) != 1 {
		return "invalid_auth"
	}
	return ""
}

// infraFault applies an outage, a hang or a failure set for c's method,
// and reports whether it did (the request is then answered, or
// abandoned). The request's body has been read.
func (a *WebAPI) infraFault(w http.ResponseWriter, r *http.Request, c Call) bool {
	a.mu.Lock()
	status := 0
	switch f, failing := a.fails[c.Method]; {
	case a.outage:
		status = http.StatusServiceUnavailable
	case a.hangs[c.Method] != 0:
		if a.hangs[c.Method] > 0 {
			if a.hangs[c.Method]--; a.hangs[c.Method] == 0 {
				delete(a.hangs, c.Method)
			}
		}
		a.recordLocked(c) // Status 0: no answer
		a.mu.Unlock()
		select {
		case <-r.Context().Done():
		case <-a.done:
		}
		// End the exchange without a response: net/http closes the
		// connection quietly for this value.
		panic(http.ErrAbortHandler)
	case failing:
		takeFault(a.fails, c.Method)
		status = f.status
	}
	if status == 0 {
		a.mu.Unlock()
		return false
	}
	c.Status = status
	a.recordLocked(c)
	a.mu.Unlock()
	http.Error(w, http.StatusText(status), status)
	return true
}

// rateLimited answers 429 if a rate limit is set for c's method.
func (a *WebAPI) rateLimited(w http.ResponseWriter, c Call) bool {
	a.mu.Lock()
	f, ok := takeFault(a.rateLimits, c.Method)
	if ok {
		c.Status, c.Error = http.StatusTooManyRequests, "ratelimited"
		a.recordLocked(c)
	}
	a.mu.Unlock()
	if !ok {
		return false
	}
	secs := max(int64((f.retryAfter+time.Second-1)/time.Second), 1)
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	answerJSON(w, http.StatusTooManyRequests, apiError("ratelimited"))
	return true
}

// webMethods are the simulated API methods; each runs with a.mu held, may
// fill in c's Channel and TS, and returns the answer.
var webMethods = map[string]func(a *WebAPI, args map[string]string, c *Call) map[string]any{
	"conversations.open":           (*WebAPI).conversationsOpen,
	"chat.postMessage":             (*WebAPI).chatPostMessage,
	"chat.update":                  (*WebAPI).chatUpdate,
	"files.getUploadURLExternal":   (*WebAPI).getUploadURLExternal,
	"files.completeUploadExternal": (*WebAPI).completeUploadExternal,
}

func (a *WebAPI) api(w http.ResponseWriter, r *http.Request) {
	c := Call{Method: r.PathValue("method"), Time: a.now()}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAPIBody))
	if err != nil {
		c.Status = http.StatusRequestEntityTooLarge
		a.mu.Lock()
		a.recordLocked(c)
		a.mu.Unlock()
		http.Error(w, "request too large", c.Status)
		return
	}
	args, isJSON, argsErr := readAPIArgs(r.Header.Get("Content-Type"), body)
	if args != nil {
		c.Channel = args["channel"]
		if c.Channel == "" {
			c.Channel = args["channel_id"]
		}
	}
	if a.infraFault(w, r, c) {
		return
	}
	formToken := ""
	if !isJSON && args != nil {
		formToken = args["token"]
		delete(args, "token")
	}
	code := a.authError(r, formToken)
	if code == "" && a.rateLimited(w, c) {
		return
	}
	method, known := webMethods[c.Method]
	var resp map[string]any
	a.mu.Lock()
	switch {
	case code != "":
		resp = apiError(code)
	case !known:
		resp = apiError("unknown_method")
	case argsErr != nil && isJSON:
		resp = apiError("invalid_json")
	case argsErr != nil:
		resp = apiError("invalid_form_data")
	default:
		a.tierLocked(c.Method, c.Time)
		resp = method(a, args, &c)
	}
	c.Status = http.StatusOK
	c.Error, _ = resp["error"].(string)
	a.recordLocked(c)
	a.mu.Unlock()
	answerJSON(w, http.StatusOK, resp)
}

// conversationsOpen answers conversations.open
// (https://docs.slack.dev/reference/methods/conversations.open) for one
// user, or resumes a DM by its channel.
func (a *WebAPI) conversationsOpen(args map[string]string, c *Call) map[string]any {
	var dm, user string
	already := false
	switch users := args["users"]; {
	case users == "" && args["channel"] != "":
		dm, user = args["channel"], a.dmUser[args["channel"]]
		if user == "" {
			return apiError("channel_not_found")
		}
		already = true
	case users == "":
		return apiError("users_list_not_supplied")
	case strings.Contains(users, ","):
		return apiError("method_not_supported_for_channel_type") // no MPIMs here
	default:
		user = users
		if dm, already = a.dmLocked(user); dm == "" {
			return apiError("user_not_found")
		}
	}
	c.Channel = dm
	ch := map[string]any{"id": dm}
	if args["return_im"] == "true" {
		ch = map[string]any{"id": dm, "created": 1700000000, "is_im": true, "is_org_shared": false,
			"user": user, "is_user_deleted": false, "priority": 0}
	}
	resp := map[string]any{"ok": true, "channel": ch}
	if already {
		resp["no_op"], resp["already_open"] = true, true
	}
	return resp
}

// msgContent checks a message's text and blocks; blocks is nil without the
// argument, and an empty array removes a message's blocks.
func msgContent(args map[string]string) (text string, hasText bool, blocks json.RawMessage, hasBlocks bool, code string) {
	text, hasText = args["text"]
	raw, hasBlocks := args["blocks"]
	if hasBlocks {
		var list []json.RawMessage
		if json.Unmarshal([]byte(raw), &list) != nil {
			return "", false, nil, false, "invalid_blocks_format"
		}
		if len(list) > maxMsgBlocks {
			return "", false, nil, false, "invalid_blocks"
		}
		if len(list) > 0 {
			blocks = json.RawMessage(raw)
		}
	}
	if text == "" && len(blocks) == 0 && args["attachments"] == "" {
		code = "no_text"
	}
	return text, hasText, blocks, hasBlocks, code
}

// truncateLocked cuts a message's text to maxMsgText characters, as
// Slack does, and adds the warning to resp. a.mu is held.
func (a *WebAPI) truncateLocked(text string, c *Call, resp map[string]any) string {
	r := []rune(text)
	if len(r) <= maxMsgText {
		return text
	}
	a.violateLocked("%s to %s: text of %d characters truncated to %d", c.Method, c.Channel, len(r), maxMsgText)
	resp["warning"] = "message_truncated"
	resp["response_metadata"] = map[string]any{"warnings": []string{"message_truncated"}}
	return string(r[:maxMsgText])
}

// message is a message object as chat.postMessage and chat.update
// answer it.
func (a *WebAPI) message(m *Msg) map[string]any {
	msg := map[string]any{"type": "message", "user": simBotUser, "bot_id": simBotID, "app_id": AppID,
		"text": m.Text, "ts": m.TS}
	if a.slack != nil {
		msg["team"] = a.slack.Team
	}
	if m.Blocks != nil {
		msg["blocks"] = m.Blocks
	}
	return msg
}

// chatPostMessage answers chat.postMessage
// (https://docs.slack.dev/reference/methods/chat.postMessage): to a DM,
// or to a user ID, which posts in the bot's DM with that user.
func (a *WebAPI) chatPostMessage(args map[string]string, c *Call) map[string]any {
	ch := args["channel"]
	if isUserID(ch) {
		ch, _ = a.dmLocked(ch)
	}
	if _, ok := a.dmUser[ch]; !ok {
		return apiError("channel_not_found")
	}
	text, _, blocks, _, code := msgContent(args)
	if code != "" {
		return apiError(code)
	}
	c.Channel = ch
	resp := map[string]any{"ok": true, "channel": ch}
	text = a.truncateLocked(text, c, resp)
	m := &Msg{TS: a.nextTSLocked(c.Time), Text: text, Blocks: blocks, Texts: []string{text}}
	a.postAllowanceLocked(ch, c.Time)
	a.messages[ch] = append(a.messages[ch], m)
	c.TS = m.TS
	resp["ts"], resp["message"] = m.TS, a.message(m)
	return resp
}

// chatUpdate answers chat.update
// (https://docs.slack.dev/reference/methods/chat.update): text replaces
// the text when given; blocks, when given, replace the blocks (an empty
// array removes them), else they are kept. The channel must be the DM's
// ID, not a user's.
func (a *WebAPI) chatUpdate(args map[string]string, c *Call) map[string]any {
	ch, ts := args["channel"], args["ts"]
	c.TS = ts
	if _, ok := a.dmUser[ch]; !ok {
		return apiError("channel_not_found")
	}
	var m *Msg
	for _, x := range a.messages[ch] {
		if x.TS == ts {
			m = x
		}
	}
	if m == nil {
		return apiError("message_not_found")
	}
	text, hasText, blocks, hasBlocks, code := msgContent(args)
	if code != "" {
		return apiError(code)
	}
	resp := map[string]any{"ok": true, "channel": ch, "ts": ts}
	if hasText {
		m.Text = a.truncateLocked(text, c, resp)
	}
	if hasBlocks {
		m.Blocks = blocks
	}
	m.Updates++
	m.Texts = append(m.Texts, m.Text)
	resp["text"], resp["message"] = m.Text, a.message(m)
	return resp
}

// getUploadURLExternal answers files.getUploadURLExternal
// (https://docs.slack.dev/reference/methods/files.getUploadURLExternal)
// with an upload URL on this server.
func (a *WebAPI) getUploadURLExternal(args map[string]string, c *Call) map[string]any {
	name := args["filename"]
	length, err := strconv.ParseInt(args["length"], 10, 64)
	if name == "" || err != nil || length <= 0 {
		return apiError("invalid_arguments")
	}
	a.seq++
	f := &File{ID: fmt.Sprintf("F0SIM%05d", a.seq), Name: name, Length: length}
	a.files[f.ID] = f
	a.fileOrder = append(a.fileOrder, f.ID)
	return map[string]any{"ok": true, "upload_url": a.URL + "/upload/" + f.ID, "file_id": f.ID}
}

// completeUploadExternal answers files.completeUploadExternal
// (https://docs.slack.dev/reference/methods/files.completeUploadExternal):
// each file must have been uploaded, and may be completed once.
func (a *WebAPI) completeUploadExternal(args map[string]string, c *Call) map[string]any {
	var list []struct {
		ID    string `json:"id"`
		Title string `json:"title"`
	}
	if json.Unmarshal([]byte(args["files"]), &list) != nil || len(list) == 0 {
		return apiError("invalid_arguments")
	}
	ch := args["channel_id"]
	if ch == "" {
		ch, _, _ = strings.Cut(args["channels"], ",")
	}
	if _, ok := a.dmUser[ch]; ch != "" && !ok {
		return apiError("channel_not_found")
	}
	for _, l := range list {
		if f := a.files[l.ID]; f == nil || !f.Uploaded || f.Completed {
			return apiError("file_not_found")
		}
	}
	c.Channel = ch
	done := []map[string]any{}
	for _, l := range list {
		f := a.files[l.ID]
		f.Completed, f.Channel, f.InitialComment, f.Title = true, ch, args["initial_comment"], l.Title
		if f.Title == "" {
			f.Title = f.Name
		}
		done = append(done, map[string]any{"id": f.ID, "title": f.Title})
	}
	return map[string]any{"ok": true, "files": done}
}

// upload takes a file's bytes at its upload URL, raw or as the file
// part of a multipart form ("Files can be sent as raw bytes or can be
// multipart form encoded",
// https://docs.slack.dev/reference/methods/files.getUploadURLExternal),
// and answers 200 "OK - <bytes>". It keeps their size and SHA-256, not
// the bytes. Slack's upload URL is presigned; this one wants the bot
// token in the Authorization header too, which slack-go sends.
func (a *WebAPI) upload(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	c := Call{Method: "upload", Time: a.now()}
	a.mu.Lock()
	f := a.files[id]
	maxUpload := a.MaxUpload
	a.mu.Unlock()
	// The cap is on the file's bytes; a multipart form's envelope gets
	// some room over it.
	body := http.MaxBytesReader(w, r.Body, maxUpload+64<<10)
	// A hang first drains the body: only then does net/http notice the
	// client going away.
	a.mu.Lock()
	hanging := a.hangs["upload"] != 0
	a.mu.Unlock()
	if hanging {
		io.Copy(io.Discard, body)
	}
	if a.infraFault(w, r, c) {
		return
	}
	finish := func(status int, code, text string) {
		c.Status, c.Error = status, code
		a.mu.Lock()
		a.recordLocked(c)
		a.mu.Unlock()
		http.Error(w, text, status)
	}
	if code := a.authError(r, ""); code != "" {
		finish(http.StatusUnauthorized, code, code)
		return
	}
	if a.rateLimited(w, c) {
		return
	}
	if f == nil {
		finish(http.StatusNotFound, "file_not_found", "no such upload")
		return
	}
	n, sum, err := readUpload(r, body, maxUpload)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.Is(err, errUploadTooLarge) || errors.As(err, &tooLarge) {
			finish(http.StatusRequestEntityTooLarge, "", "file too large")
			return
		}
		finish(http.StatusBadRequest, "", "bad upload: "+err.Error())
		return
	}
	a.mu.Lock()
	if f.Uploaded {
		a.mu.Unlock()
		finish(http.StatusConflict, "", "already uploaded")
		return
	}
	f.Uploaded, f.Size, f.SHA256 = true, n, sum
	if n != f.Length {
		a.violateLocked("upload of %s (%s): %d bytes, %d declared to files.getUploadURLExternal", f.ID, f.Name, n, f.Length)
	}
	c.Status = http.StatusOK
	a.recordLocked(c)
	a.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "OK - %d", n)
}

// errUploadTooLarge is a file over WebAPI.MaxUpload.
var errUploadTooLarge = errors.New("file over the upload cap")

// readUpload hashes an upload's bytes, at most maxSize of them: the body,
// or its multipart form's part named file (else its first file part).
func readUpload(r *http.Request, body io.Reader, maxSize int64) (int64, string, error) {
	h := sha256.New()
	hash := func(src io.Reader) (int64, string, error) {
		n, err := io.Copy(h, io.LimitReader(src, maxSize+1))
		if err == nil && n > maxSize {
			err = errUploadTooLarge
		}
		return n, hex.EncodeToString(h.Sum(nil)), err
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "multipart/form-data" {
		return hash(body)
	}
	r.Body = io.NopCloser(body)
	mr, err := r.MultipartReader()
	if err != nil {
		return 0, "", err
	}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return 0, "", errors.New("no file part")
		}
		if err != nil {
			return 0, "", err
		}
		if p.FormName() == "file" || p.FileName() != "" {
			return hash(p)
		}
	}
}
