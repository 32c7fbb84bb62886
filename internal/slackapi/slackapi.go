// Package slackapi is the courier's client of Slack's Web API: with the
// bot token (xoxb-…) it opens a user's DM (conversations.open), posts a
// message there (chat.postMessage), updates it in place (chat.update) and
// uploads a file into it (files.getUploadURLExternal, a POST of the bytes
// to the upload URL, files.completeUploadExternal). It is built on
// slack-go.
//
// It writes into DMs only: Post, Update and Upload refuse a channel ID
// that is not a DM's (D…), public (C…) and private (G…) channels
// included, before any request (CodeInvalidArgument), and OpenDM accepts
// only a DM, and only the requested user's when Slack names the user.
//
// It is a trust boundary both ways. What it sends is bounded and checked
// first: IDs, timestamps, text (cut to MaxTextLen), blocks (MaxBlocks),
// file names and sizes (MaxUploadSize). What it reads is Slack's answer,
// taken as hostile: at most 1 MiB of it, and every channel ID, timestamp,
// file ID and upload URL in it is checked; one the client does not accept
// is an error (CodeInvalidResponse), never used.
//
// The network: in production the client connects only over TLS to port
// 443 of slack.com, slack-gov.com and their subdomains, and sends a file
// (with the token, as slack-go does) only to an https upload URL on
// files.slack.com or files.slack-gov.com; in test mode only to the
// loopback host:port of Options.APIURL. No proxy from the environment, no
// MPTCP, no redirect followed; dial and TLS handshake 10 s each, response
// headers 15 s, a whole call 30 s, an upload 30 s plus 1 s per 256 KiB.
//
// Rate limits: the client keeps to Slack's published limits on its side
// (cited in limit.go): chat.postMessage one per second per channel,
// chat.update and conversations.open 50 per minute each, the two files.*
// methods 100 per minute each. A call waits for its turn until its ctx
// ends (then: CodeClientRateLimited, and Slack is not called). After a
// 429 every later call of that method (for chat.postMessage, to that
// channel) waits out Slack's Retry-After. The client never retries.
//
// A Client is safe for concurrent use. It keeps in memory, per process:
// each user's DM channel (up to 10,000, then forgotten all at once) and
// the rate-limit state, which a restart forgets: Slack's 429s, which the
// client reports, are then the only limit until the windows fill again.
//
// BUG(slackapi): chat.postMessage's workspace-wide limit ("several
// hundred messages per minute", no figure published) is not kept on the
// client's side: only the per-channel one is. Slack's 429 reports it.
//
// BUG(slackapi): Blocks are bounded in number (MaxBlocks), not in size:
// Slack refuses an oversized block (invalid_blocks, msg_blocks_too_long,
// both Permanent).
package slackapi

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/ytkeep/ytkeep/internal/metrics"
)

// The methods, as Error.Method names them.
const (
	methodOpen     = "conversations.open"
	methodPost     = "chat.postMessage"
	methodUpdate   = "chat.update"
	methodGetURL   = "files.getUploadURLExternal"
	methodUpload   = "upload" // the POST of the bytes to the upload URL
	methodComplete = "files.completeUploadExternal"
)

// maxDMs bounds the DM cache.
const maxDMs = 10000

// Options configure New.
type Options struct {
	// Token is the bot token: "xoxb-" then letters, digits and hyphens,
	// at most 255 bytes in all.
	Token string
	// APIURL is "" in production (https://slack.com/api/). In test mode it
	// is a simulated Web API's base URL, which must be http or https on a
	// loopback IP address with a port (then plain http to that one
	// host:port is allowed; see Warnings).
	APIURL string
	// Now is the clock of the rate limits (time.Now when nil).
	Now func() time.Time
	// Metrics counts each HTTP request by method and status, and each
	// failed call by code (nil: not counted).
	Metrics *metrics.Set
}

// Client is a Slack Web API client for one bot token.
type Client struct {
	api        *slack.Client
	production bool
	apiURL     string // test mode: the Web API base URL
	apiScheme  string // test mode: its scheme
	apiAddr    string // test mode: its host:port
	now        func() time.Time
	sleep      func(context.Context, time.Duration) error
	limits     *limits
	metrics    *metrics.Set

	mu  sync.Mutex
	dms map[string]string // user ID → DM channel ID
}

// New returns a client for opt.Token. It refuses a token without the bot
// token's shape and a non-empty APIURL that is not http(s) on a loopback
// IP address and port. It makes no request.
func New(opt Options) (*Client, error) {
	return newClient(opt, nil)
}

