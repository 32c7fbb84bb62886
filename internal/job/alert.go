package job

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/ytkeep/ytkeep/internal/audit"
)

// An alert crosses into the receiver as a file named AlertName(id): from
// the worker, which has no network, in results/; from the receiver's own
// exit alert, in receiver/alerts/. The receiver posts it to the admins.
const (
	// MaxAlertSize caps an alert file.
	MaxAlertSize = 8 << 10
	// MaxAlertValue caps one attribute value in a file; MarshalAlert cuts
	// longer ones (a sandbox violation's stderr tail, say).
	MaxAlertValue = 4 * audit.MaxAlertValueLen
)

// alertEvents are the events an alert file may carry.
var alertEvents = map[string]bool{
	audit.Accepted: true, audit.Refused: true, audit.Claimed: true, audit.Started: true, audit.Finished: true,
	audit.Failed: true, audit.Quarantined: true, audit.Replied: true, audit.ReplyFailed: true,
	audit.Violation: true, audit.Weakened: true, audit.Crashed: true, audit.Egress: true, audit.EgressDenied: true,
}

// MarshalAlert encodes a as an alert file, in the one form ParseAlert
// accepts: the time in UTC, values made valid UTF-8 and cut to
// MaxAlertValue bytes, and cut further, all alike, until the file fits
// in MaxAlertSize. Attributes past audit.MaxAlertAttrs are dropped, in
// name order.
func MarshalAlert(a audit.AlertRecord) ([]byte, error) {
	if !alertEvents[a.Event] {
		return nil, perr("event", "unknown alert event %q", audit.Clean(a.Event, 32))
	}
	if a.Daemon != audit.Clean(a.Daemon, 32) {
		return nil, perr("daemon", "not a daemon name")
	}
	a.Time = a.Time.UTC()
	attrs := a.Attrs
	for limit := MaxAlertValue; ; limit /= 2 {
		a.Attrs = map[string]string{}
		for _, k := range slices.Sorted(maps.Keys(attrs)) {
			if len(a.Attrs) == audit.MaxAlertAttrs {
				break
			}
			if k != audit.Clean(k, 32) || k == "" {
				continue
			}
			a.Attrs[k] = cut(strings.ToValidUTF8(attrs[k], "?"), limit)
		}
		if len(a.Attrs) == 0 {
			a.Attrs = nil
		}
		b, err := json.Marshal(&a)
		if err != nil || len(b) <= MaxAlertSize {
			return b, err
		}
		if limit == 0 {
			return nil, errors.New("alert does not fit in an alert file")
		}
	}
}

// ParseAlert decodes an alert file written by another domain, trusting
// nothing: at most MaxAlertSize bytes, known fields and events only, at
// most audit.MaxAlertAttrs attributes, values of at most MaxAlertValue
// bytes, and exactly the bytes MarshalAlert writes. The daemon named
// inside is replaced by from, the domain the file came from.
func ParseAlert(data []byte, from string) (*audit.AlertRecord, error) {
	if len(data) > MaxAlertSize {
		return nil, perr("", "alert file of %d bytes, over the %d-byte limit", len(data), MaxAlertSize)
	}
	var a audit.AlertRecord
	if err := decodeStrict(data, &a); err != nil {
		return nil, err
	}
	if !alertEvents[a.Event] {
		return nil, perr("event", "unknown alert event %q", audit.Clean(a.Event, 32))
	}
	if len(a.Attrs) > audit.MaxAlertAttrs {
		return nil, perr("attrs", "%d attributes, over %d", len(a.Attrs), audit.MaxAlertAttrs)
	}
	for k, v := range a.Attrs {
		if k == "" || k != audit.Clean(k, 32) || len(v) > MaxAlertValue {
			return nil, perr("attrs", "bad attribute %q", audit.Clean(k, 32))
		}
	}
	if again, err := MarshalAlert(a); err != nil || !bytes.Equal(again, data) {
		return nil, perr("", "not in canonical form")
	}
	a.Daemon = from
	return &a, nil
}

// cut returns s cut to at most max bytes, on a rune boundary.
func cut(s string, max int) string {
	if len(s) <= max {
		return s
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return s[:max]
}
