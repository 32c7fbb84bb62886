// Package slack holds no code: its test checks the Slack app manifests
// next to it, which an administrator pastes into Slack's "Create New App
// → From an app manifest" (https://api.slack.com/reference/manifests):
// manifest-socket.json (Socket Mode, the example configuration's mode)
// and manifest-http.json (Slack posts to a request URL).
//
// They are JSON, which Slack accepts as well as YAML, so that the
// standard library can decode them strictly here.
package slack

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ytkeep/ytkeep/internal/config"
	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/videourl"
)

// manifest is the part of Slack's manifest schema ytkeep uses; a field
// outside it is an error (DisallowUnknownFields). Booleans are pointers
// so that a setting left out, which Slack would default, is told apart.
type manifest struct {
	Metadata struct {
		MajorVersion int `json:"major_version"`
		MinorVersion int `json:"minor_version"`
	} `json:"_metadata"`
	DisplayInformation struct {
		Name        string `json:"name"`
		Description string `json:"description"`
	} `json:"display_information"`
	Features struct {
		BotUser *struct {
			DisplayName  string `json:"display_name"`
			AlwaysOnline *bool  `json:"always_online"`
		} `json:"bot_user"`
		SlashCommands []slashCommand `json:"slash_commands"`
	} `json:"features"`
	OAuthConfig struct {
		Scopes struct {
			Bot  []string `json:"bot"`
			User []string `json:"user"`
		} `json:"scopes"`
	} `json:"oauth_config"`
	Settings struct {
		// Interactivity: the status messages' buttons. In HTTP mode
		// clicks go to the command's URL too (the receiver tells a click,
		// a form of one field, payload, from a command).
		Interactivity *struct {
			IsEnabled  bool   `json:"is_enabled"`
			RequestURL string `json:"request_url"`
		} `json:"interactivity"`
		OrgDeployEnabled     *bool `json:"org_deploy_enabled"`
		SocketModeEnabled    *bool `json:"socket_mode_enabled"`
		TokenRotationEnabled *bool `json:"token_rotation_enabled"`
	} `json:"settings"`
}

type slashCommand struct {
	Command      string `json:"command"`
	URL          string `json:"url"`
	Description  string `json:"description"`
	UsageHint    string `json:"usage_hint"`
	ShouldEscape *bool  `json:"should_escape"`
}

// placeholderHost is the request URL's host in manifest-http.json, which
// the README tells the administrator to replace with theirs.
const placeholderHost = "https://ytkeep.example.org"

// wantScopes are the bot scopes of both modes, and no more: a slash
// command needs "commands" (https://api.slack.com/interactivity/slash-commands);
// the courier's status messages in the requester's DM need "chat:write"
// (chat.postMessage, chat.update: https://docs.slack.dev/reference/methods/chat.postMessage)
// and "im:write" (conversations.open:
// https://docs.slack.dev/reference/methods/conversations.open); its
// uploads of stored files into that DM need "files:write"
// (files.getUploadURLExternal, files.completeUploadExternal:
// https://docs.slack.dev/reference/methods/files.getUploadURLExternal).
// Socket Mode needs none of the bot's, only an app-level token with
// connections:write (https://api.slack.com/apis/socket-mode), which a
// manifest does not hold; the response_url fallback needs no scope. The
// alert webhook's "incoming-webhook" scope is added by Slack when the
// administrator activates Incoming Webhooks (optional).
var wantScopes = []string{"commands", "chat:write", "im:write", "files:write"}

