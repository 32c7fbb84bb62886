package slackapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/slack-go/slack"
)

// Error is what every call returns when it fails, whether Slack refused
// it, the network failed, or the client refused to send it or to believe
// the answer.
//
// Code is Slack's error code (invalid_auth, channel_not_found, …) or one of
// the Code constants. Status is the HTTP status when it was not 200.
// RetryAfter is set for CodeRateLimited (Slack's Retry-After) and
// CodeClientRateLimited (the wait still ahead). Permanent reports that the
// same call will never succeed when made again; every other failure
// (network, timeout, 5xx, rate limits, Slack's transient codes and any
// code this package does not know) may. The client never retries: the
// caller decides.
type Error struct {
	Method     string // the Web API method, or "upload" for the POST to the upload URL
	Code       string
	Status     int
	RetryAfter time.Duration
	Permanent  bool

	err error // the cause, for errors.Is and errors.As
}

// Codes of failures that are not Slack's own error codes.
const (
	// CodeRateLimited: Slack answered 429 (or ok:false with ratelimited
	// or rate_limited). Later calls of the method (for chat.postMessage,
	// to the channel) wait RetryAfter.
	CodeRateLimited = "ratelimited"
	// CodeClientRateLimited: ctx ended while the call waited for its turn
	// under the client's limits; Slack was not called.
	CodeClientRateLimited = "client_ratelimited"
	// CodeInvalidArgument: the caller's channel (one that is not a DM, for
	// instance), user, ts, message or file was refused before anything
	// was sent. Permanent.
	CodeInvalidArgument = "client_invalid_argument"
	// CodeInvalidResponse: Slack's answer was malformed, too large, or
	// named a channel, ts, file or upload URL the client does not accept
	// (another user's DM, for instance), or the upload URL answered
	// before the whole file was sent.
	CodeInvalidResponse = "client_invalid_response"
	// CodeRefused: the client's own dialer refused the connection (a host
	// or scheme outside its policy). Permanent.
	CodeRefused = "client_refused"
	// CodeHTTPStatus: an HTTP status other than 200 and 429 (a 5xx, or a
	// redirect, which is never followed). Status holds it.
	CodeHTTPStatus = "http_error"
	// CodeTimeout: a deadline passed (the caller's or the call's own).
	CodeTimeout = "timeout"
	// CodeCanceled: the caller's ctx was canceled.
	CodeCanceled = "canceled"
	// CodeNetwork: any other failure to connect, send or read.
	CodeNetwork = "network_error"
)

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "slack %s: %s", e.Method, e.Code)
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %v)", e.RetryAfter)
	}
	if e.err != nil && !e.slackCode() {
		b.WriteString(": ")
		b.WriteString(causeText(e.err))
	}
	return b.String()
}

// slackCode reports whether e carries Slack's own code, which says all.
func (e *Error) slackCode() bool {
	var se slack.SlackErrorResponse
	return errors.As(e.err, &se)
}

func (e *Error) Unwrap() error { return e.err }

