package testbed

import (
	"context"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
)

// TestSocketModeSimulator: slack-go's Socket Mode client, the one the
// receiver uses, connects to the simulated Slack, gets a slash command
// and answers it in its acknowledgement; after a disconnect envelope it
// opens a new connection. A client with another token is refused.
func TestSocketModeSimulator(t *testing.T) {
	sl, err := NewSlack("T0SIM")
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Close()
	sm, err := NewSocketMode(sl)
	if err != nil {
		t.Fatal(err)
	}
	defer sm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	api := slack.New("", slack.OptionAppLevelToken(sm.AppToken), slack.OptionAPIURL(sm.APIURL()))
	client := socketmode.New(api)
	go client.RunContext(ctx)
	hellos := make(chan int, 4)
	go func() {
		for ev := range client.Events {
			switch ev.Type {
			case socketmode.EventTypeHello:
				hellos <- ev.Request.NumConnections
			case socketmode.EventTypeSlashCommand:
				cmd, _ := ev.Data.(slack.SlashCommand)
				client.Ack(*ev.Request, map[string]string{"response_type": "ephemeral", "text": "got " + cmd.Text + " from " + cmd.UserID})
			}
		}
	}()
	if err := sm.WaitConnected(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if n := <-hellos; n != 1 {
		t.Errorf("hello said %d connections, want 1", n)
	}
	reply, _, err := sm.Send(ctx, Invocation{User: "U1", Channel: "C1", Command: "/ytkeep", Text: "https://youtu.be/dQw4w9WgXcQ"})
	if err != nil || reply != "got https://youtu.be/dQw4w9WgXcQ from U1" {
		t.Fatalf("reply %q, %v", reply, err)
	}
	// A refresh: the client opens a new connection.
	sm.Disconnect("refresh_requested", time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for sm.Opened() < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if sm.Opened() < 2 {
		t.Fatalf("no new connection after a disconnect (%d opened)", sm.Opened())
	}
	if err := sm.WaitConnected(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if reply, _, err := sm.Send(ctx, Invocation{User: "U2", Channel: "C1", Command: "/ytkeep", Text: "x"}); err != nil || reply != "got x from U2" {
		t.Fatalf("after the reconnect: reply %q, %v", reply, err)
	}

	// Another token: apps.connections.open refuses it.
	other := socketmode.New(slack.New("", slack.OptionAppLevelToken("xapp-1-other"), slack.OptionAPIURL(sm.APIURL())))
	if _, _, err := other.OpenContext(ctx); err == nil || err.Error() != "invalid_auth" {
		t.Errorf("another token: %v, want invalid_auth", err)
	}
}

func TestProcAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:0BB8":                         "127.0.0.1:3000",
		"00000000:01BB":                         "0.0.0.0:443",
		"00000000000000000000000001000000:0050": "[::1]:80",
		"0000000000000000FFFF00000100007F:1F90": "127.0.0.1:8080",
		"junk":                                  "junk",
	} {
		if got := procAddr(in); got != want {
			t.Errorf("procAddr(%q) = %q, want %q", in, got, want)
		}
	}
}
