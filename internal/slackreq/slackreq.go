// Package slackreq authenticates and parses Slack slash-command requests. It
// is the trust boundary for everything that arrives over HTTP.
//
// Order of checks, each before the next touches more of the request: method
// and content type; body read with a hard size cap; Slack's certificate
// check (see ErrSSLCheck), answered before the signature is looked at and
// never parsed as a command; timestamp within ±300 s of the local clock;
// v0 signature (HMAC-SHA256 over "v0:ts:body", compared in constant time
// by slack-go); timestamp not before the Verifier was made (less
// StartSkew); signature not seen before within the window (replay cache);
// only then is the form parsed.
//
// The replay cache is in memory. A restart would empty it and let a request
// captured in the last 300 s be played again, so a Verifier also refuses
// every request signed before it was created: such a request cannot be a
// fresh one for this process. See StartSkew for what that costs.
package slackreq

import (
	"bytes"
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

	"github.com/slack-go/slack"
)

// MaxBodyBytes caps the request body. Slack's slash-command payloads are a
// few hundred bytes; a button click's carries the message clicked, a few
// KB for ytkeep's status messages, form-encoded. Anything near this is
// not from Slack.
const MaxBodyBytes = 64 << 10

// Window is how far a request timestamp may be from the local clock.
const Window = 300 * time.Second

// StartSkew is how long before its creation a Verifier still accepts a
// request's timestamp. A request signed earlier than that is refused
// (ReasonSignedBeforeStart), even with a good signature: the replay cache
// of the process that may have accepted it is gone.
//
// The trade-off: a request that was in flight while the receiver
// restarted is refused, and the user types the command again. Slack does
// not retry slash commands; a retry by Slack of another kind of request
// carries its first timestamp and is refused the same way after a restart
// (and by the replay cache before one). A clock ahead of Slack's by more
// than StartSkew refuses good requests for that long after a start (fail
// closed, never open). What is left open: a request captured in the last
// StartSkew before a restart can be played once more, to the new process.
// Under systemd a crash restarts the receiver after RestartSec=2s, so this
// is only a deliberate restart's last seconds.
const StartSkew = 5 * time.Second

// Error is a refused request. Status is the HTTP status to answer with,
// Reason a short word for the audit log.
type Error struct {
	Status int
	Reason Reason
	Err    error
}

// Reason names why a request was refused, for the audit log.
type Reason string

// The reasons a request is refused.
const (
	ReasonMethod            Reason = "method"
	ReasonContentType       Reason = "content_type"
	ReasonBodyTooLarge      Reason = "body_too_large"
	ReasonBodyRead          Reason = "body_read"
	ReasonMissingSignature  Reason = "missing_signature"
	ReasonBadTimestamp      Reason = "bad_timestamp"
	ReasonStaleTimestamp    Reason = "stale_timestamp"
	ReasonBadSignature      Reason = "bad_signature"
	ReasonReplay            Reason = "replay"
	ReasonSignedBeforeStart Reason = "signed_before_start"
	ReasonBadForm           Reason = "bad_form"
	ReasonBadRequest        Reason = "bad_request"
)

// Suspicious reports whether the refusal is about the request's claim to
// come from Slack (no, a stale, a wrong or a replayed signature, or one
// made before this process started): someone who is not Slack is talking
// to us, which the admins are alerted to. The other refusals are
// malformed requests, logged as events.
func (e *Error) Suspicious() bool {
	switch e.Reason {
	case ReasonMissingSignature, ReasonBadTimestamp, ReasonStaleTimestamp, ReasonBadSignature, ReasonReplay, ReasonSignedBeforeStart:
		return true
	}
	return false
}

func (e *Error) Error() string {
	if e.Err != nil {
		return string(e.Reason) + ": " + e.Err.Error()
	}
	return string(e.Reason)
}

func (e *Error) Unwrap() error { return e.Err }

// Verifier checks request signatures. It is safe for concurrent use.
type Verifier struct {
	secret string
	now    func() time.Time
	seen   *replayCache
	// notBefore is the earliest timestamp accepted: the Verifier's
	// creation less StartSkew, in whole seconds as Slack signs them.
	notBefore int64
}

// NewVerifier returns a Verifier for the signing secret. now may be nil
// (time.Now). maxSeen bounds the replay cache; when it is full of live
// entries, new requests are refused rather than let replays through.
//
// The Verifier refuses requests signed more than StartSkew before this
// call, so create it once, when the daemon starts.
func NewVerifier(secret string, now func() time.Time, maxSeen int) (*Verifier, error) {
	if len(secret) < 16 {
		return nil, errors.New("signing secret is shorter than 16 bytes")
	}
	if now == nil {
		now = time.Now
	}
	return &Verifier{secret: secret, now: now, seen: newReplayCache(maxSeen),
		notBefore: now().Add(-StartSkew).Unix()}, nil
}

