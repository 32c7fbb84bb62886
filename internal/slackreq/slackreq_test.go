package slackreq

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slack-go/slack"
)

// Slack's documented example (docs "Verifying requests from Slack").
const (
	docSecret = "8f742231b10e8888abcd99yyyzzz85a5"
	docTS     = "1531420618"
	docBody   = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
	docSig    = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
)

func docRequest() *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/slack/commands", strings.NewReader(docBody))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("X-Slack-Request-Timestamp", docTS)
	r.Header.Set("X-Slack-Signature", docSig)
	return r
}

// TestSlackDocumentedExample pins the clock to the example's timestamp.
// slack-go's verifier reads the wall clock, so the test runs in a synctest
// bubble, whose fake clock is moved to the example's second.
func TestSlackDocumentedExample(t *testing.T) {
	if got := Sign(docSecret, docTS, []byte(docBody)); got != docSig {
		t.Fatalf("Sign = %s, want %s", got, docSig)
	}
	synctest.Test(t, func(t *testing.T) {
		sec, _ := strconv.ParseInt(docTS, 10, 64)
		// The receiver started before Slack signed the example (a
		// Verifier refuses requests signed before it was made), and the
		// request arrives 30 s after it was signed.
		time.Sleep(time.Until(time.Unix(sec, 0)))
		v, err := NewVerifier(docSecret, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Second)
		c, err := v.ReadVerified(docRequest())
		if err != nil {
			t.Fatalf("documented example refused: %v", err)
		}
		if c.TeamID != "T1DC2JH3J" || c.UserID != "U2CERLKJA" || c.ChannelID != "G8PSS9T3V" || c.Command != "/webhook-collect" {
			t.Fatalf("parsed %+v", c)
		}
		if c.ResponseURL != "https://hooks.slack.com/commands/T1DC2JH3J/397700885554/96rGlfmibIGlgcZRskXaIFfN" {
			t.Fatalf("response_url %q", c.ResponseURL)
		}
		// The same request again is a replay.
		if _, err := v.ReadVerified(docRequest()); reason(err) != "replay" {
			t.Fatalf("replay: %v", err)
		}
		// Six minutes later the example is stale.
		time.Sleep(6 * time.Minute)
		v2, _ := NewVerifier(docSecret, nil, 0)
		if _, err := v2.ReadVerified(docRequest()); reason(err) != "stale_timestamp" {
			t.Fatalf("stale: %v", err)
		}
	})
}

func reason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return string(e.Reason)
	}
	return fmt.Sprint(err)
}