// newClient is New, with the CA of a test Web API over https (nil: the
// system's roots).
func newClient(opt Options, roots *x509.CertPool) (*Client, error) {
	if !validToken(opt.Token) {
		return nil, errors.New("slackapi: the token is not a bot token (xoxb-…)")
	}
	c := &Client{now: opt.Now, sleep: sleepCtx, limits: newLimits(), dms: make(map[string]string), metrics: opt.Metrics}
	if c.now == nil {
		c.now = time.Now
	}
	endpoint := slack.APIURL
	var d *dialer
	if opt.APIURL == "" {
		c.production = true
		d = newDialer(true, "", true, nil)
	} else {
		u, err := parseTestURL(opt.APIURL)
		if err != nil {
			return nil, fmt.Errorf("slackapi: API URL %q: %w", opt.APIURL, err)
		}
		endpoint = u.String()
		c.apiURL, c.apiScheme, c.apiAddr = endpoint, u.Scheme, u.Host
		d = newDialer(false, u.Host, u.Scheme == "https", roots)
	}
	c.api = slack.New(opt.Token, slack.OptionHTTPClient(newHTTPClient(d, opt.Metrics)), slack.OptionAPIURL(endpoint))
	return c, nil
}

// Warnings lists the client's relaxations of its production policy, for
// the log at start: in test mode, the Web API on loopback (over plain
// http if its URL says so).
func (c *Client) Warnings() []string {
	if c.production {
		return nil
	}
	return []string{fmt.Sprintf("slackapi: test mode: Slack's Web API is %s, on loopback, not Slack's hosts", c.apiURL)}
}

// validToken reports whether s has a bot token's shape: "xoxb-", then
// groups of ASCII letters and digits joined by single hyphens, at most 255
// bytes in all.
func validToken(s string) bool {
	rest, ok := strings.CutPrefix(s, "xoxb-")
	if !ok || rest == "" || len(s) > 255 {
		return false
	}
	for g := range strings.SplitSeq(rest, "-") {
		if g == "" {
			return false
		}
		for i := 0; i < len(g); i++ {
			if c := g[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
				return false
			}
		}
	}
	return true
}

// parseTestURL checks a test Web API URL: http or https, a loopback IP
// address and a port, no user info, query or fragment. Its path gets a
// trailing slash (slack-go appends the method's name).
func parseTestURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errors.New("not http or https")
	}
	if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" {
		return nil, errors.New("has user info, a query or a fragment")
	}
	ip, err := netip.ParseAddr(u.Hostname())
	if err != nil || !ip.IsLoopback() || ip.Zone() != "" {
		return nil, errors.New("not a loopback IP address")
	}
	if p, err := strconv.ParseUint(u.Port(), 10, 16); err != nil || p == 0 {
		return nil, errors.New("no port")
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	u.RawPath = ""
	return u, nil
}