// Command is a verified slash command, with only the fields ytkeep uses.
// TeamID is the workspace the command was typed in; on an Enterprise
// Grid organization EnterpriseID names the organization (empty
// otherwise), and IsEnterpriseInstall says that the app is installed for
// the whole organization, so that commands come from all its workspaces.
// APIAppID is the app the command was sent to. None of them is checked
// here beyond its form: the receiver's policy decides.
type Command struct {
	TeamID              string
	ChannelID           string
	UserID              string
	Command             string
	Text                string
	ResponseURL         string
	APIAppID            string
	EnterpriseID        string
	IsEnterpriseInstall bool
}

// ErrSSLCheck is returned by ReadVerified for Slack's certificate check:
// a POST whose form is ssl_check=1 and at most a token, nothing else
// (see IsSSLCheck). Slack sends one now and then to check the request
// URL's certificate and wants an empty 200 answer
// (https://api.slack.com/interactivity/slash-commands). It is answered
// whether or not it is signed, and it carries nothing to act on: a body
// with any other field is verified and parsed as a command.
var ErrSSLCheck = errors.New("slack certificate check (ssl_check)")

// MaxSSLCheckBytes bounds the body IsSSLCheck parses: ssl_check=1 and a
// token are a few dozen bytes.
const MaxSSLCheckBytes = 512

// IsSSLCheck reports whether a form body is Slack's certificate check:
// at most MaxSSLCheckBytes, well formed, ssl_check exactly once and "1",
// and no field but ssl_check and token (each once).
func IsSSLCheck(body []byte) bool {
	if len(body) > MaxSSLCheckBytes {
		return false
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return false
	}
	for k, vs := range form {
		if (k != "ssl_check" && k != "token") || len(vs) != 1 {
			return false
		}
	}
	return form.Get("ssl_check") == "1"
}

// ReadVerified reads r's body (at most MaxBodyBytes), verifies it and
// parses the slash command. It returns ErrSSLCheck, before any
// verification, for Slack's certificate check.
func (v *Verifier) ReadVerified(r *http.Request) (*Command, error) {
	c, a, err := v.ReadVerifiedRequest(r)
	if err == nil && a != nil {
		return nil, &Error{Status: http.StatusBadRequest, Reason: ReasonBadForm, Err: errors.New("an interaction, not a command")}
	}
	return c, err
}

// ReadVerifiedRequest is ReadVerified for a URL that takes commands and
// interactions (button clicks) alike: a verified body whose only field
// is "payload" is parsed as an Action, any other as a Command.
func (v *Verifier) ReadVerifiedRequest(r *http.Request) (*Command, *Action, error) {
	body, err := v.readVerified(r)
	if err != nil {
		return nil, nil, err
	}
	payload, isAction, err := ActionPayload(body)
	if err != nil {
		return nil, nil, err
	}
	if isAction {
		a, err := ParseAction(payload)
		return nil, a, err
	}
	c, err := ParseCommand(body)
	return c, nil, err
}

// readVerified reads and verifies r's body.
func (v *Verifier) readVerified(r *http.Request) ([]byte, error) {
	if r.Method != http.MethodPost {
		return nil, &Error{Status: http.StatusMethodNotAllowed, Reason: ReasonMethod}
	}
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "application/x-www-form-urlencoded" {
		return nil, &Error{Status: http.StatusUnsupportedMediaType, Reason: ReasonContentType}
	}
	if r.ContentLength > MaxBodyBytes {
		return nil, &Error{Status: http.StatusRequestEntityTooLarge, Reason: ReasonBodyTooLarge}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Reason: ReasonBodyRead, Err: err}
	}
	if len(body) > MaxBodyBytes {
		return nil, &Error{Status: http.StatusRequestEntityTooLarge, Reason: ReasonBodyTooLarge}
	}
	if IsSSLCheck(body) {
		return nil, ErrSSLCheck
	}
	if err := v.Verify(r.Header, body); err != nil {
		return nil, err
	}
	return body, nil
}

