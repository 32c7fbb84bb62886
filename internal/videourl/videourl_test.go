package videourl

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
	"unicode"
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
		// As Slack sends them (&, < and > always escaped; links wrapped
		// when the command's escaping option is on), with the second
		// query parameters YouTube's share buttons add.
		{"escaped t", "https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;t=30s"},
		{"escaped list", "https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;list=PLrAXtmErZgOeiKm4sgNOknGvNjby9efdf&amp;index=2"},
		{"escaped pp", "https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;pp=ygUJcmljayByb2xs"},
		{"escaped feature", "https://m.youtube.com/watch?feature=share&amp;v=dQw4w9WgXcQ"},
		{"escaped si", "https://youtu.be/dQw4w9WgXcQ?si=Ab12Cd34Ef56Gh78&amp;t=5"},
		{"escaped shorts", "https://www.youtube.com/shorts/dQw4w9WgXcQ?feature=share&amp;si=x"},
		{"escaped music", "https://music.youtube.com/watch?v=dQw4w9WgXcQ&amp;si=x"},
		{"wrapped escaped", "<https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;t=30s>"},
		{"wrapped escaped labelled", "<https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;list=PL1&amp;index=2|youtube.com/watch?v=dQw4w9WgXcQ&amp;list=PL1>"},
		{"wrapped, typed without scheme", "<http://youtu.be/dQw4w9WgXcQ|youtu.be/dQw4w9WgXcQ>"},
		{"escaped < in a dropped parameter", "<https://youtu.be/dQw4w9WgXcQ?x=&lt;b&gt;>"},
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
		// Entities are undone once: what that leaves must pass the rules.
		{"double escaped", "https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;amp;t=30s", "syntax", false},
		{"double escaped, wrapped", "<https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;amp;t=30s>", "syntax", false},
		{"escaped second v", "https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;v=aaaaaaaaaaa", "id", false},
		{"escaped & in the id", "https://youtu.be/dQw4w9WgX&amp;Q", "id", false},
		{"escaped & before userinfo", "https://www.youtube.com&amp;@evil.example/watch?v=dQw4w9WgXcQ", "userinfo", true},
		{"escaped < in host", "https://www.youtube.com&lt;.evil.example/watch?v=dQw4w9WgXcQ", "lookalike", true},
		{"typed brackets", "&lt;https://youtu.be/dQw4w9WgXcQ&gt;", "syntax", false},
		{"escaped > ends no markup", "<https://evil.example&gt;|https://youtu.be/dQw4w9WgXcQ>", "host", false},
		{"numeric entity", "https://www.youtube.com/watch?v&#61;dQw4w9WgXcQ", "id", false},
		// Mentions, with the escaping option on and off.
		{"user mention", "<@U123ABC>", "mention", false},
		{"user mention with name", "<@U123ABC|bob>", "mention", false},
		{"channel mention", "<#C123ABC|general>", "mention", false},
		{"special mention", "<!here>", "mention", false},
		{"plain user mention", "@bob", "mention", false},
		{"plain channel mention", "#general", "mention", false},
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

// TestHostileTexts runs every line of testdata/hostile-text.txt as a
// command's text: Fields must refuse it, or Parse its first word.
func TestHostileTexts(t *testing.T) {
	b, err := os.ReadFile("testdata/hostile-text.txt")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "# ") {
			continue
		}
		n++
		words, err := Fields(line)
		if err != nil {
			continue
		}
		if len(words) == 0 {
			t.Errorf("%q: no words", line)
			continue
		}
		if id, err := Parse(words[0]); err == nil {
			t.Errorf("hostile text %q accepted as %q", line, id)
		}
	}
	if n < 10 {
		t.Fatalf("only %d hostile texts read", n)
	}
}

