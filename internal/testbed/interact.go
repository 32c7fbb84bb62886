package testbed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/ytkeep/ytkeep/internal/slackreq"
)

// Click is a user's click on a button of a message in their DM with the
// bot: Slack's block_actions interaction.
type Click struct {
	User, Channel   string // the user and the DM (D…) the message is in
	ActionID, Value string
}

// ActionPayload returns the interaction payload Slack sends for c, in the
// shape of Slack's block_actions payloads
// (https://api.slack.com/reference/interaction-payloads/block-actions),
// and the id of its response URL.
func (s *Slack) ActionPayload(c Click) (payload []byte, responseID string) {
	responseID = strconv.FormatInt(s.seq.Add(1), 10)
	p := map[string]any{
		"type":                  "block_actions",
		"user":                  map[string]any{"id": c.User, "username": "demo-user", "name": "demo-user", "team_id": s.Team},
		"api_app_id":            s.AppID,
		"token":                 "deprecated-verification-token",
		"container":             map[string]any{"type": "message", "message_ts": "1764140000.000100", "channel_id": c.Channel, "is_ephemeral": false},
		"trigger_id":            responseID + "." + strconv.FormatInt(time.Now().UnixNano(), 10),
		"team":                  map[string]any{"id": s.Team, "domain": "demo"},
		"enterprise":            nil,
		"is_enterprise_install": false,
		"channel":               map[string]any{"id": c.Channel, "name": "directmessage"},
		"message":               map[string]any{"type": "message", "text": "status", "blocks": []any{}},
		"state":                 map[string]any{"values": map[string]any{}},
		"response_url":          s.URL + "/response/" + responseID,
		"actions": []any{map[string]any{"action_id": c.ActionID, "block_id": "job", "value": c.Value, "type": "button",
			"text": map[string]any{"type": "plain_text", "text": "button"}, "action_ts": "1764140001.1"}},
	}
	b, _ := json.Marshal(p)
	return b, responseID
}

// SendClick posts c, signed, to the interactivity URL endpoint as Slack
// does in HTTP mode (a form whose only field is payload); it returns the
// response URL id and the HTTP status.
func (s *Slack) SendClick(ctx context.Context, client *http.Client, endpoint string, c Click) (responseID string, status int, err error) {
	payload, responseID := s.ActionPayload(c)
	body := []byte(url.Values{"payload": {string(payload)}}.Encode())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	slackreq.SignRequest(req.Header, s.Secret, time.Now(), body)
	resp, err := client.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return responseID, resp.StatusCode, nil
}

// Click delivers c as a Socket Mode "interactive" envelope and waits up
// to AckWait for its acknowledgement (which carries nothing); it returns the
// response URL id.
func (sm *SocketMode) Click(ctx context.Context, c Click) (responseID string, err error) {
	conn := sm.anyConn()
	if conn == nil {
		return "", errors.New("no Socket Mode connection")
	}
	payload, responseID := sm.slack.ActionPayload(c)
	id := fmt.Sprintf("%08x-sim-%d", time.Now().UnixNano()&0xffffffff, sm.seq.Add(1))
	ch := make(chan json.RawMessage, 1)
	sm.mu.Lock()
	sm.waiting[id] = ch
	sm.mu.Unlock()
	defer func() {
		sm.mu.Lock()
		delete(sm.waiting, id)
		sm.mu.Unlock()
	}()
	msg := map[string]any{"envelope_id": id, "type": "interactive", "accepts_response_payload": false, "payload": json.RawMessage(payload)}
	if err := conn.write(msg); err != nil {
		return "", err
	}
	select {
	case <-ch:
		return responseID, nil
	case <-time.After(sm.AckWait):
		return "", fmt.Errorf("%w (%v)", ErrNoAck, sm.AckWait)
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Click delivers a click the way the world's receiver takes them.
func (w *World) Click(ctx context.Context, c Click) (responseID string, err error) {
	if w.Socket != nil {
		return w.Socket.Click(ctx, c)
	}
	responseID, status, err := w.Slack.SendClick(ctx, http.DefaultClient, w.Endpoint, c)
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("status %d", status)
	}
	return responseID, err
}