// OpenDM returns the DM channel between the bot and user
// (conversations.open with users=user and return_im=true), from memory
// after the first time. user must be a user ID ([UW][A-Z0-9]{2,31}); the
// answer must name a DM channel (D…) and, when it names the DM's user
// (return_im asks for it), that must be user: a status message meant for
// one person never goes to a channel others read, nor to another
// person's DM. Either refusal is CodeInvalidResponse, and nothing is
// kept in memory.
func (c *Client) OpenDM(ctx context.Context, user string) (channel string, err error) {
	if !validUser(user) {
		return "", invalidArgument(methodOpen, "user ID %q", clip(user))
	}
	c.mu.Lock()
	ch, ok := c.dms[user]
	c.mu.Unlock()
	if ok {
		return ch, nil
	}
	if err := c.wait(ctx, methodOpen, ""); err != nil {
		return "", err
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	conv, _, _, err := c.api.OpenConversationContext(cctx, &slack.OpenConversationParameters{Users: []string{user}, ReturnIM: true})
	if err != nil {
		return "", c.fail(methodOpen, "", err)
	}
	if conv == nil || !validDM(conv.ID) {
		return "", invalidResponse(methodOpen, "no DM channel ID in the answer")
	}
	if conv.User != "" && conv.User != user {
		return "", invalidResponse(methodOpen, "the answer names the DM of user %q, not of %s", clip(conv.User), user)
	}
	c.mu.Lock()
	if len(c.dms) >= maxDMs {
		clear(c.dms)
	}
	c.dms[user] = conv.ID
	c.mu.Unlock()
	return conv.ID, nil
}

// Post posts m into channel, a DM (D[A-Z0-9]{2,31}, as OpenDM gives),
// with chat.postMessage, without link or media unfurling, and returns the
// message's ts. Any other channel ID is refused before any request. The
// answer must name the same channel and a well-formed ts.
func (c *Client) Post(ctx context.Context, channel string, m Message) (ts string, err error) {
	if !validDM(channel) {
		return "", invalidArgument(methodPost, "channel ID %q is not a DM's", clip(channel))
	}
	text, err := checkMessage(methodPost, m)
	if err != nil {
		return "", err
	}
	opts := []slack.MsgOption{slack.MsgOptionText(text, false), slack.MsgOptionParse(false),
		slack.MsgOptionDisableLinkUnfurl(), slack.MsgOptionDisableMediaUnfurl()}
	if len(m.Blocks) > 0 {
		opts = append(opts, slack.MsgOptionBlocks(m.Blocks...))
	}
	if err := c.wait(ctx, methodPost, channel); err != nil {
		return "", err
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	gotChannel, ts, err := c.api.PostMessageContext(cctx, channel, opts...)
	if err != nil {
		return "", c.fail(methodPost, channel, err)
	}
	if gotChannel != channel || !validTS(ts) {
		return "", invalidResponse(methodPost, "the answer names channel %q, ts %q", clip(gotChannel), clip(ts))
	}
	return ts, nil
}

// Update replaces the message ts in channel, a DM (D[A-Z0-9]{2,31}), by
// m with chat.update: its text and its blocks (none if m has none). Any
// other channel ID is refused before any request. The answer must name
// the same channel and ts.
func (c *Client) Update(ctx context.Context, channel, ts string, m Message) error {
	if !validDM(channel) {
		return invalidArgument(methodUpdate, "channel ID %q is not a DM's", clip(channel))
	}
	if !validTS(ts) {
		return invalidArgument(methodUpdate, "ts %q", clip(ts))
	}
	text, err := checkMessage(methodUpdate, m)
	if err != nil {
		return err
	}
	// An empty block list is sent as [], which removes the message's
	// blocks: the update replaces the whole message.
	opts := []slack.MsgOption{slack.MsgOptionText(text, false), slack.MsgOptionParse(false),
		slack.MsgOptionBlocks(m.Blocks...)}
	if err := c.wait(ctx, methodUpdate, ""); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	gotChannel, gotTS, _, err := c.api.UpdateMessageContext(cctx, channel, ts, opts...)
	if err != nil {
		return c.fail(methodUpdate, channel, err)
	}
	if gotChannel != channel || gotTS != ts {
		return invalidResponse(methodUpdate, "the answer names channel %q, ts %q", clip(gotChannel), clip(gotTS))
	}
	return nil
}

// Upload shares size bytes read from r into channel, a DM
// (D[A-Z0-9]{2,31}; any other channel ID is refused before any request),
// as a file named
// filename, titled title (filename when empty; control characters become
// spaces, and it is cut to 250 UTF-16 code units), in Slack's three steps,
// each a slack-go call: files.getUploadURLExternal, which gives an upload
// URL and a file ID; the POST of the bytes to that URL (bounded by
// size: 30 s plus 1 s per 256 KiB); files.completeUploadExternal, which
// shares the file in channel. These are the steps of slack-go's
// UploadFileContext, made one by one so that the upload URL and the file
// ID are checked before use, each step waits for its own rate limit and
// has its own timeout, and an error names the step.
//
// size must be 1 to MaxUploadSize, and r must give exactly size bytes:
// fewer or more fail the upload (and the file is never shared), and so
// does an answer of the upload URL that comes before all of them were
// read (CodeInvalidResponse). filename must be 1 to 255 bytes of UTF-8
// without control characters or path separators.
//
// r is read by another goroutine (slack-go's), never after Upload has
// returned: Upload first waits for a Read of r under way to end, so r
// must not block without end (a file does not), and the caller may close
// it as soon as Upload returns.
func (c *Client) Upload(ctx context.Context, channel, filename, title string, r io.Reader, size int64) error {
	if !validDM(channel) {
		return invalidArgument(methodGetURL, "channel ID %q is not a DM's", clip(channel))
	}
	if !validFilename(filename) {
		return invalidArgument(methodGetURL, "file name %q", clip(filename))
	}
	if size < 1 || size > MaxUploadSize {
		return invalidArgument(methodGetURL, "size %d not in [1, %d]", size, MaxUploadSize)
	}
	if r == nil {
		return invalidArgument(methodGetURL, "no reader")
	}
	title = cleanTitle(title, filename)

	if err := c.wait(ctx, methodGetURL, ""); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	u, err := c.api.GetUploadURLExternalContext(cctx, slack.GetUploadURLExternalParameters{FileName: filename, FileSize: int(size)})
	if err != nil {
		return c.fail(methodGetURL, "", err)
	}
	if !validFile(u.FileID) {
		return invalidResponse(methodGetURL, "file ID %q", clip(u.FileID))
	}
	if why := c.checkUploadURL(u.UploadURL); why != "" {
		return invalidResponse(methodGetURL, "upload URL refused: %s", why)
	}

	uctx, cancel := context.WithTimeout(ctx, UploadTimeout(size))
	defer cancel()
	body := &exactReader{r: r, size: size}
	err = c.api.UploadToURL(uctx, slack.UploadToURLParameters{UploadURL: u.UploadURL, Reader: body, Filename: filename})
	// slack-go's multipart writer may still be reading body: the upload
	// URL can answer before it has read the whole request. Stop it first,
	// whatever the outcome, so that r is not read after Upload returns.
	read, whole, readErr := body.stop()
	if err != nil {
		return c.fail(methodUpload, "", err)
	}
	if readErr != nil {
		return c.fail(methodUpload, "", readErr)
	}
	if !whole {
		return invalidResponse(methodUpload, "answered before the whole file was sent (%d bytes of %d read)", read, size)
	}

	if err := c.wait(ctx, methodComplete, ""); err != nil {
		return err
	}
	cctx, cancel = context.WithTimeout(ctx, callTimeout)
	defer cancel()
	done, err := c.api.CompleteUploadExternalContext(cctx, slack.CompleteUploadExternalParameters{
		Files: []slack.FileSummary{{ID: u.FileID, Title: title}}, Channel: channel})
	if err != nil {
		return c.fail(methodComplete, "", err)
	}
	if len(done.Files) != 1 || done.Files[0].ID != u.FileID {
		return invalidResponse(methodComplete, "the answer does not name file %s alone", u.FileID)
	}
	return nil
}

// fail classifies a failed call and, for a rate limit, holds the later
// calls of the method (on channel, for chat.postMessage) for its
// RetryAfter.
func (c *Client) fail(method, channel string, err error) error {
	e := classify(method, err)
	c.metrics.SlackError(method, e.Code)
	if e.Code == CodeRateLimited {
		c.block(method, channel, e.RetryAfter)
	}
	if errors.Is(err, errShortRead) || errors.Is(err, errLongRead) {
		// The caller's file, not the network.
		e.Code, e.Permanent = CodeInvalidArgument, true
	}
	return e
}

// exactReader gives r's bytes and fails unless there are exactly size of
// them: Slack was told the size. Its Reads come from slack-go's multipart
// writer, a goroutine of its own that may outlive the upload's answer;
// stop ends them, under mu: it waits for a Read under way, and every
// later Read fails without reading r.
type exactReader struct {
	mu      sync.Mutex
	r       io.Reader
	size    int64
	read    int64
	whole   bool  // r ended after exactly size bytes
	err     error // the first error other than io.EOF that Read returned
	stopped bool
}

var (
	errShortRead = errors.New("the file is shorter than its size")
	errLongRead  = errors.New("the file is longer than its size")
	errStopped   = errors.New("the upload is over")
)

func (e *exactReader) Read(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.stopped:
		return 0, errStopped
	case e.err != nil:
		return 0, e.err
	case e.whole:
		return 0, io.EOF
	}
	n, err := e.readLocked(p)
	e.read += int64(n)
	if err == io.EOF {
		e.whole = true
	} else if err != nil {
		e.err = err
	}
	return n, err
}

func (e *exactReader) readLocked(p []byte) (int, error) {
	left := e.size - e.read
	if left == 0 {
		var one [1]byte
		n, err := e.r.Read(one[:])
		if n > 0 {
			return 0, errLongRead
		}
		if err == nil {
			err = io.EOF
		}
		return 0, err
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	n, err := e.r.Read(p)
	if err == io.EOF && int64(n) < left {
		return n, errShortRead
	}
	if err == io.EOF {
		err = nil
	}
	return n, err
}

// stop waits for a Read under way to end and makes later Reads fail
// without reading r. It reports how many bytes were read, whether r ended
// after exactly size bytes, and the first error Read returned.
func (e *exactReader) stop() (read int64, whole bool, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopped = true
	return e.read, e.whole, e.err
}

// clip bounds a caller's or Slack's string quoted in an error.
func clip(s string) string {
	if len(s) > 40 {
		return strings.ToValidUTF8(s[:40], "") + "…"
	}
	return s
}
