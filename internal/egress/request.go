// Package egress is the downloader domain's only way out to the network:
// an HTTP proxy that the per-job children (yt-dlp, python, ffmpeg) reach
// on one loopback port, and that connects only where its Policy allows —
// named hosts, public addresses, allowed ports — to the address it
// checked itself. The children hold no other network right: Landlock lets
// them connect to the proxy's port alone, and seccomp refuses them every
// socket but TCP.
//
// The proxy's input is hostile: the request head comes from a child that
// may run an attacker's code. ParseRequest is its one parser.
package egress

import (
	"bytes"
	"encoding/base64"
	"net/netip"
	"strconv"
	"strings"
)

// MaxHead caps a request head (request line and headers).
const MaxHead = 8 << 10

// Request is a parsed proxy request head.
type Request struct {
	// Connect is true for CONNECT host:port (a tunnel, for https); false
	// for GET http://host:port/path, which the proxy relays only to a
	// test origin.
	Connect bool
	Host    string // lowercase name or IP literal, no brackets, no trailing dot
	Port    uint16
	Path    string // GET only: the origin-form path, "/..."
	// User and Token are the proxy credentials (Proxy-Authorization:
	// Basic): they say which job the request belongs to.
	User, Token string
	// Header holds the GET request's other header lines, verbatim, for
	// the test origin.
	Header []string
}

// ParseError is a refused request head.
type ParseError struct{ Msg string }

func (e *ParseError) Error() string { return "bad proxy request: " + e.Msg }

func bad(msg string) error { return &ParseError{msg} }

// ParseRequest parses a request head: everything up to and including the
// empty line that ends it, CRLF line ends only, at most MaxHead bytes. It
// accepts "CONNECT host:port HTTP/1.x" and "GET http://host:port/path
// HTTP/1.x", headers of token names and visible values, and nothing
// else: no folded lines, no NUL or bare CR, one Proxy-Authorization at
// most, and no body (Content-Length or Transfer-Encoding is refused).
func ParseRequest(head []byte) (*Request, error) {
	if len(head) > MaxHead {
		return nil, bad("head too long")
	}
	body, ok := bytes.CutSuffix(head, []byte("\r\n\r\n"))
	if !ok {
		return nil, bad("head does not end with an empty line")
	}
	lines := strings.Split(string(body), "\r\n")
	for _, l := range lines {
		for i := 0; i < len(l); i++ {
			if c := l[i]; c < 0x20 && c != '\t' || c == 0x7f {
				return nil, bad("control character")
			}
		}
	}
	f := strings.Split(lines[0], " ")
	if len(f) != 3 || (f[2] != "HTTP/1.1" && f[2] != "HTTP/1.0") {
		return nil, bad("malformed request line")
	}
	r := &Request{}
	var authority string
	switch f[0] {
	case "CONNECT":
		r.Connect, authority = true, f[1]
	case "GET":
		rest, ok := strings.CutPrefix(f[1], "http://")
		if !ok {
			return nil, bad("GET needs an absolute http:// URI")
		}
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			return nil, bad("GET needs a path")
		}
		authority, r.Path = rest[:i], rest[i:]
		if strings.ContainsAny(r.Path, "#") {
			return nil, bad("fragment in path")
		}
	default:
		return nil, bad("method not allowed")
	}
	host, port, err := splitAuthority(authority)
	if err != nil {
		return nil, err
	}
	r.Host, r.Port = host, port
	auth := 0
	for _, l := range lines[1:] {
		name, value, ok := strings.Cut(l, ":")
		if !ok || name == "" || !isToken(name) {
			return nil, bad("malformed header line")
		}
		value = strings.Trim(value, " \t")
		switch strings.ToLower(name) {
		case "proxy-authorization":
			auth++
			if auth > 1 {
				return nil, bad("two Proxy-Authorization headers")
			}
			if r.User, r.Token, err = basicAuth(value); err != nil {
				return nil, err
			}
		case "content-length", "transfer-encoding":
			return nil, bad("a request with a body")
		case "proxy-connection", "connection", "keep-alive", "te", "trailer", "upgrade":
			// hop-by-hop: not passed on
		default:
			if !r.Connect {
				r.Header = append(r.Header, name+": "+value)
			}
		}
	}
	return r, nil
}

// splitAuthority parses host:port: a DNS name (letters, digits, hyphens,
// dots; labels of 1 to 63, at most 253 in all), an IPv4 literal, or an
// IPv6 literal in brackets; a decimal port from 1 to 65535 without
// leading zeros.
func splitAuthority(a string) (string, uint16, error) {
	i := strings.LastIndexByte(a, ':')
	if i < 0 {
		return "", 0, bad("no port")
	}
	host, ps := a[:i], a[i+1:]
	p, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || p == 0 || strconv.FormatUint(p, 10) != ps {
		return "", 0, bad("bad port")
	}
	if strings.HasPrefix(host, "[") {
		inner, ok := strings.CutSuffix(host[1:], "]")
		ip, err := netip.ParseAddr(inner)
		if !ok || err != nil || !ip.Is6() || ip.Zone() != "" {
			return "", 0, bad("bad IPv6 literal")
		}
		return ip.String(), uint16(p), nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if !ip.Is4() {
			return "", 0, bad("bad IP literal")
		}
		return ip.String(), uint16(p), nil
	}
	host = strings.ToLower(host)
	if !validName(host) {
		return "", 0, bad("bad host name")
	}
	return host, uint16(p), nil
}

// validName reports whether h is a DNS name: letters, digits, hyphens and
// dots, labels of 1 to 63, at most 253 in all, and a last label that is not
// all digits (so "2130706433" or "0177.0.0.1", which some resolvers read
// as addresses, are not names).
func validName(h string) bool {
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	labels := strings.Split(h, ".")
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return false
	}
	for _, label := range labels {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return false
			}
		}
	}
	return true
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

func basicAuth(v string) (user, token string, err error) {
	enc, ok := strings.CutPrefix(v, "Basic ")
	if !ok {
		return "", "", bad("Proxy-Authorization is not Basic")
	}
	b, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(b) > 256 {
		return "", "", bad("bad Proxy-Authorization")
	}
	user, token, ok = strings.Cut(string(b), ":")
	if !ok {
		return "", "", bad("bad Proxy-Authorization")
	}
	return user, token, nil
}