func TestVerifyRefuses(t *testing.T) {
	// slack-go checks the window against the wall clock as well, so the
	// fixed "now" must be the real one.
	now := time.Now().Truncate(time.Second)
	clock := func() time.Time { return now }
	const secret = "0123456789abcdef0123456789abcdef"
	body := "team_id=T1&channel_id=C1&user_id=U1&command=%2Fytkeep&text=x&response_url=https%3A%2F%2Fhooks.slack.com%2Fx"
	mk := func(mut func(r *http.Request)) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		SignRequest(r.Header, secret, now, []byte(body))
		if mut != nil {
			mut(r)
		}
		return r
	}
	tests := []struct {
		name   string
		mut    func(r *http.Request)
		reason string
	}{
		{"no signature", func(r *http.Request) { r.Header.Del("X-Slack-Signature") }, "missing_signature"},
		{"no timestamp", func(r *http.Request) { r.Header.Del("X-Slack-Request-Timestamp") }, "missing_signature"},
		{"wrong secret", func(r *http.Request) { SignRequest(r.Header, "another-secret-entirely!", now, []byte(body)) }, "bad_signature"},
		{"v1 scheme", func(r *http.Request) {
			r.Header.Set("X-Slack-Signature", strings.Replace(r.Header.Get("X-Slack-Signature"), "v0=", "v1=", 1))
		}, "bad_signature"},
		{"truncated signature", func(r *http.Request) { r.Header.Set("X-Slack-Signature", r.Header.Get("X-Slack-Signature")[:40]) }, "bad_signature"},
		{"not hex", func(r *http.Request) { r.Header.Set("X-Slack-Signature", "v0="+strings.Repeat("zz", 32)) }, "bad_signature"},
		{"timestamp moved", func(r *http.Request) {
			r.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(now.Unix()-1, 10))
		}, "bad_signature"},
		{"old", func(r *http.Request) { SignRequest(r.Header, secret, now.Add(-301*time.Second), []byte(body)) }, "stale_timestamp"},
		{"future", func(r *http.Request) { SignRequest(r.Header, secret, now.Add(301*time.Second), []byte(body)) }, "stale_timestamp"},
		{"timestamp junk", func(r *http.Request) { r.Header.Set("X-Slack-Request-Timestamp", "1e9") }, "bad_timestamp"},
		{"GET", func(r *http.Request) { r.Method = http.MethodGet }, "method"},
		{"json", func(r *http.Request) { r.Header.Set("Content-Type", "application/json") }, "content_type"},
		{"declared too large", func(r *http.Request) { r.ContentLength = MaxBodyBytes + 1 }, "body_too_large"},
		{"too large", func(r *http.Request) {
			big := body + "&pad=" + strings.Repeat("a", MaxBodyBytes)
			r.Body = httptest.NewRequest("POST", "/", strings.NewReader(big)).Body
			r.ContentLength = -1
			SignRequest(r.Header, secret, now, []byte(big))
		}, "body_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, _ := NewVerifier(secret, clock, 0)
			_, err := v.ReadVerified(mk(tt.mut))
			if got := reason(err); got != tt.reason {
				t.Fatalf("reason %q, want %q", got, tt.reason)
			}
		})
	}
	t.Run("body tampered", func(t *testing.T) {
		v, _ := NewVerifier(secret, clock, 0)
		r := mk(nil)
		r.Body = httptest.NewRequest("POST", "/", strings.NewReader(strings.Replace(body, "U1", "U2", 1))).Body
		if _, err := v.ReadVerified(r); reason(err) != "bad_signature" {
			t.Fatalf("tampered body: %v", err)
		}
	})
	t.Run("accepted", func(t *testing.T) {
		v, _ := NewVerifier(secret, clock, 0)
		c, err := v.ReadVerified(mk(nil))
		if err != nil {
			t.Fatal(err)
		}
		if c.Text != "x" || c.UserID != "U1" {
			t.Fatalf("parsed %+v", c)
		}
	})
}

func TestVerifierAgreesWithSlackGo(t *testing.T) {
	// Our Sign (used only by simulators) and slack-go's verifier must agree.
	const secret = "0123456789abcdef0123456789abcdef"
	for i := 0; i < 50; i++ {
		body := []byte(fmt.Sprintf("text=%d&x=%s", i, strings.Repeat("y", i)))
		h := http.Header{}
		SignRequest(h, secret, time.Now(), body)
		sv, err := slack.NewSecretsVerifier(h, secret)
		if err != nil {
			t.Fatal(err)
		}
		sv.Write(body)
		if err := sv.Ensure(); err != nil {
			t.Fatalf("slack-go refuses our signature for %q", body)
		}
	}
}

func TestReplayCacheBounded(t *testing.T) {
	c := newReplayCache(3)
	now := time.Unix(1000, 0)
	for i, s := range []string{"a", "b", "c"} {
		if !c.add(s, now.Add(time.Duration(i+1)*time.Second), now) {
			t.Fatalf("add %s refused", s)
		}
	}
	if c.add("d", now.Add(time.Minute), now) {
		t.Fatal("full cache accepted a new signature (must fail closed)")
	}
	later := now.Add(1500 * time.Millisecond) // "a" expired
	if !c.add("d", later.Add(time.Minute), later) {
		t.Fatal("cache did not free an expired entry")
	}
	if c.add("b", later.Add(time.Minute), later) {
		t.Fatal("live replay accepted")
	}
	if len(c.entries) != 3 {
		t.Fatalf("%d entries", len(c.entries))
	}
}

// gridBody is a slash command as Slack sends it from a workspace of an
// Enterprise Grid organization to an app installed for the whole
// organization, with the command's escaping option on (the link wrapped,
// its & escaped). The field names are those of
// https://api.slack.com/interactivity/slash-commands; the values are ours.
const gridBody = "token=deprecatedVerificationTok&team_id=T0GRIDWS1&team_domain=grid-ws1" +
	"&enterprise_id=E0GRIDORG&enterprise_name=Grid%20Org&is_enterprise_install=true" +
	"&channel_id=C0GRIDCHAN&channel_name=videos&user_id=W0GRIDUSR&user_name=alice" +
	"&command=%2Fytkeep&text=%3Chttps%3A%2F%2Fwww.youtube.com%2Fwatch%3Fv%3DdQw4w9WgXcQ%26amp%3Bt%3D30s%3E+720p" +
	"&api_app_id=A0YTKEEP01&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT0GRIDWS1%2F1%2Fsecret" +
	"&trigger_id=1.2.3"

