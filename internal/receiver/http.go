package receiver

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/slackreq"
)

// Handler serves slash commands at path, verified by v.
func (s *Service) Handler(path string, v *slackreq.Verifier) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		if inputHook != nil {
			inputHook(r.URL.RawQuery)
		}
		c, err := v.ReadVerified(r)
		if err != nil {
			var e *slackreq.Error
			if !errors.As(err, &e) {
				e = &slackreq.Error{Status: http.StatusBadRequest, Reason: slackreq.ReasonBadRequest}
			}
			attrs := []any{"reason", string(e.Reason), "remote", r.RemoteAddr}
			if e.Suspicious() {
				audit.Alert(s.log, audit.Refused, attrs...)
			} else {
				audit.Event(s.log, audit.Refused, attrs...)
			}
			http.Error(w, http.StatusText(e.Status), e.Status)
			return
		}
		text := s.Handle(c)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"response_type": "ephemeral", "text": text})
	})
	return mux
}

// NewServer returns an http.Server with timeouts suited to Slack: it must
// answer within 3 seconds, and requests are small.
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}
