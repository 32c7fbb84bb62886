// Package videourl turns the text a Slack user typed into a YouTube video ID.
//
// It is the trust boundary for the URL: its only output is an 11-character
// ID matching [A-Za-z0-9_-]{11}. Nothing else the user typed survives, so no
// user-controlled byte ever reaches yt-dlp; the worker rebuilds the URL from
// the ID alone.
//
// Accepted: https (http is upgraded) on exactly youtube.com, www.youtube.com,
// m.youtube.com, music.youtube.com or youtu.be, with no userinfo, no port and
// no IP literal, in the forms /watch?v=ID, youtu.be/ID, /shorts/ID, /live/ID
// and /embed/ID.
//
// The text is what Slack sends, in either setting of the slash command's
// "Escape channels, users, and links sent to your app" option
// (https://api.slack.com/interactivity/slash-commands): Slack always
// writes the user's &, < and > as &amp;, &lt; and &gt;
// (https://api.slack.com/reference/surfaces/formatting#escaping), and with
// the option on it wraps a link as <url> or <url|label> and a mention as
// <@U…>, <@U…|name>, <#C…|name> or <!…>. Fields splits the text into
// words, keeping such markup whole, and refuses mentions; Parse unwraps a
// link's markup, then unescapes those three entities exactly once (so
// "&amp;amp;" becomes "&amp;", which the query check then refuses), then
// applies the rules above.
package videourl

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxInputLen bounds the text Parse will look at; longer input is refused
// before any parsing.
const MaxInputLen = 2048

// ParseError reports why the input is not an acceptable video URL. Reason is
// a short machine-readable word for audit logs; Error() is meant for users.
type ParseError struct {
	Reason string // e.g. "host", "scheme", "id"
	Msg    string
}

func (e *ParseError) Error() string { return e.Msg }

// Hostile reports whether the refusal looks like an attack (credentials in
// the URL, a look-alike host, an IP literal, control characters) rather than
// a typo, so callers can raise an alert.
//
// A mention (reason "mention") is not hostile: it is a user's mistake,
// and only members of the workspace can send one.
func (e *ParseError) Hostile() bool {
	switch e.Reason {
	case "userinfo", "port", "ip", "control", "lookalike":
		return true
	}
	return false
}

