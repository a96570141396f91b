package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestStatusFromDaemon reads a daemon's /api/v1/syncs (served here as
// canned JSON: the rendering and exit code are what is tested).
func TestStatusFromDaemon(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/syncs" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"leader":true,"syncs":[
{"name":"shop","lastAppliedRevision":"0123456789abcdef","lastAttemptedRevision":"0123456789abcdef","conditions":[{"type":"Ready","status":"True","reason":"Succeeded"}]},
{"name":"web","lastAppliedRevision":"aaaaaaaaaaaaaaaa","lastAttemptedRevision":"bbbbbbbbbbbbbbbb","lastError":"cm.yaml: invalid YAML","conditions":[{"type":"Ready","status":"False","reason":"RenderFailed"}]},
{"name":"frozen","suspended":true,"suspendedReason":"release freeze","suspendedBy":"alice","suspendedAt":"2025-12-01T10:00:00Z","conditions":[{"type":"Ready","status":"True","reason":"Succeeded"}]}]}`))
	}))
	defer srv.Close()
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"status", "--daemon", srv.URL}, &out, &errOut)
	if code != exitFailed {
		t.Errorf("exit %d with a failing sync, want %d", code, exitFailed)
	}
	for _, want := range []string{"shop    True   Succeeded     0123456789ab", "web     False  RenderFailed  aaaaaaaaaaaa  bbbbbbbbbbbb  cm.yaml: invalid YAML",
		"frozen: suspended by alice at 2025-12-01T10:00:00Z: release freeze\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