func TestFields(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  help ", []string{"help"}},
		{"<https://x|a b c> 720p", []string{"<https://x|a b c>", "720p"}},
		{"https://youtu.be/x audio", []string{"https://youtu.be/x", "audio"}},
		{"<https://x|label", []string{"<https://x|label"}},
		{"<https://x>junk 720p", []string{"<https://x>junk", "720p"}},
		{"a\tb\u00a0c\n", []string{"a", "b", "c"}},
		{"<https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;t=30s> audio", []string{"<https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;t=30s>", "audio"}},
		{"https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;t=30s 720p", []string{"https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;t=30s", "720p"}},
		{"<https://youtu.be/x|@bob> 720p", []string{"<https://youtu.be/x|@bob>", "720p"}},
		{"a<@U1|b c>", []string{"a<@U1|b", "c>"}},
	}
	for _, tt := range tests {
		got, err := Fields(tt.in)
		if err != nil || strings.Join(got, "\x00") != strings.Join(tt.want, "\x00") || len(got) != len(tt.want) {
			t.Errorf("Fields(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{
		"<@U123ABC>",
		"<@U123ABC|bob smith> https://youtu.be/dQw4w9WgXcQ",
		"https://youtu.be/dQw4w9WgXcQ <@U123ABC>",
		"https://youtu.be/dQw4w9WgXcQ <#C123ABC|general>",
		"<!here> https://youtu.be/dQw4w9WgXcQ",
		"<!subteam^S123ABC|@team>",
		"@bob https://youtu.be/dQw4w9WgXcQ",
		"https://youtu.be/dQw4w9WgXcQ #general",
	} {
		got, err := Fields(in)
		pe, ok := err.(*ParseError)
		if !ok || pe.Reason != "mention" || pe.Hostile() {
			t.Errorf("Fields(%q) = %q, %v; want a refusal for a mention", in, got, err)
		}
	}
}

// decodePercent decodes the valid %XX escapes of s and leaves the rest:
// a video ID may come percent-encoded in the query (v=%64Qw…).
func decodePercent(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// FuzzParse runs Fields on the input as a command's text and Parse on
// the input and on each word Fields finds.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"https://www.youtube.com/watch?v=dQw4w9WgXcQ",
		"<https://youtu.be/dQw4w9WgXcQ|x>",
		"https://www.youtube.com/shorts/dQw4w9WgXcQ",
		"https://a@youtube.com/watch?v=dQw4w9WgXcQ",
		// Slack's forms: entities, markup, mentions.
		"https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;t=30s",
		"<https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;list=PL1|youtube.com/watch?v=dQw4w9WgXcQ&amp;list=PL1> 720p",
		"https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;amp;t=30s",
		"&lt;https://youtu.be/dQw4w9WgXcQ&gt;",
		"<@U123ABC|bob> https://youtu.be/dQw4w9WgXcQ",
		"<#C123ABC|general>",
		"<!here>",
		"@bob audio",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		words, err := Fields(s)
		if err != nil {
			if pe, ok := err.(*ParseError); !ok || pe.Reason != "mention" {
				t.Fatalf("Fields(%q): %v", s, err)
			}
		}
		for _, w := range words {
			if w == "" || !strings.Contains(s, w) || isMention(w) {
				t.Fatalf("Fields(%q) has word %q", s, w)
			}
			if !strings.HasPrefix(w, "<") && strings.ContainsFunc(w, unicode.IsSpace) {
				t.Fatalf("Fields(%q) has word %q with white space", s, w)
			}
		}
		for _, in := range append([]string{s}, words...) {
			id, err := Parse(in)
			if err != nil {
				if _, ok := err.(*ParseError); !ok {
					t.Fatalf("error of type %T", err)
				}
				continue
			}
			if !ValidID(id) {
				t.Fatalf("Parse(%q) returned invalid ID %q", in, id)
			}
			// Unescaping only makes &, < and >, which no ID holds: the
			// ID is in the input, once its %XX escapes are decoded.
			if !strings.Contains(in, id) && !strings.Contains(decodePercent(in), id) {
				t.Fatalf("Parse(%q) = %q, which is not in the input", in, id)
			}
		}
	})
}