func refuse(reason, format string, args ...any) *ParseError {
	return &ParseError{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

var allowedHosts = map[string]bool{
	"youtube.com":       true,
	"www.youtube.com":   true,
	"m.youtube.com":     true,
	"music.youtube.com": true,
	"youtu.be":          true,
}

// ValidID reports whether id is exactly 11 characters of [A-Za-z0-9_-].
func ValidID(id string) bool {
	if len(id) != 11 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// Parse returns the video ID named by text, or a *ParseError.
func Parse(text string) (string, error) {
	if len(text) > MaxInputLen {
		return "", refuse("length", "that link is too long (%d bytes, the limit is %d)", len(text), MaxInputLen)
	}
	for _, r := range text {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u200b' || r == '\u202e' || r == '\ufeff' {
			return "", refuse("control", "that link contains control or invisible characters")
		}
	}
	s := strings.TrimSpace(text)
	if isMention(s) {
		return "", mentionError()
	}
	// The markup first, then the entities: a < or > that the user typed
	// arrives as &lt; or &gt; and must not open or close markup.
	s = slackUnescaper.Replace(unwrapSlack(s))
	if s == "" {
		return "", refuse("empty", "no link given")
	}
	// net/url accepts many things browsers would not; keep it to one token.
	if strings.ContainsAny(s, " \\\"'`") {
		return "", refuse("syntax", "that is not a single link")
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", refuse("syntax", "that is not a valid link")
	}
	switch u.Scheme {
	case "https", "http": // http is upgraded: only the ID survives anyway
	case "":
		return "", refuse("scheme", "please paste the whole link, starting with https://")
	default:
		return "", refuse("scheme", "only https links are accepted")
	}
	if u.Opaque != "" {
		return "", refuse("syntax", "that is not a valid link")
	}
	if u.User != nil {
		return "", refuse("userinfo", "links with a user name or password are refused")
	}
	if u.Port() != "" || strings.HasSuffix(u.Host, ":") {
		return "", refuse("port", "links with a port number are refused")
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return "", refuse("host", "the link has no host")
	}
	if strings.HasPrefix(u.Host, "[") || net.ParseIP(strings.TrimSuffix(host, ".")) != nil {
		return "", refuse("ip", "links to an IP address are refused")
	}
	if !allowedHosts[host] {
		if strings.Contains(host, "youtube") || strings.Contains(host, "youtu.be") {
			return "", refuse("lookalike", "%q is not a YouTube host", host)
		}
		return "", refuse("host", "only YouTube links are accepted")
	}
	if u.Fragment != "" && strings.ContainsAny(u.Fragment, "<>") {
		return "", refuse("syntax", "that is not a valid link")
	}

	var id string
	path := u.EscapedPath()
	if host == "youtu.be" {
		id = singleSegment(path, "/")
	} else {
		switch {
		case path == "/watch":
			q, err := url.ParseQuery(u.RawQuery)
			if err != nil {
				return "", refuse("syntax", "the link's query string is malformed")
			}
			vs := q["v"]
			if len(vs) != 1 {
				return "", refuse("id", "the link must name exactly one video (v=…)")
			}
			id = vs[0]
		case strings.HasPrefix(path, "/shorts/"):
			id = singleSegment(path, "/shorts/")
		case strings.HasPrefix(path, "/live/"):
			id = singleSegment(path, "/live/")
		case strings.HasPrefix(path, "/embed/"):
			id = singleSegment(path, "/embed/")
		default:
			return "", refuse("path", "that YouTube link does not point at a single video")
		}
	}
	if !ValidID(id) {
		return "", refuse("id", "that link does not contain a valid video ID")
	}
	return id, nil
}

// Fields splits the text of a slash command into words: a word that
// begins with Slack's markup, "<" up to the next ">", keeps that markup
// whole (a link's label may hold spaces) together with anything that
// follows it up to white space; other words end at white space, as in
// strings.Fields. Entities are left as they are (Parse unescapes a link).
//
// It refuses, with a *ParseError of reason "mention", a text in which any
// word mentions a user, a channel, a group or everyone: Slack's <@…>,
// <#…> and <!…> markup (the escaping option on), or a word that begins
// with @ or # (the option off). ytkeep takes a link and a format, and a
// mention is neither; nothing Slack sends in ordinary use puts one there.
func Fields(text string) ([]string, error) {
	var words []string
	for i := 0; i < len(text); {
		r, n := utf8.DecodeRuneInString(text[i:])
		if unicode.IsSpace(r) {
			i += n
			continue
		}
		start := i
		if text[i] == '<' {
			if end := strings.IndexByte(text[i:], '>'); end > 0 {
				i += end + 1
			}
		}
		for i < len(text) {
			r, n := utf8.DecodeRuneInString(text[i:])
			if unicode.IsSpace(r) {
				break
			}
			i += n
		}
		w := text[start:i]
		if isMention(w) {
			return nil, mentionError()
		}
		words = append(words, w)
	}
	return words, nil
}

func mentionError() *ParseError {
	return refuse("mention", "that mentions a person, a channel or a group; give a YouTube link instead")
}

// isMention reports whether the word is a mention (see Fields).
func isMention(w string) bool {
	for _, p := range []string{"<@", "<#", "<!", "@", "#"} {
		if strings.HasPrefix(w, p) {
			return true
		}
	}
	return false
}

// slackUnescaper undoes Slack's escaping of the three characters it
// escapes, in one pass: what it produces is not looked at again.
var slackUnescaper = strings.NewReplacer("&amp;", "&", "&lt;", "<", "&gt;", ">")

// unwrapSlack removes Slack's link markup: <url> or <url|label>.
func unwrapSlack(s string) string {
	if strings.HasPrefix(s, "<") && strings.HasSuffix(s, ">") {
		s = s[1 : len(s)-1]
		if i := strings.IndexByte(s, '|'); i >= 0 {
			s = s[:i]
		}
	}
	return s
}

// singleSegment returns the path segment after prefix, allowing one trailing
// slash and nothing else.
func singleSegment(path, prefix string) string {
	rest := strings.TrimPrefix(path, prefix)
	rest = strings.TrimSuffix(rest, "/")
	if strings.Contains(rest, "/") {
		return ""
	}
	return rest
}