func TestManifests(t *testing.T) {
	example, err := config.Load("../../ytkeep.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := example.CheckReceiver(); err != nil {
		t.Fatalf("the example configuration: %v", err)
	}
	if example.Receiver.Mode != "socket" {
		t.Errorf("the example configuration's receiver.mode is %q: new installs and manifest-socket.json are for \"socket\"", example.Receiver.Mode)
	}
	files, err := filepath.Glob("manifest-*.json")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"manifest-http.json", "manifest-socket.json"}; !slices.Equal(files, want) {
		t.Fatalf("manifests %q, want %q (each is checked below)", files, want)
	}
	read := map[string]*manifest{}
	for _, tt := range []struct {
		file   string
		socket bool
	}{{"manifest-socket.json", true}, {"manifest-http.json", false}} {
		t.Run(tt.file, func(t *testing.T) {
			m, err := load(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			read[tt.file] = m
			checkManifest(t, m, example, tt.socket)
		})
	}
	// The two differ in their mode and request URL only.
	s, h := read["manifest-socket.json"], read["manifest-http.json"]
	if s == nil || h == nil {
		return
	}
	asSocket := *h
	asSocket.Features.SlashCommands = slices.Clone(h.Features.SlashCommands)
	asSocket.Features.SlashCommands[0].URL = ""
	on := true
	asSocket.Settings.SocketModeEnabled = &on
	if h.Settings.Interactivity != nil {
		i := *h.Settings.Interactivity
		i.RequestURL = ""
		asSocket.Settings.Interactivity = &i
	}
	if !reflect.DeepEqual(&asSocket, s) {
		t.Errorf("the manifests differ in more than socket_mode_enabled and the request URLs:\nsocket %+v\nhttp   %+v", *s, *h)
	}
}

func checkManifest(t *testing.T, m *manifest, example *config.Config, socket bool) {
	t.Helper()
	if m.Metadata.MajorVersion != 1 {
		t.Errorf("_metadata.major_version %d, want 1 (an app, not a workflow app)", m.Metadata.MajorVersion)
	}
	// Slack's limits (https://api.slack.com/reference/manifests).
	if n := m.DisplayInformation.Name; n == "" || len(n) > 35 {
		t.Errorf("display_information.name %q: 1 to 35 characters", n)
	}
	if d := m.DisplayInformation.Description; len(d) > 140 {
		t.Errorf("display_information.description is %d characters, more than 140", len(d))
	}
	if b := m.Features.BotUser; b == nil || !validBotName(b.DisplayName) || len(b.DisplayName) > 80 {
		t.Errorf("features.bot_user.display_name must be 1 to 80 of a-z, 0-9, -, _ and .: %+v", b)
	}

	if len(m.Features.SlashCommands) != 1 {
		t.Fatalf("%d slash commands, want 1", len(m.Features.SlashCommands))
	}
	c := m.Features.SlashCommands[0]
	if c.Command != example.Receiver.Command || len(c.Command) > 32 {
		t.Errorf("command %q, want the example configuration's receiver.command %q (at most 32 characters)", c.Command, example.Receiver.Command)
	}
	if c.Description == "" || len(c.Description) > 2000 {
		t.Errorf("command description %q: 1 to 2000 characters", c.Description)
	}
	// The hint names every format the receiver takes but the default.
	var formats []string
	for _, f := range job.Formats {
		if f != job.FormatBest {
			formats = append(formats, string(f))
		}
	}
	if want := "<YouTube link> [" + strings.Join(formats, "|") + "]"; c.UsageHint != want {
		t.Errorf("usage_hint %q, want %q (job.Formats)", c.UsageHint, want)
	}
	// should_escape is true. The receiver reads the text in either form
	// (internal/videourl), but with escaping on Slack finds the link
	// itself and sends it as <url> or <url|what was typed>, completing one
	// typed without a scheme (youtu.be/ID) as http://…, which is accepted;
	// off, that link arrives as typed and is refused ("paste the whole
	// link"). Mentions come as <@U…> markup, refused in both forms. The
	// two Parse calls below are that reason: if scheme-less links are ever
	// accepted as typed, revisit the choice.
	if c.ShouldEscape == nil || !*c.ShouldEscape {
		t.Errorf("should_escape must be set, to true")
	}
	if _, err := videourl.Parse("youtu.be/dQw4w9WgXcQ"); err == nil {
		t.Errorf("a link typed without a scheme is now accepted as typed: should_escape need not be true any more")
	}
	if id, err := videourl.Parse("<http://youtu.be/dQw4w9WgXcQ|youtu.be/dQw4w9WgXcQ>"); err != nil || id != "dQw4w9WgXcQ" {
		t.Errorf("the escaped form of a link typed without a scheme: %q, %v", id, err)
	}

	if !slices.Equal(m.OAuthConfig.Scopes.Bot, wantScopes) || len(m.OAuthConfig.Scopes.User) != 0 {
		t.Errorf("scopes: bot %q, user %q; want bot %q and no user scope", m.OAuthConfig.Scopes.Bot, m.OAuthConfig.Scopes.User, wantScopes)
	}
	for name, v := range map[string]*bool{"org_deploy_enabled": m.Settings.OrgDeployEnabled, "token_rotation_enabled": m.Settings.TokenRotationEnabled} {
		if v == nil || *v {
			t.Errorf("settings.%s must be set, to false", name)
		}
	}
	if v := m.Settings.SocketModeEnabled; v == nil || *v != socket {
		t.Errorf("settings.socket_mode_enabled must be set, to %v", socket)
	}
	if i := m.Settings.Interactivity; i == nil || !i.IsEnabled {
		t.Errorf("settings.interactivity.is_enabled must be true: the status messages' buttons")
	} else if socket && i.RequestURL != "" {
		t.Errorf("Socket Mode: interactivity has a request URL %q", i.RequestURL)
	} else if !socket && i.RequestURL != c.URL {
		t.Errorf("HTTP: interactivity's request_url is %q, want the command's, %q", i.RequestURL, c.URL)
	}
	if socket {
		if c.URL != "" {
			t.Errorf("Socket Mode: the command has a request URL %q", c.URL)
		}
	} else if want := placeholderHost + example.Receiver.Path; c.URL != want {
		t.Errorf("HTTP: the command's url is %q, want %q (the example configuration's receiver.path)", c.URL, want)
	}
}

