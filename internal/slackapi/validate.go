package slackapi

import (
	"net/url"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/slack-go/slack"
)

// Bounds of what is sent.
const (
	// MaxTextLen is the most a message's text may hold, in UTF-16 code
	// units (an emoji outside the Basic Multilingual Plane counts two; how
	// Slack counts its "characters" is not documented, and this way never
	// undercounts): chat.update refuses longer text with msg_too_long
	// ("the text field cannot exceed 4,000 characters",
	// https://docs.slack.dev/reference/methods/chat.update), and
	// chat.postMessage asks to keep to it
	// (https://docs.slack.dev/reference/methods/chat.postMessage; Slack
	// cuts at 40,000:
	// https://api.slack.com/changelog/2018-04-truncating-really-long-messages).
	// Longer text is cut and ends in "…".
	MaxTextLen = 4000
	// MaxBlocks is the most blocks a message may have
	// (https://docs.slack.dev/reference/block-kit/blocks).
	MaxBlocks = 50
	// MaxUploadSize is the largest file Upload sends, 1 GiB: the client's
	// own bound (Slack refuses a file over its limits itself, with
	// file_too_large or, under a workspace's lower limit,
	// file_upload_size_restricted, both Permanent).
	MaxUploadSize = 1 << 30

	maxIDLen       = 32  // a channel, user or file ID: Slack's are about 11
	maxTSPart      = 20  // digits on either side of a ts's dot
	maxFilenameLen = 255 // bytes
	maxTitleLen    = 250 // UTF-16 code units, cut like text
	maxUploadURL   = 2048
)

// uploadHosts are the hosts Slack's upload URLs name
// (https://docs.slack.dev/reference/methods/files.getUploadURLExternal:
// https://files.slack.com/upload/v1/…), and GovSlack's.
var uploadHosts = []string{"files.slack.com", "files.slack-gov.com"}

// validID reports whether s is a Slack ID starting with one of the bytes
// of first, then 2 to maxIDLen-1 upper case letters or digits.
func validID(s, first string) bool {
	if len(s) < 3 || len(s) > maxIDLen || !strings.Contains(first, s[:1]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !('A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// validDM: D[A-Z0-9]{2,31}, what conversations.open gives for one user,
// and the only channel the client writes into (not public C… nor private
// G… channels).
func validDM(s string) bool { return validID(s, "D") }

// validUser: [UW][A-Z0-9]{2,31} (W: Enterprise Grid).
func validUser(s string) bool { return validID(s, "UW") }

// validFile: F[A-Z0-9]{2,31}.
func validFile(s string) bool { return validID(s, "F") }

// validTS reports whether s is a message timestamp: 1 to maxTSPart
// digits, a dot, 1 to maxTSPart digits.
func validTS(s string) bool {
	sec, frac, ok := strings.Cut(s, ".")
	return ok && allDigits(sec) && allDigits(frac)
}

func allDigits(s string) bool {
	if s == "" || len(s) > maxTSPart {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// truncate returns s as valid UTF-8 (each bad byte as U+FFFD) of at most
// limit UTF-16 code units: if longer, its longest prefix of limit-1
// units followed by "…".
func truncate(s string, limit int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if utf16Len(s) <= limit {
		return s
	}
	n := 0
	for i, r := range s {
		w := utf16.RuneLen(r)
		if n+w > limit-1 {
			return s[:i] + "…"
		}
		n += w
	}
	return s // not reached
}

func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// checkMessage returns m's text as sent (cut to MaxTextLen), or an error
// for a message that cannot be sent: no text (the fallback shown in
// notifications, which Slack wants with blocks too), more than MaxBlocks
// blocks, or a nil block.
func checkMessage(method string, m Message) (string, error) {
	if strings.TrimSpace(m.Text) == "" {
		return "", invalidArgument(method, "the message has no text")
	}
	if len(m.Blocks) > MaxBlocks {
		return "", invalidArgument(method, "%d blocks, more than %d", len(m.Blocks), MaxBlocks)
	}
	for i, b := range m.Blocks {
		if b == nil {
			return "", invalidArgument(method, "block %d is nil", i)
		}
	}
	return truncate(m.Text, MaxTextLen), nil
}

// validFilename reports whether s can name an uploaded file: 1 to
// maxFilenameLen bytes of valid UTF-8, no control character, no path
// separator, not "." or "..".
func validFilename(s string) bool {
	if s == "" || len(s) > maxFilenameLen || !utf8.ValidString(s) || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if control(r) || r == '/' || r == '\\' {
			return false
		}
	}
	return true
}

// cleanTitle returns a file title as sent: valid UTF-8, control
// characters as spaces, cut to maxTitleLen; fallback when empty.
func cleanTitle(s, fallback string) string {
	s = strings.Map(func(r rune) rune {
		if control(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	if strings.TrimSpace(s) == "" {
		s = fallback
	}
	return truncate(s, maxTitleLen)
}

func control(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// checkUploadURL reports why raw, the upload URL in Slack's answer, is
// not one the client sends a file (and the token) to: in production an
// https URL on one of uploadHosts, port 443; in test mode a URL of the
// test Web API's scheme and host:port. Either way no user info, no
// fragment, nothing but printable ASCII, at most maxUploadURL bytes.
func (c *Client) checkUploadURL(raw string) string {
	if raw == "" || len(raw) > maxUploadURL {
		return "empty or too long"
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] <= ' ' || raw[i] >= 0x7f {
			return "not printable ASCII"
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "not a URL"
	}
	if u.User != nil || u.Fragment != "" || u.Opaque != "" || u.Path == "" {
		return "has user info, a fragment or no path"
	}
	if !c.production {
		if u.Scheme != c.apiScheme || u.Host != c.apiAddr {
			return "not on the test Web API's host"
		}
		return ""
	}
	if u.Scheme != "https" {
		return "not https"
	}
	if p := u.Port(); p != "" && p != "443" {
		return "not on port 443"
	}
	for _, h := range uploadHosts {
		if u.Hostname() == h {
			return ""
		}
	}
	return "not on Slack's upload host"
}

// Message is one message: Text, sent as Slack mrkdwn, is the fallback
// shown in notifications and where blocks are not (it is required, and
// cut to MaxTextLen); Blocks, at most MaxBlocks, are what Slack shows when
// present. The caller escapes &, < and > in untrusted parts of Text and
// of mrkdwn text objects (slackutilsx.EscapeMessage): the client sends
// both as they are.
type Message struct {
	Text   string
	Blocks []slack.Block
}
