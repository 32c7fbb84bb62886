package egress

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	good := []struct {
		name, head string
		want       Request
	}{
		{"connect", "CONNECT www.youtube.com:443 HTTP/1.1\r\nHost: www.youtube.com:443\r\nProxy-Authorization: Basic am9iOnRva2Vu\r\nProxy-Connection: keep-alive\r\n\r\n",
			Request{Connect: true, Host: "www.youtube.com", Port: 443, User: "job", Token: "token"}},
		{"upper-case host is folded", "CONNECT WWW.YouTube.COM:443 HTTP/1.0\r\n\r\n", Request{Connect: true, Host: "www.youtube.com", Port: 443}},
		{"ipv4 literal (refused later by the policy)", "CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n", Request{Connect: true, Host: "169.254.169.254", Port: 80}},
		{"ipv6 literal", "CONNECT [::FFFF:7F00:1]:443 HTTP/1.1\r\n\r\n", Request{Connect: true, Host: "::ffff:127.0.0.1", Port: 443}},
		{"get for the test origin", "GET http://127.0.0.1:8080/media/x.mp4 HTTP/1.1\r\nUser-Agent: yt-dlp\r\nAccept: */*\r\n\r\n",
			Request{Host: "127.0.0.1", Port: 8080, Path: "/media/x.mp4", Header: []string{"User-Agent: yt-dlp", "Accept: */*"}}},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRequest([]byte(tt.head))
			if err != nil {
				t.Fatal(err)
			}
			if r.Connect != tt.want.Connect || r.Host != tt.want.Host || r.Port != tt.want.Port || r.Path != tt.want.Path ||
				r.User != tt.want.User || r.Token != tt.want.Token || strings.Join(r.Header, "|") != strings.Join(tt.want.Header, "|") {
				t.Fatalf("got %+v, want %+v", r, tt.want)
			}
		})
	}
	for name, b := range hostileHeads(t) {
		t.Run("hostile/"+name, func(t *testing.T) {
			if r, err := ParseRequest(b); err == nil {
				t.Fatalf("accepted as %+v", r)
			}
		})
	}
}

func hostileHeads(t testing.TB) map[string][]byte {
	files, err := filepath.Glob(filepath.Join("testdata", "hostile", "*.txt"))
	if err != nil || len(files) < 20 {
		t.Fatalf("hostile heads: %v, %d files", err, len(files))
	}
	m := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m[filepath.Base(f)] = b
	}
	return m
}

// FuzzParseRequest: what is accepted names a well-formed destination, and
// the request line rebuilt from it parses to the same destination.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte("CONNECT www.youtube.com:443 HTTP/1.1\r\nProxy-Authorization: Basic am9iOnRva2Vu\r\n\r\n"))
	f.Add([]byte("GET http://127.0.0.1:8080/media/x.mp4 HTTP/1.1\r\nAccept: */*\r\n\r\n"))
	for _, b := range hostileHeads(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			return
		}
		if r.Port == 0 || r.Host == "" || strings.ContainsAny(r.Host, " \r\n\x00/@[]") {
			t.Fatalf("accepted %q as %+v", b, r)
		}
		if !r.Connect && !strings.HasPrefix(r.Path, "/") {
			t.Fatalf("accepted %q as %+v", b, r)
		}
		host := r.Host
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		line := "CONNECT " + host + ":" + itoa(r.Port) + " HTTP/1.1\r\n\r\n"
		again, err := ParseRequest([]byte(line))
		if err != nil || again.Host != r.Host || again.Port != r.Port {
			t.Fatalf("%q: rebuilt %q parses as %+v, %v", b, line, again, err)
		}
	})
}

func itoa(p uint16) string {
	var b [5]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + p%10)
		p /= 10
		if p == 0 {
			return string(b[i:])
		}
	}
}