func TestParseCommandFields(t *testing.T) {
	c, err := ParseCommand([]byte(gridBody))
	if err != nil {
		t.Fatal(err)
	}
	want := Command{TeamID: "T0GRIDWS1", ChannelID: "C0GRIDCHAN", UserID: "W0GRIDUSR", Command: "/ytkeep",
		Text:        "<https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;t=30s> 720p",
		ResponseURL: "https://hooks.slack.com/commands/T0GRIDWS1/1/secret",
		APIAppID:    "A0YTKEEP01", EnterpriseID: "E0GRIDORG", IsEnterpriseInstall: true}
	if *c != want {
		t.Fatalf("parsed\n%+v, want\n%+v", *c, want)
	}
	// A workspace that is not in an organization: no enterprise fields,
	// or is_enterprise_install=false.
	for _, body := range []string{docBody, docBody + "&is_enterprise_install=false&api_app_id=A0YTKEEP01"} {
		c, err := ParseCommand([]byte(body))
		if err != nil || c.EnterpriseID != "" || c.IsEnterpriseInstall {
			t.Fatalf("%q: %+v, %v", body, c, err)
		}
	}
}

func TestParseCommandRefuses(t *testing.T) {
	tests := map[string]string{
		"repeated user":                 "team_id=T1&channel_id=C1&user_id=U1&user_id=U2&command=%2Fytkeep",
		"no team":                       "channel_id=C1&user_id=U1&command=%2Fytkeep",
		"bad escape":                    "team_id=%zz",
		"repeated app":                  strings.Replace(gridBody, "api_app_id=A0YTKEEP01", "api_app_id=A0YTKEEP01&api_app_id=A0OTHER01", 1),
		"repeated enterprise":           strings.Replace(gridBody, "enterprise_id=E0GRIDORG", "enterprise_id=E0GRIDORG&enterprise_id=E0OTHER", 1),
		"repeated enterprise install":   strings.Replace(gridBody, "is_enterprise_install=true", "is_enterprise_install=true&is_enterprise_install=false", 1),
		"enterprise install not a bool": strings.Replace(gridBody, "is_enterprise_install=true", "is_enterprise_install=1", 1),
		"a certificate check":           "ssl_check=1&token=x",
		"a command and ssl_check":       gridBody + "&ssl_check=1",
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			if c, err := ParseCommand([]byte(body)); err == nil {
				t.Fatalf("accepted %+v", c)
			}
		})
	}
}

