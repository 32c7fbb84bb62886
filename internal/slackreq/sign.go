package slackreq

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// Sign returns Slack's v0 signature of body at timestamp ts. Verification
// does not use it (slack-go's SecretsVerifier does); it is for simulating
// Slack.
func Sign(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("v0:" + ts + ":"))
	m.Write(body)
	return "v0=" + hex.EncodeToString(m.Sum(nil))
}
