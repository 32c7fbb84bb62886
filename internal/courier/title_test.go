package courier

import (
	"regexp"
	"strings"
	"testing"

	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/reply"
)

// What TestHostileTitles checks in the text posted to Slack, and why:
var (
	// Slack reads "<…>" as a link, a user, channel or group mention, or a
	// command (<!channel>), and "&…;" as an entity; escape leaves no < or
	// >, and every & starts one of the three entities Slack decodes.
	bareAmp = regexp.MustCompile(`&(?:amp;|lt;|gt;)?`)
	// mrkdwn markers, ASCII and full-width (which Slack also reads).
	markers = regexp.MustCompile("[*_~`＊＿～｀]")
	// What Slack turns into a link or a mention without any markup: a
	// dot between two letters or digits is a domain, an IP address or
	// www.; a colon before a slash, letter or digit is a scheme
	// ("https://", "mailto:", "javascript:") or a port; @ or # before a
	// letter or digit is @here, @channel, @everyone, @user, an e-mail
	// address or #channel. Dots include the full-width and ideographic
	// ones, which IDNA reads as dots.
	autolink = regexp.MustCompile(`[\pL\pN][.．。｡][\pL\pN]|[:：][/\pL\pN]|[@＠﹫#＃][\pL\pN]`)
)

// TestHostileTitles: a video title is chosen by whoever uploaded the
// video. In the message that tells the user it was saved, it must show
// literally and do nothing: no link, mention, formatting, or bare URL
// Slack would make clickable. It must also still read as the title: undo
// the look-alikes, zero-width spaces and entities, and it is the title.
func TestHostileTitles(t *testing.T) {
	titles := map[string]string{
		"bare url":            "https://evil.example/x",
		"bare domain":         "evil.example",
		"www":                 "visit www.evil.example now",
		"ip and port":         "http://127.0.0.1:8080/login",
		"other schemes":       "javascript:alert(1) mailto:a slack://open",
		"e-mail":              "write to admin@evil.example",
		"slack link":          "<https://evil.example|Click to keep the video>",
		"mention syntax":      "<!channel> <!here|here> <@U0ADMIN> <#C0GENERAL> <!subteam^S0>",
		"entity-encoded":      "&lt;!channel&gt; &amp;lt;https://evil.example&amp;gt;",
		"plain mentions":      "@here @channel @everyone @admin #general",
		"mrkdwn":              "*bold* _it_ ~s~ `code` ```block```",
		"full-width":          "＊bold＊ ＿it＿ ～s～ ｀code｀ evil．example evil。example ＠here",
		"quote":               "> quoted",
		"emoji":               ":rotating_light: urgent",
		"closes the bold":     "x* <!channel> *y",
		"ordinary with colon": "Episode 2: the return",
	}
	p := &reply.Info{Video: "dQw4w9WgXcQ", Format: job.FormatBest}
	const prefix = ":white_check_mark: Saved *"
	for name, title := range titles {
		t.Run(name, func(t *testing.T) {
			title = job.SanitizeTitle(title) // as ParseResult requires
			msg := Message(p, &job.Result{Status: job.StatusDone, Title: title, Duration: 3, Size: 1 << 20, File: "dQw4w9WgXcQ-best.mp4"})
			end := strings.LastIndex(msg, "* (0:03, 1.0 MiB) as `dQw4w9WgXcQ-best.mp4`.")
			if !strings.HasPrefix(msg, prefix) || end < len(prefix) {
				t.Fatalf("message %q does not frame the title as expected", msg)
			}
			shown := msg[len(prefix):end]
			if strings.ContainsAny(msg, "<>") {
				t.Errorf("%q: < or > left for Slack to parse", msg)
			}
			for _, m := range bareAmp.FindAllString(shown, -1) {
				if m == "&" {
					t.Errorf("%q: an & that is not one of Slack's entities", shown)
				}
			}
			if m := markers.FindString(shown); m != "" {
				t.Errorf("%q: mrkdwn marker %q", shown, m)
			}
			if m := autolink.FindString(shown); m != "" {
				t.Errorf("%q: %q is linkable", shown, m)
			}
			if back := uninert(shown); back != fullWidthFold.Replace(title) {
				t.Errorf("shown as %q, which reads %q, not the title %q", shown, back, title)
			}
		})
	}
	if got := Message(p, &job.Result{Status: job.StatusDone, Title: "A plain title", Size: 5, File: "dQw4w9WgXcQ-best.mp4"}); got !=
		":white_check_mark: Saved *A plain title* (5 B) as `dQw4w9WgXcQ-best.mp4`." {
		t.Errorf("a plain title changed: %q", got)
	}
}

// fullWidthFold: inert shows the full-width ～ and ｀ with the same
// look-alikes as ~ and `, so they read as those.
var fullWidthFold = strings.NewReplacer("～", "~", "｀", "`")

// uninert undoes what inert does, for reading: zero-width spaces out,
// look-alikes back, entities decoded.
func uninert(s string) string {
	s = strings.ReplaceAll(s, "\u200b", "")
	return strings.NewReplacer("∗", "*", "﹡", "＊", "ˍ", "_", "⸏", "＿", "∼", "~", "ˋ", "`",
		"&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(s)
}
