package receiver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/ytkeep/ytkeep/internal/slackreq"
	"github.com/ytkeep/ytkeep/internal/spool"
	"github.com/ytkeep/ytkeep/internal/testbed"
)

// socketPayload is a slash command payload as Socket Mode delivers it:
// the HTTP form's fields as strings.
const socketPayload = `{"token":"bHKJ2n9AW6Ju3MjciOHfbA1b","team_id":"T0DEMO0001","team_domain":"demo","channel_id":"C0DEMO0001","channel_name":"general","user_id":"U0DEMO0001","user_name":"demo-user","command":"/ytkeep","text":"https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;t=30s 720p","api_app_id":"A0123456789","is_enterprise_install":"false","response_url":"https://hooks.slack.com/commands/T0DEMO0001/1/abc","trigger_id":"1.2.3"}`

func TestPayloadForm(t *testing.T) {
	form, err := payloadForm(json.RawMessage(socketPayload))
	if err != nil {
		t.Fatal(err)
	}
	c, err := slackreq.ParseCommand([]byte(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	if c.TeamID != "T0DEMO0001" || c.Text != "https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;t=30s 720p" || c.APIAppID != "A0123456789" || c.IsEnterpriseInstall {
		t.Errorf("parsed %+v", c)
	}
	// is_enterprise_install as a JSON boolean reads as the form's string.
	form, err = payloadForm(json.RawMessage(strings.Replace(socketPayload, `"is_enterprise_install":"false"`, `"is_enterprise_install":true`, 1)))
	if err != nil || form.Get("is_enterprise_install") != "true" {
		t.Errorf("boolean field: %v, %v", form, err)
	}
	many := "{"
	for i := range 65 {
		many += fmt.Sprintf(`"k%d":"v",`, i)
	}
	many = strings.TrimSuffix(many, ",") + "}"
	for name, bad := range map[string]string{
		"not an object":   `["team_id","T1"]`,
		"nested object":   `{"team_id":{"id":"T1"}}`,
		"array value":     `{"text":["a","b"]}`,
		"number":          `{"team_id":12}`,
		"null":            `{"team_id":null}`,
		"repeated key":    `{"text":"a","text":"b"}`,
		"trailing data":   socketPayload + `{}`,
		"trailing junk":   socketPayload + `x`,
		"empty key":       `{"":"x"}`,
		"too many fields": many,
		"truncated":       socketPayload[:40],
		"empty":           ``,
	} {
		if f, err := payloadForm(json.RawMessage(bad)); err == nil {
			t.Errorf("%s: accepted as %v", name, f)
		}
	}
}

// FuzzPayloadForm: whatever Slack's side of the WebSocket sends, the
// payload either is refused or becomes a form the command parser reads
// without panicking, holding exactly the payload's string fields.
func FuzzPayloadForm(f *testing.F) {
	f.Add([]byte(socketPayload))
	f.Add([]byte(`{"text":"a","text":"b"}`))
	f.Add([]byte(`{"team_id":{"id":"T1"}}`))
	f.Add([]byte(`{"ssl_check":"1","token":"x"}`))
	f.Add([]byte(`{"a":"\u0000","b":true}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		form, err := payloadForm(json.RawMessage(b))
		if err != nil {
			return
		}
		enc := form.Encode()
		back, err := url.ParseQuery(enc)
		if err != nil || len(back) != len(form) {
			t.Fatalf("the form does not survive encoding: %v %v", form, err)
		}
		slackreq.ParseCommand([]byte(enc))
	})
}

func TestEnvelopeCache(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newEnvelopeCache(3, time.Minute)
	c.now = func() time.Time { return now }
	c.put("a", "A")
	c.put("b", "B")
	if r, ok := c.get("a"); !ok || r != "A" {
		t.Errorf("a: %q %v", r, ok)
	}
	c.put("c", "C")
	c.put("d", "D") // over the bound: a goes
	if _, ok := c.get("a"); ok {
		t.Error("a kept past the bound")
	}
	now = now.Add(2 * time.Minute) // past the age: all go
	if _, ok := c.get("d"); ok {
		t.Error("d kept past its age")
	}
	c.put("e", "E")
	if len(c.m) != 1 || len(c.order) != 1 {
		t.Errorf("expired entries kept: %v", c.order)
	}
}

func TestValidEnvelopeID(t *testing.T) {
	for id, want := range map[string]bool{
		"dbdd0ef3-1543-4f94-bfb4-133d0e6c1545": true,
		"":                                     false,
		"a b":                                  false,
		"../x":                                 false,
		strings.Repeat("a", 65):                false,
		"id\n":                                 false,
	} {
		if validEnvelopeID(id) != want {
			t.Errorf("validEnvelopeID(%q) = %v", id, !want)
		}
	}
}

// TestSocketHelloCountsConnections: when Slack's hello counts more
// connections than the receiver opened, someone else holds the app
// token: an alert. With its own connection alone, none.
func TestSocketHelloCountsConnections(t *testing.T) {
	for _, other := range []bool{false, true} {
		t.Run(fmt.Sprintf("another-client=%v", other), func(t *testing.T) {
			sl, err := testbed.NewSlack("T1")
			if err != nil {
				t.Fatal(err)
			}
			defer sl.Close()
			sm, err := testbed.NewSocketMode(sl)
			if err != nil {
				t.Fatal(err)
			}
			defer sm.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if other {
				// Someone else, with the same token, connected first.
				thief := socketmode.New(slack.New("", slack.OptionAppLevelToken(sm.AppToken), slack.OptionAPIURL(sm.APIURL())))
				go thief.RunContext(ctx)
				go func() {
					for range thief.Events {
					}
				}()
				if err := sm.WaitConnected(ctx, 1); err != nil {
					t.Fatal(err)
				}
			}
			var logs syncBuffer
			s := socketService(t, &logs)
			go s.RunSocket(ctx, SocketOptions{AppToken: sm.AppToken, APIURL: sm.APIURL()})
			want := 1
			if other {
				want = 2
			}
			if err := sm.WaitConnected(ctx, want); err != nil {
				t.Fatal(err)
			}
			// The hello is written right after the connection opens.
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(logs.String(), `"event":"socket_connected"`) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond)
			alerted := strings.Contains(logs.String(), `"event":"socket_extra_connection","alert":true`)
			if alerted != other {
				t.Errorf("extra connection alert: %v, want %v\n%s", alerted, other, logs.String())
			}
		})
	}
}

func socketService(t *testing.T, log io.Writer) *Service {
	root := t.TempDir()
	layout := spool.Layout{Root: filepath.Join(root, "spool")}
	if err := layout.CreateSingleUser(filepath.Join(root, "dl")); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{SpoolDir: layout.Root, Command: "/ytkeep", AllowedTeams: []string{"T1"},
		AllowedChannels: []string{"*"}, AllowedUsers: []string{"*"},
		ResponseURLAllowed: func(string) bool { return true },
		Logger:             slog.New(slog.NewJSONHandler(log, nil))}, NewNotifier())
	if err != nil {
		t.Fatal(err)
	}
	return s
}