// permanentCodes are Slack's error codes, from the documented errors of
// the methods this client calls, that mean the same call will fail again:
// the token, its scopes, the app's or the workspace's settings, the
// channel, the user, the message or the file is wrong for it, and only a
// person can change that.
//
// Sources: the Errors sections of
// https://docs.slack.dev/reference/methods/chat.postMessage,
// https://docs.slack.dev/reference/methods/chat.update,
// https://docs.slack.dev/reference/methods/conversations.open,
// https://docs.slack.dev/reference/methods/files.getUploadURLExternal and
// https://docs.slack.dev/reference/methods/files.completeUploadExternal.
//
// Left out as transient: ratelimited, rate_limited,
// message_limit_exceeded, fatal_error, internal_error,
// service_unavailable, request_timeout, team_added_to_org,
// org_login_required, external_channel_migrating,
// streaming_state_conflict, update_failed, file_update_failed and
// file_not_found (the upload ticket; a new Upload gets a new one).
var permanentCodes = codeSet(
	// The token and the app.
	"invalid_auth", "not_authed", "account_inactive", "token_revoked",
	"token_expired", "no_permission", "missing_scope", "not_allowed_token_type",
	"is_bot", "access_denied", "accesslimited", "ekm_access_denied",
	"app_access_restricted", "enterprise_is_restricted", "two_factor_setup_required",
	// The request's form (this client's bug if ever seen).
	"invalid_arg_name", "invalid_array_arg", "invalid_arguments", "invalid_charset",
	"invalid_form_data", "invalid_post_type", "missing_post_type", "missing_argument",
	"method_deprecated", "deprecated_endpoint", "unknown_method",
	"as_user_not_supported", "markdown_text_conflict",
	// The channel.
	"channel_not_found", "invalid_channel", "is_archived", "is_inactive",
	"not_in_channel", "restricted_action", "restricted_action_read_only_channel",
	"restricted_action_thread_only_channel", "restricted_action_non_threadable_channel",
	"restricted_action_thread_locked", "messages_tab_disabled",
	"posting_to_channel_denied", "method_not_supported_for_channel_type",
	"channels_limit_exceeded", "team_not_found",
	// The user.
	"user_not_found", "user_not_visible", "user_disabled", "users_list_not_supplied",
	"not_enough_users", "too_many_users", "invalid_user_combination",
	// The message.
	"invalid_blocks", "invalid_blocks_format", "msg_too_long", "msg_blocks_too_long",
	"no_text", "too_many_attachments", "invalid_attachments",
	"attachment_payload_limit_exceeded", "invalid_metadata_format",
	"invalid_metadata_schema", "metadata_too_large", "metadata_must_be_sent_from_app",
	"message_not_found", "cant_update_message", "edit_window_closed", "block_mismatch",
	// The file.
	"file_too_large", "file_upload_size_restricted", "file_uploads_disabled",
	"file_uploads_except_images_disabled", "file_type_not_allowed", "blocked_file_type",
	"storage_limit_reached", "alt_txt_too_large", "snippet_too_large",
	"unknown_snippet_type", "slack_connect_blocked_file_type",
	"slack_connect_file_upload_sharing_blocked",
)

func codeSet(codes ...string) map[string]bool {
	m := make(map[string]bool, len(codes))
	for _, c := range codes {
		m[c] = true
	}
	return m
}

// Errors of the client's own making, classified by classify.
var (
	errAnswerTooLarge = errors.New("answer larger than the client reads")
	errRefused        = errors.New("refused by the client's connection policy")
)

// invalidArgument is the error for a caller's input refused before any
// request.
func invalidArgument(method, format string, args ...any) *Error {
	return &Error{Method: method, Code: CodeInvalidArgument, Permanent: true, err: fmt.Errorf(format, args...)}
}

// invalidResponse is the error for an answer the client does not believe.
func invalidResponse(method, format string, args ...any) *Error {
	return &Error{Method: method, Code: CodeInvalidResponse, err: fmt.Errorf(format, args...)}
}

// classify turns what slack-go or the transport returned into an *Error.
func classify(method string, err error) *Error {
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	e := &Error{Method: method, err: err}
	var (
		rl  *slack.RateLimitedError
		sc  slack.StatusCodeError
		se  slack.SlackErrorResponse
		ne  net.Error
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &rl):
		e.Code, e.Status, e.RetryAfter = CodeRateLimited, 429, clampRetryAfter(rl.RetryAfter)
	case errors.As(err, &sc):
		e.Code, e.Status = CodeHTTPStatus, sc.Code
	case errors.As(err, &se):
		e.Code = cleanCode(se.Err)
		e.Permanent = permanentCodes[e.Code]
		if e.Code == "ratelimited" || e.Code == "rate_limited" {
			// Refused without a 429 and its Retry-After.
			e.Code, e.RetryAfter = CodeRateLimited, defaultRetryAfter
		}
	case errors.Is(err, errRefused):
		e.Code, e.Permanent = CodeRefused, true
	case errors.Is(err, errAnswerTooLarge), errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &syn), errors.As(err, &typ):
		e.Code = CodeInvalidResponse
	case errors.Is(err, context.Canceled):
		e.Code = CodeCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		e.Code = CodeTimeout
	default:
		e.Code = CodeNetwork
	}
	return e
}

// cleanCode returns Slack's error code if it has the form of one (lower
// case letters, digits and underscores, at most 64), else
// CodeInvalidResponse: the code is the network's, and ends up in logs.
func cleanCode(s string) string {
	if s == "" || len(s) > 64 {
		return CodeInvalidResponse
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return CodeInvalidResponse
		}
	}
	return s
}

// causeText is the cause for Error's text: without the request URL (an
// upload URL is a credential of sorts), printable, at most 200 bytes.
func causeText(err error) string {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "answer cut short"
	}
	s := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(err.Error(), "?"))
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "") + "…"
	}
	return s
}
