package slackreq

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// Action is a click on one of the app's buttons: Slack's block_actions
// interaction, reduced to what ytkeep reads. It arrives as the form field
// "payload" of a signed POST to the interactivity URL, or as a Socket
// Mode envelope of type "interactive".
type Action struct {
	TeamID, UserID, ChannelID string
	APIAppID, EnterpriseID    string
	ResponseURL               string
	ActionID, Value           string
}

// MaxActionBytes bounds an interaction payload: Slack's include the
// message clicked (up to 50 blocks), so they are larger than commands.
const MaxActionBytes = 64 << 10

func badAction(format string, args ...any) error {
	return &Error{Status: http.StatusBadRequest, Reason: ReasonBadForm, Err: fmt.Errorf("interaction: "+format, args...)}
}

// ParseAction parses a block_actions payload. It reads only the fields
// ytkeep uses, each under its exact key (a case variant is not the key),
// and refuses a payload whose read fields are not what Slack sends: a
// key repeated in any object read, a type that is not block_actions, IDs
// that are not Slack IDs, anything but exactly one action of string
// action_id and value.
func ParseAction(payload []byte) (*Action, error) {
	if len(payload) > MaxActionBytes {
		return nil, badAction("%d bytes, over %d", len(payload), MaxActionBytes)
	}
	top, err := object(payload)
	if err != nil {
		return nil, badAction("%v", err)
	}
	var a Action
	var typ string
	for _, f := range []struct {
		key      string
		dst      *string
		optional bool
	}{{"type", &typ, false}, {"api_app_id", &a.APIAppID, false}, {"response_url", &a.ResponseURL, false}} {
		if err := str(top, f.key, f.dst, f.optional); err != nil {
			return nil, badAction("%v", err)
		}
	}
	if typ != "block_actions" {
		return nil, badAction("type %q", clip(typ))
	}
	for _, f := range []struct {
		key      string
		dst      *string
		optional bool
	}{{"team", &a.TeamID, false}, {"user", &a.UserID, false}, {"channel", &a.ChannelID, false}, {"enterprise", &a.EnterpriseID, true}} {
		raw, ok := top[f.key]
		if !ok || string(raw) == "null" {
			if f.optional {
				continue
			}
			return nil, badAction("no %s", f.key)
		}
		o, err := object(raw)
		if err != nil {
			return nil, badAction("%s: %v", f.key, err)
		}
		if err := str(o, "id", f.dst, false); err != nil {
			return nil, badAction("%s: %v", f.key, err)
		}
		if !ValidSlackID(*f.dst) {
			return nil, badAction("%s.id is not a Slack ID", f.key)
		}
	}
	var actions []json.RawMessage
	if err := json.Unmarshal(top["actions"], &actions); err != nil || len(actions) != 1 {
		return nil, badAction("not exactly one action")
	}
	act, err := object(actions[0])
	if err != nil {
		return nil, badAction("action: %v", err)
	}
	if err := str(act, "action_id", &a.ActionID, false); err != nil {
		return nil, badAction("action: %v", err)
	}
	if err := str(act, "value", &a.Value, false); err != nil {
		return nil, badAction("action: %v", err)
	}
	return &a, nil
}

// ActionPayload returns the payload of an interaction form body (HTTP
// mode): the only field, once. ok is false for any other body (a
// command's).
func ActionPayload(body []byte) (payload []byte, ok bool, err error) {
	form, err := url.ParseQuery(string(body))
	if err != nil || !form.Has("payload") {
		return nil, false, nil
	}
	if len(form) != 1 || len(form["payload"]) != 1 {
		return nil, true, badAction("payload with other fields, or twice")
	}
	return []byte(form.Get("payload")), true, nil
}

// object decodes one JSON object into its members, refusing a repeated
// key and anything after the object.
func object(data []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	m := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("key %q repeated", clip(k))
		}
		m[k] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("data after the object")
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("data after the object")
	}
	return m, nil
}

// str reads member key of o as a JSON string into dst.
func str(o map[string]json.RawMessage, key string, dst *string, optional bool) error {
	raw, ok := o[key]
	if !ok {
		if optional {
			return nil
		}
		return fmt.Errorf("no %s", key)
	}
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, dst) != nil {
		return fmt.Errorf("%s is not a string", key)
	}
	return nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40]
	}
	return s
}