// load decodes a manifest strictly: no field outside manifest, no key
// repeated or spelled other than in lower case (encoding/json matches
// keys regardless of case; Slack does not), nothing after it.
func load(path string) (*manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if err := checkKeys(json.NewDecoder(bytes.NewReader(b))); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var m manifest
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: more after the manifest", path)
	}
	return &m, nil
}

// checkKeys walks one JSON value: every object key is _?[a-z_]+ and
// appears once in its object.
func checkKeys(d *json.Decoder) error {
	tok, err := d.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for d.More() {
			k, err := d.Token()
			if err != nil {
				return err
			}
			key := k.(string)
			if seen[key] || strings.Trim(key, "abcdefghijklmnopqrstuvwxyz_") != "" {
				return fmt.Errorf("key %q repeated or not in lower case", key)
			}
			seen[key] = true
			if err := checkKeys(d); err != nil {
				return err
			}
		}
		_, err = d.Token()
	case json.Delim('['):
		for d.More() {
			if err := checkKeys(d); err != nil {
				return err
			}
		}
		_, err = d.Token()
	}
	return err
}

func validBotName(s string) bool {
	return s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-_.") == ""
}

// TestLoadRefuses: the strict decoding above refuses what Slack would.
func TestLoadRefuses(t *testing.T) {
	tests := map[string]string{
		"unknown field":   `{"settings": {"socket_mode": true}}`,
		"key in capitals": `{"Settings": {}}`,
		"repeated key":    `{"settings": {"socket_mode_enabled": true, "socket_mode_enabled": false}}`,
		"two values":      `{} {}`,
		"not JSON":        `settings:\n  socket_mode_enabled: true\n`,
	}
	for name, text := range tests {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "m.json")
			if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			if m, err := load(p); err == nil {
				t.Errorf("accepted: %+v", *m)
			}
		})
	}
}
