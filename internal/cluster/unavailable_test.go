package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// answers are what the test server says to a GET of the ConfigMap of a
// name: a Status as an API server writes it, or a bare text as a gateway
// in front of one does.
var answers = map[string]struct {
	code   int
	reason metav1.StatusReason // empty: a text body, not a Status
}{
	"apiserver-503":  {http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable},
	"gateway-503":    {http.StatusServiceUnavailable, ""},
	"gateway-502":    {http.StatusBadGateway, ""},
	"gateway-504":    {http.StatusGatewayTimeout, ""},
	"server-timeout": {http.StatusInternalServerError, metav1.StatusReasonServerTimeout},
	"internal":       {http.StatusInternalServerError, metav1.StatusReasonInternalError},
	"forbidden":      {http.StatusForbidden, metav1.StatusReasonForbidden},
	"not-found":      {http.StatusNotFound, metav1.StatusReasonNotFound},
	"conflict":       {http.StatusConflict, metav1.StatusReasonConflict},
	"invalid":        {http.StatusUnprocessableEntity, metav1.StatusReasonInvalid},
	"throttled":      {http.StatusTooManyRequests, metav1.StatusReasonTooManyRequests},
}

func answer(w http.ResponseWriter, r *http.Request) {
	name := path.Base(r.URL.Path)
	if name == "slow" {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		return
	}
	a, ok := answers[name]
	if !ok {
		http.Error(w, "no such case", http.StatusTeapot)
		return
	}
	if a.reason == "" {
		http.Error(w, http.StatusText(a.code), a.code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.code)
	_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status: metav1.StatusFailure, Code: int32(a.code), Reason: a.reason, Message: name})
}

// TestIsUnavailable classifies the errors client-go returns for real
// answers, and for none, by their types: what means the cluster could not
// be reached or did not answer in time is unavailable, a refusal of one
// request is not.
func TestIsUnavailable(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(answer))
	t.Cleanup(srv.Close)
	opts := DefaultOptions()
	opts.Timeout = 300 * time.Millisecond
	live, err := New("test", "default", &rest.Config{Host: srv.URL}, opts)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	refusing, err := New("refusing", "default", &rest.Config{Host: "http://" + closed}, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	configMaps := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	getFrom := func(target *Target, name string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := target.Dynamic.Resource(configMaps).Namespace("ns").Get(ctx, name, metav1.GetOptions{})
			return err
		}
	}
	get := func(name string) func(context.Context) error { return getFrom(live, name) }
	wrapped := func(get func(context.Context) error) func(context.Context) error {
		return func(ctx context.Context) error {
			return fmt.Errorf("cluster test: dry-run ConfigMap/ns/a: %w", get(ctx))
		}
	}
	joined := func(get func(context.Context) error) func(context.Context) error {
		return func(ctx context.Context) error {
			return errors.Join(errors.New("ConfigMap/ns/b: dry-run failed"), get(ctx))
		}
	}
	tests := []struct {
		name string
		err  func(context.Context) error
		want bool
	}{
		{name: "nil", err: func(context.Context) error { return nil }, want: false},
		{name: "503 from the API server", err: get("apiserver-503"), want: true},
		{name: "503 from a gateway", err: get("gateway-503"), want: true},
		{name: "504 from a gateway", err: get("gateway-504"), want: true},
		{name: "server timeout", err: get("server-timeout"), want: true},
		// A 502 is an InternalError to client-go, so the rule, which goes
		// by the error's type, does not call it unavailable.
		{name: "502 from a gateway", err: get("gateway-502"), want: false},
		{name: "500 internal error", err: get("internal"), want: false},
		{name: "403 forbidden", err: get("forbidden"), want: false},
		{name: "404 not found", err: get("not-found"), want: false},
		{name: "409 conflict", err: get("conflict"), want: false},
		{name: "422 invalid", err: get("invalid"), want: false},
		{name: "429 too many requests", err: get("throttled"), want: false},
		{name: "connection refused", err: getFrom(refusing, "a"), want: true},
		{name: "request timeout", err: get("slow"), want: true},
		{name: "context deadline", err: func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel()
			return get("slow")(ctx)
		}, want: true},
		{name: "bare context deadline", err: func(context.Context) error { return context.DeadlineExceeded }, want: true},
		{name: "wrapped 503", err: wrapped(get("apiserver-503")), want: true},
		{name: "wrapped connection refused", err: wrapped(getFrom(refusing, "a")), want: true},
		{name: "wrapped context deadline", err: func(context.Context) error { return fmt.Errorf("cluster test: %w", context.DeadlineExceeded) }, want: true},
		{name: "wrapped 404", err: wrapped(get("not-found")), want: false},
		{name: "joined with a 504", err: joined(get("gateway-504")), want: true},
		{name: "joined with a 422", err: joined(get("invalid")), want: false},
		{name: "constructed 503", err: func(context.Context) error { return apierrors.NewServiceUnavailable("etcd is down") }, want: true},
		{name: "constructed 409", err: func(context.Context) error {
			return apierrors.NewConflict(schema.GroupResource{Resource: "configmaps"}, "a", errors.New("changed"))
		}, want: false},
		{name: "the text of a 503 is not a 503", err: func(context.Context) error {
			return errors.New("the server is currently unable to handle the request (503)")
		}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.err(context.Background())
			if tt.name != "nil" && err == nil {
				t.Fatal("no error to classify")
			}
			if got := IsUnavailable(err); got != tt.want {
				t.Errorf("IsUnavailable(%T %v) = %v, want %v", err, err, got, tt.want)
			}
		})
	}
}
