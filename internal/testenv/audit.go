package testenv

import (
	"bufio"
	"encoding/json"
	"os"
	"testing"
)

// AuditEvent is the part of an API server audit event the tests read.
type AuditEvent struct {
	Stage      string `json:"stage"`
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	UserAgent  string `json:"userAgent"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	// ImpersonatedUser is who the request was made as, when User
	// impersonated someone.
	ImpersonatedUser struct {
		Username string `json:"username"`
	} `json:"impersonatedUser"`
	ResponseStatus struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	ObjectRef struct {
		Resource  string `json:"resource"`
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"objectRef"`
}

// AuditMark is a position in an audit log: requests after it are the ones
// a test caused.
type AuditMark struct {
	path   string
	offset int64
}

// MarkAudit remembers the end of a cluster's audit log.
func (e *Env) MarkAudit(t testing.TB, context string) AuditMark {
	t.Helper()
	path := e.AuditLog(t, context)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return AuditMark{path: path, offset: info.Size()}
}

// Requests returns the completed requests logged since the mark whose user
// agent starts with userAgent ("" for all).
func (m AuditMark) Requests(t testing.TB, userAgent string) []AuditEvent {
	t.Helper()
	f, err := os.Open(m.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(m.offset, 0); err != nil {
		t.Fatal(err)
	}
	var out []AuditEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 1<<24)
	for sc.Scan() {
		var ev AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			continue // a line being written right now
		}
		if ev.Stage != "ResponseComplete" {
			continue
		}
		if userAgent != "" && (len(ev.UserAgent) < len(userAgent) || ev.UserAgent[:len(userAgent)] != userAgent) {
			continue
		}
		out = append(out, ev)
	}
	return out
}