// Verify checks the timestamp window, the signature, that the request was
// not signed before the Verifier was made, and the replay cache.
func (v *Verifier) Verify(h http.Header, body []byte) error {
	ts := h.Get("X-Slack-Request-Timestamp")
	sig := h.Get("X-Slack-Signature")
	if ts == "" || sig == "" {
		return &Error{Status: http.StatusUnauthorized, Reason: ReasonMissingSignature}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(ts) > 12 {
		return &Error{Status: http.StatusUnauthorized, Reason: ReasonBadTimestamp}
	}
	now := v.now()
	if d := now.Sub(time.Unix(sec, 0)); d > Window || d < -Window {
		return &Error{Status: http.StatusUnauthorized, Reason: ReasonStaleTimestamp}
	}
	sv, err := slack.NewSecretsVerifier(h, v.secret)
	if err != nil {
		return &Error{Status: http.StatusUnauthorized, Reason: ReasonBadSignature, Err: err}
	}
	sv.Write(body)
	if err := sv.Ensure(); err != nil {
		return &Error{Status: http.StatusUnauthorized, Reason: ReasonBadSignature}
	}
	// Checked after the signature, so that the reason tells the admins
	// that Slack did sign it: a replay across a restart, or a request in
	// flight during one.
	if sec < v.notBefore {
		return &Error{Status: http.StatusUnauthorized, Reason: ReasonSignedBeforeStart}
	}
	// Only a correctly signed request enters the cache, so an attacker
	// cannot fill it without the secret.
	if !v.seen.add(sig, time.Unix(sec, 0).Add(Window), now) {
		return &Error{Status: http.StatusUnauthorized, Reason: ReasonReplay}
	}
	return nil
}

// ParseCommand parses a verified form body.
func ParseCommand(body []byte) (*Command, error) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Reason: ReasonBadForm, Err: err}
	}
	// slack-go knows the field names; hand it a request over the bytes.
	req, _ := http.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	sc, err := slack.SlashCommandParse(req)
	if err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Reason: ReasonBadForm, Err: err}
	}
	for _, k := range []string{"team_id", "channel_id", "user_id", "command", "text", "response_url",
		"api_app_id", "enterprise_id", "is_enterprise_install"} {
		if len(form[k]) > 1 {
			return nil, &Error{Status: http.StatusBadRequest, Reason: ReasonBadForm, Err: fmt.Errorf("field %s repeated", k)}
		}
	}
	// A command is never a certificate check as well: such a mix is no
	// form Slack sends.
	if form.Has("ssl_check") {
		return nil, &Error{Status: http.StatusBadRequest, Reason: ReasonBadForm, Err: errors.New("ssl_check in a command")}
	}
	switch form.Get("is_enterprise_install") {
	case "", "true", "false":
	default:
		return nil, &Error{Status: http.StatusBadRequest, Reason: ReasonBadForm, Err: errors.New("is_enterprise_install is not true or false")}
	}
	c := &Command{
		TeamID:              sc.TeamID,
		ChannelID:           sc.ChannelID,
		UserID:              sc.UserID,
		Command:             sc.Command,
		Text:                sc.Text,
		ResponseURL:         sc.ResponseURL,
		APIAppID:            sc.APIAppID,
		EnterpriseID:        sc.EnterpriseID,
		IsEnterpriseInstall: sc.IsEnterpriseInstall,
	}
	if c.TeamID == "" || c.UserID == "" || c.ChannelID == "" || c.Command == "" {
		return nil, &Error{Status: http.StatusBadRequest, Reason: ReasonBadForm, Err: errors.New("missing team, user, channel or command")}
	}
	return c, nil
}

// SignRequest sets the v0 signature headers on h for body at time ts, as
// Slack does. It exists for the simulated Slack used by tests, the demo and
// the load tool.
func SignRequest(h http.Header, secret string, ts time.Time, body []byte) {
	s := strconv.FormatInt(ts.Unix(), 10)
	h.Set("X-Slack-Request-Timestamp", s)
	h.Set("X-Slack-Signature", Sign(secret, s, body))
}

// replayCache remembers signatures until their timestamp leaves the window.
// Entries are expired from the front of an insertion-ordered queue on every
// add; timestamps arrive roughly in order, so this keeps memory close to the
// live set at O(1) amortised cost.
type replayCache struct {
	mu      sync.Mutex
	max     int
	entries map[string]time.Time
	order   []string
	head    int
}

func newReplayCache(max int) *replayCache {
	if max <= 0 {
		max = 1 << 20
	}
	return &replayCache{max: max, entries: make(map[string]time.Time)}
}

// add records sig until expiry. It returns false for a replay, or when the
// cache is full of live entries (fail closed).
func (c *replayCache) add(sig string, expiry, now time.Time) bool {
	sig = strings.ToLower(sig)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(now)
	if exp, ok := c.entries[sig]; ok && now.Before(exp) {
		return false
	}
	if len(c.entries) >= c.max {
		return false
	}
	c.entries[sig] = expiry
	c.order = append(c.order, sig)
	return true
}

func (c *replayCache) expire(now time.Time) {
	for c.head < len(c.order) {
		s := c.order[c.head]
		if exp, ok := c.entries[s]; ok && now.Before(exp) {
			break
		}
		delete(c.entries, s)
		c.order[c.head] = ""
		c.head++
	}
	if c.head > 1024 && c.head > len(c.order)/2 {
		c.order = append(c.order[:0:0], c.order[c.head:]...)
		c.head = 0
	}
}

// ValidSlackID reports whether s looks like a Slack team, user or channel
// ID: 2 to 32 characters of [A-Z0-9].
func ValidSlackID(s string) bool {
	if len(s) < 2 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}
