package job

import "testing"

func validRequest() *Request {
	return &Request{V: 1, ID: "bbbbbbbbbbbbbbbbbbbbbbbbbb", Kind: RequestCancel, Job: "aaaaaaaaaaaaaaaaaaaaaaaaaa",
		Team: "T1DC2JH3J", User: "U2CERLKJA", Channel: "C8PSS9T3V", Created: 1764140000, Reply: token}
}

func TestRequestValidate(t *testing.T) {
	const id = "aaaaaaaaaaaaaaaaaaaaaaaaaa"
	tests := []struct {
		name string
		edit func(r *Request)
		ok   bool
	}{
		{"cancel job", func(r *Request) {}, true},
		{"cancel video", func(r *Request) { r.Job, r.Video = "", "dQw4w9WgXcQ" }, true},
		{"cancel by admin", func(r *Request) { r.Admin = true }, true},
		{"cancelled", func(r *Request) { r.Outcome, r.Count = OutcomeCancelled, 2 }, true},
		{"not found", func(r *Request) { r.Outcome = OutcomeNotFound }, true},
		{"list", func(r *Request) { r.Kind, r.Job = RequestList, "" }, true},
		{"send", func(r *Request) { r.Kind = RequestSend }, true},
		{"cancel both", func(r *Request) { r.Video = "dQw4w9WgXcQ" }, false},
		{"cancel neither", func(r *Request) { r.Job = "" }, false},
		{"list with job", func(r *Request) { r.Kind = RequestList }, false},
		{"list by admin", func(r *Request) { r.Kind, r.Job, r.Admin = RequestList, "", true }, false},
		{"send video", func(r *Request) { r.Kind, r.Job, r.Video = RequestSend, "", "dQw4w9WgXcQ" }, false},
		{"send with outcome", func(r *Request) { r.Kind, r.Outcome = RequestSend, OutcomeNotFound }, false},
		{"unknown kind", func(r *Request) { r.Kind = "delete" }, false},
		{"unknown outcome", func(r *Request) { r.Outcome = "deleted" }, false},
		{"count without cancel", func(r *Request) { r.Outcome, r.Count = OutcomeNotFound, 1 }, false},
		{"negative count", func(r *Request) { r.Outcome, r.Count = OutcomeCancelled, -1 }, false},
		{"path job", func(r *Request) { r.Job = "../../etc/passwd/aaaaaaaaaa" }, false},
		{"bad video", func(r *Request) { r.Job, r.Video = "", "dQw4w9WgXc/" }, false},
		{"bad user", func(r *Request) { r.User = "<!channel>" }, false},
		{"no token", func(r *Request) { r.Reply = "" }, false},
		{"old", func(r *Request) { r.Created = 1 }, false},
		{"version", func(r *Request) { r.V = 2 }, false},
		{"same id", func(r *Request) { r.ID = id }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRequest()
			tt.edit(r)
			err := r.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if !tt.ok {
				return
			}
			b, err := r.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseRequest(b)
			if err != nil {
				t.Fatalf("ParseRequest(Marshal) = %v", err)
			}
			if *got != *r {
				t.Fatalf("round trip changed the request")
			}
			if n, err := ParseName(r.FileName()); err != nil || n.Kind != KindRequest || n.ID != r.ID {
				t.Fatalf("ParseName(%q) = %+v, %v", r.FileName(), n, err)
			}
		})
	}
}

func FuzzParseRequest(f *testing.F) {
	good, _ := validRequest().Marshal()
	f.Add(good)
	for _, b := range hostile(f, "request") {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			return
		}
		again, err := r.Marshal()
		if err != nil || string(again) != string(b) {
			t.Fatalf("accepted non-canonical input %q", b)
		}
		if r.Kind == RequestCancel && (r.Job == "") == (r.Video == "") {
			t.Fatalf("accepted %+v", r)
		}
	})
}