func TestHostileBodies(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.form")
	if len(files) < 3 {
		t.Fatalf("%d hostile samples", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if c, err := ParseCommand(b); err == nil {
			t.Errorf("%s parsed as %+v", f, c)
		}
	}
}

// FuzzParseCommand runs ParseCommand and IsSSLCheck on the same body: a
// certificate check (answered unverified) must never parse as a command.
func FuzzParseCommand(f *testing.F) {
	f.Add([]byte(docBody))
	f.Add([]byte("team_id=T&user_id=U&channel_id=C&command=%2Fx&text=%3Chttps%3A%2F%2Fyoutu.be%2Fx%3E"))
	f.Add([]byte(gridBody))
	f.Add([]byte("ssl_check=1&token=xyzz0WbapA4vBCDEFasx0q6G"))
	f.Add([]byte("ssl_check=1"))
	f.Add([]byte("ssl_check=1&" + docBody))
	f.Add([]byte("team_id=T&user_id=U&channel_id=C&command=%2Fx&text=%40bob+%3C%40U123ABC%7Cbob%3E+%3C%23C123ABC%7Cgeneral%3E"))
	f.Fuzz(func(t *testing.T, b []byte) {
		sslCheck := IsSSLCheck(b)
		c, err := ParseCommand(b)
		if err != nil {
			return
		}
		if sslCheck {
			t.Fatalf("%q is a certificate check and parses as a command", b)
		}
		q, _ := url.ParseQuery(string(b))
		if c.UserID != q.Get("user_id") || c.TeamID != q.Get("team_id") || c.APIAppID != q.Get("api_app_id") ||
			c.EnterpriseID != q.Get("enterprise_id") || c.IsEnterpriseInstall != (q.Get("is_enterprise_install") == "true") {
			t.Fatalf("fields differ from the form: %+v", c)
		}
	})
}

// TestSSLCheck: Slack's certificate check (ssl_check=1 and a token) is
// answered before any verification, signed or not; anything more than
// that is verified like any request, so ssl_check cannot carry a
// command past the signature check.
func TestSSLCheck(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	const secret = "0123456789abcdef0123456789abcdef"
	command := "team_id=T1&channel_id=C1&user_id=U1&command=%2Fytkeep&text=x&response_url=https%3A%2F%2Fhooks.slack.com%2Fx"
	tests := []struct {
		name, body string
		sign       string // the key it is signed with; "" unsigned
		want       string // "ssl_check", or the refusal's reason
	}{
		{"unsigned", "ssl_check=1&token=xyzz0WbapA4vBCDEFasx0q6G", "", "ssl_check"},
		{"signed", "ssl_check=1&token=xyzz0WbapA4vBCDEFasx0q6G", secret, "ssl_check"},
		{"badly signed", "ssl_check=1&token=xyzz0WbapA4vBCDEFasx0q6G", "another-secret-entirely!", "ssl_check"},
		{"token first", "token=x&ssl_check=1", "", "ssl_check"},
		{"no token", "ssl_check=1", "", "ssl_check"},
		{"not 1", "ssl_check=0&token=x", "", "missing_signature"},
		{"twice", "ssl_check=1&ssl_check=1", "", "missing_signature"},
		{"two tokens", "ssl_check=1&token=a&token=b", "", "missing_signature"},
		{"another field", "ssl_check=1&token=x&text=y", "", "missing_signature"},
		{"a command, unsigned", "ssl_check=1&" + command, "", "missing_signature"},
		{"a command, badly signed", "ssl_check=1&" + command, "another-secret-entirely!", "bad_signature"},
		{"a command, signed", "ssl_check=1&" + command, secret, "bad_form"},
		{"too large", "ssl_check=1&token=" + strings.Repeat("x", MaxSSLCheckBytes), "", "missing_signature"},
		{"malformed", "ssl_check=1&token=%zz", "", "missing_signature"},
		{"semicolon", "ssl_check=1;token=x", "", "missing_signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, _ := NewVerifier(secret, func() time.Time { return now }, 0)
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tt.body))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tt.sign != "" {
				SignRequest(r.Header, tt.sign, now, []byte(tt.body))
			}
			c, err := v.ReadVerified(r)
			got := reason(err)
			if errors.Is(err, ErrSSLCheck) {
				got = "ssl_check"
			}
			if got != tt.want || c != nil {
				t.Fatalf("got %q (%+v), want %q", got, c, tt.want)
			}
		})
	}
	t.Run("GET", func(t *testing.T) {
		v, _ := NewVerifier(secret, nil, 0)
		r := httptest.NewRequest(http.MethodGet, "/", strings.NewReader("ssl_check=1&token=x"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if _, err := v.ReadVerified(r); reason(err) != "method" {
			t.Fatalf("GET: %v", err)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	const secret = "0123456789abcdef0123456789abcdef"
	v, _ := NewVerifier(secret, nil, 0)
	body := []byte(docBody)
	hs := make([]http.Header, b.N)
	for i := range hs {
		hs[i] = http.Header{}
		bb := append([]byte(nil), body...)
		bb = append(bb, []byte("&n="+strconv.Itoa(i))...)
		SignRequest(hs[i], secret, time.Now(), bb)
		hs[i].Set("X-Body", string(bb))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := v.Verify(hs[i], []byte(hs[i].Get("X-Body"))); err != nil {
			b.Fatal(err)
		}
	}
}

// Every refusal reason is either suspicious (an alert) or not (an event),
// by a method on the error: a misspelt reason cannot silently downgrade
// an alert, since the reasons are constants.
func TestSuspicious(t *testing.T) {
	want := map[Reason]bool{
		ReasonMethod: false, ReasonContentType: false, ReasonBodyTooLarge: false, ReasonBodyRead: false,
		ReasonBadForm: false, ReasonBadRequest: false,
		ReasonMissingSignature: true, ReasonBadTimestamp: true, ReasonStaleTimestamp: true, ReasonBadSignature: true, ReasonReplay: true,
	}
	for r, sus := range want {
		if got := (&Error{Reason: r}).Suspicious(); got != sus {
			t.Errorf("%s: Suspicious() = %v, want %v", r, got, sus)
		}
	}
}
