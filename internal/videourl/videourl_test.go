package videourl

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

func TestParseAccepts(t *testing.T) {
	const id = "dQw4w9WgXcQ"
	tests := []struct{ name, in string }{
		{"watch", "https://www.youtube.com/watch?v=dQw4w9WgXcQ"},
		{"watch bare host", "https://youtube.com/watch?v=dQw4w9WgXcQ"},
		{"watch mobile", "https://m.youtube.com/watch?v=dQw4w9WgXcQ&t=42s"},
		{"music", "https://music.youtube.com/watch?v=dQw4w9WgXcQ&list=RDAMVM"},
		{"http upgraded", "http://www.youtube.com/watch?v=dQw4w9WgXcQ"},
		{"uppercase host", "https://WWW.YouTube.COM/watch?v=dQw4w9WgXcQ"},
		{"short link", "https://youtu.be/dQw4w9WgXcQ"},
		{"short link with si", "https://youtu.be/dQw4w9WgXcQ?si=abc"},
		{"shorts", "https://www.youtube.com/shorts/dQw4w9WgXcQ"},
		{"live", "https://www.youtube.com/live/dQw4w9WgXcQ"},
		{"embed", "https://www.youtube.com/embed/dQw4w9WgXcQ/"},
		{"slack wrapped", "<https://www.youtube.com/watch?v=dQw4w9WgXcQ>"},
		{"slack labelled", "<https://youtu.be/dQw4w9WgXcQ|youtu.be/dQw4w9WgXcQ>"},
		{"surrounding space", "  https://youtu.be/dQw4w9WgXcQ  "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q) = error %v", tt.in, err)
			}
			if got != id {
				t.Fatalf("Parse(%q) = %q, want %q", tt.in, got, id)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	tests := []struct {
		name, in, reason string
		hostile          bool
	}{
		{"empty", "", "empty", false},
		{"no scheme", "www.youtube.com/watch?v=dQw4w9WgXcQ", "scheme", false},
		{"ftp", "ftp://www.youtube.com/watch?v=dQw4w9WgXcQ", "scheme", false},
		{"javascript", "javascript:alert(1)", "scheme", false},
		{"file", "file:///etc/passwd", "scheme", false},
		{"other host", "https://vimeo.com/123", "host", false},
		{"suffix trick", "https://www.youtube.com.evil.example/watch?v=dQw4w9WgXcQ", "lookalike", true},
		{"prefix trick", "https://evilyoutube.com/watch?v=dQw4w9WgXcQ", "lookalike", true},
		{"trailing dot", "https://www.youtube.com./watch?v=dQw4w9WgXcQ", "lookalike", true},
		{"userinfo", "https://www.youtube.com@evil.example/watch?v=dQw4w9WgXcQ", "userinfo", true},
		{"userinfo on good host", "https://user:pw@www.youtube.com/watch?v=dQw4w9WgXcQ", "userinfo", true},
		{"port", "https://www.youtube.com:8443/watch?v=dQw4w9WgXcQ", "port", true},
		{"empty port", "https://www.youtube.com:/watch?v=dQw4w9WgXcQ", "port", true},
		{"ipv4", "https://142.250.1.1/watch?v=dQw4w9WgXcQ", "ip", true},
		{"ipv6", "https://[::1]/watch?v=dQw4w9WgXcQ", "ip", true},
		{"short id", "https://youtu.be/dQw4w9WgXc", "id", false},
		{"long id", "https://youtu.be/dQw4w9WgXcQQ", "id", false},
		{"bad char id", "https://youtu.be/dQw4w9WgX%27", "id", false},
		{"two v", "https://www.youtube.com/watch?v=dQw4w9WgXcQ&v=aaaaaaaaaaa", "id", false},
		{"no v", "https://www.youtube.com/watch?list=PL123", "id", false},
		{"playlist", "https://www.youtube.com/playlist?list=PL123", "path", false},
		{"channel", "https://www.youtube.com/@somebody", "path", false},
		{"extra segment", "https://www.youtube.com/shorts/dQw4w9WgXcQ/x", "id", false},
		{"option smuggling", "--exec=id", "scheme", false},
		{"space inside", "https://youtu.be/dQw4w9WgXcQ --exec id", "syntax", false},
		{"newline", "https://youtu.be/dQw4w9WgXcQ\n--exec", "control", true},
		{"nul", "https://youtu.be/dQw4w9WgXcQ\x00", "control", true},
		{"rtl override", "https://youtu.be/\u202edQw4w9WgXcQ", "control", true},
		{"too long", "https://youtu.be/" + strings.Repeat("a", MaxInputLen), "length", false},
		{"percent in host", "https://www.you%74ube.com/watch?v=dQw4w9WgXcQ", "syntax", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %q, want refusal %q", tt.in, id, tt.reason)
			}
			pe, ok := err.(*ParseError)
			if !ok {
				t.Fatalf("Parse(%q) error %T, want *ParseError", tt.in, err)
			}
			if pe.Reason != tt.reason {
				t.Errorf("Parse(%q) reason %q (%v), want %q", tt.in, pe.Reason, pe, tt.reason)
			}
			if pe.Hostile() != tt.hostile {
				t.Errorf("Parse(%q) Hostile() = %v, want %v", tt.in, pe.Hostile(), tt.hostile)
			}
		})
	}
}

// TestHostileSamples runs every line of testdata/hostile.txt through Parse;
// each must be refused.
func TestHostileSamples(t *testing.T) {
	f, err := os.Open("testdata/hostile.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		n++
		if id, err := Parse(line); err == nil {
			t.Errorf("hostile sample %q accepted as %q", line, id)
		}
	}
	if n < 10 {
		t.Fatalf("only %d hostile samples read", n)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"https://www.youtube.com/watch?v=dQw4w9WgXcQ",
		"<https://youtu.be/dQw4w9WgXcQ|x>",
		"https://www.youtube.com/shorts/dQw4w9WgXcQ",
		"https://a@youtube.com/watch?v=dQw4w9WgXcQ",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			if _, ok := err.(*ParseError); !ok {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		if !ValidID(id) {
			t.Fatalf("Parse(%q) returned invalid ID %q", s, id)
		}
		if !strings.Contains(s, id) {
			t.Fatalf("Parse(%q) = %q, which is not in the input", s, id)
		}
	})
}
