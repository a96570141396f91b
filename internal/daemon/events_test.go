package daemon

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/reconcile"
	"github.com/gitk8s/gitk8s/internal/testenv"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
)

// TestEvents drives one sync through every event reason and finds each
// event on the sync's ApplySet parent by its UID, as kubectl describe
// does. Two Secrets in the repository carry values that must not come
// out: one the API server refuses (and quotes), one that breaks a policy;
// neither value is in any event, the status or the logs, plain or base64.
func TestEvents(t *testing.T) {
	ns := env.Namespace(t)
	client := env.Client(t, "")
	srv := testenv.NewGitServer(t)
	syncName := "events-" + ns
	quoted := fmt.Sprint(100000000 + rand.IntN(900000000)) // a number: the API server quotes it when it refuses it
	invalid := "pw-" + ns + "-" + fmt.Sprint(rand.IntN(1000000))

	cm := func(name string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, namespace: %s}\ndata: {k: v}\n", name, ns)
	}
	cfg, err := LoadConfig(writeConfig(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- name: %s
  source: {url: %s, ref: {branch: main}, interval: 1h}
  clusters: [local]
  prune: true
  wait: {timeout: 3s}
`, env.Contexts[0], env.Kubeconfig, syncName, srv.URL)))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	var logMu sync.Mutex
	d, err := New(cfg, Options{GitCacheDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// change commits files ("" removes one) and reconciles once.
	change := func(files map[string]string) {
		t.Helper()
		write := map[string]string{}
		for name, content := range files {
			if content == "" {
				if err := os.Remove(filepath.Join(srv.Work, name)); err != nil {
					t.Fatal(err)
				}
				continue
			}
			write[name] = content
		}
		srv.Commit(t, write)
		_ = d.Reconcile(ctx, cfg.Syncs[0])
	}
	parentUID := func() string {
		p, err := client.CoreV1().Secrets("gitk8s-system").Get(ctx, "gitk8s-"+syncName, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the ApplySet parent: %v", err)
		}
		return string(p.UID)
	}
	// eventOf waits for an event of the reason on the parent and returns it.
	eventOf := func(uid, reason string) corev1.Event {
		t.Helper()
		selector := fields.Set{"involvedObject.uid": uid, "reason": reason}.AsSelector().String()
		deadline := time.Now().Add(20 * time.Second)
		for {
			list, err := client.CoreV1().Events("gitk8s-system").List(ctx, metav1.ListOptions{FieldSelector: selector})
			if err != nil {
				t.Fatal(err)
			}
			if len(list.Items) > 0 {
				return list.Items[0]
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s event on the parent; status %+v", reason, d.Status()[0])
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	tests := []struct {
		name     string
		files    map[string]string
		reason   string
		typ      string
		contains []string
	}{
		{name: "first apply", files: map[string]string{"a.yaml": cm("a"), "b.yaml": cm("b"), "c.yaml": cm("c")},
			reason: EventApplied, typ: corev1.EventTypeNormal, contains: []string{"created 3"}},
		{name: "one object removed", files: map[string]string{"c.yaml": ""},
			reason: EventPruned, typ: corev1.EventTypeNormal, contains: []string{"pruned ConfigMap/" + ns + "/c"}},
		{name: "most objects removed", files: map[string]string{"a.yaml": "", "b.yaml": "", "d.yaml": cm("d")},
			reason: ReasonPruneRefused, typ: corev1.EventTypeWarning, contains: []string{"prune refused", "2 of the 2 objects"}},
		{name: "an object the API server refuses", files: map[string]string{"a.yaml": cm("a"), "b.yaml": cm("b"),
			"secret.yaml": fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: quoted, namespace: %s}\nstringData: {pin: %s}\n", ns, quoted)},
			reason: ReasonPlanFailed, typ: corev1.EventTypeWarning, contains: []string{"Secret/" + ns + "/quoted", "<secret #"}},
		{name: "an object that never becomes healthy", files: map[string]string{"secret.yaml": "",
			"pvc.yaml": fmt.Sprintf("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: pending, namespace: %s}\nspec: {storageClassName: no-such-class, accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Mi}}}\n", ns)},
			reason: ReasonHealthCheckFailed, typ: corev1.EventTypeWarning, contains: []string{"is not healthy"}},
		{name: "a Secret that breaks a policy", files: map[string]string{
			"secret.yaml": fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: invalid, namespace: %s}\ndata: {password: %s}\n", ns, invalid)},
			reason: ReasonPolicyViolation, typ: corev1.EventTypeWarning, contains: []string{"secret-data-invalid", "Secret/" + ns + "/invalid"}},
	}
	h, err := d.Handler()
	if err != nil {
		t.Fatal(err)
	}
	// statuses is the status JSON after every step: each holds only the
	// last error.
	var statuses strings.Builder
	var uid string
	for _, tc := range tests {
		change(tc.files)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/syncs", nil))
		statuses.WriteString(rec.Body.String())
		if uid == "" {
			uid = parentUID()
		}
		ev := eventOf(uid, tc.reason)
		t.Logf("%s: %s %s: %s", tc.name, ev.Type, ev.Reason, ev.Message)
		if ev.Type != tc.typ || ev.Source.Component != "gitk8s" || ev.InvolvedObject.Kind != "Secret" || ev.InvolvedObject.Name != "gitk8s-"+syncName {
			t.Errorf("%s: event %s: type %s, source %s, object %s/%s", tc.name, tc.reason, ev.Type, ev.Source.Component, ev.InvolvedObject.Kind, ev.InvolvedObject.Name)
		}
		for _, want := range tc.contains {
			if !strings.Contains(ev.Message, want) {
				t.Errorf("%s: %s event %q lacks %q", tc.name, tc.reason, ev.Message, want)
			}
		}
		if len(ev.Message) > maxEventMessage {
			t.Errorf("%s: %s event is %d bytes long", tc.name, tc.reason, len(ev.Message))
		}
	}
	if c := d.Status()[0].Condition("Ready"); c.Reason != ReasonPolicyViolation {
		t.Errorf("last Ready condition %+v", c)
	}

	// Neither Secret's value, plain or base64, is in any event of the
	// cluster, the status or the logs.
	all, err := client.CoreV1().Events("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var messages strings.Builder
	for _, e := range all.Items {
		messages.WriteString(e.Message + "\n")
	}
	logMu.Lock()
	logText := logs.String()
	logMu.Unlock()
	for _, value := range []string{quoted, invalid} {
		for _, form := range []string{value, base64.StdEncoding.EncodeToString([]byte(value))} {
			for where, text := range map[string]string{"events": messages.String(), "status": statuses.String(), "logs": logText} {
				if strings.Contains(text, form) {
					t.Errorf("the %s hold a Secret value (%s):\n%s", where, form, text)
				}
			}
		}
	}
	// The refused Secret's error reached the status, masked.
	if !strings.Contains(logText, "Secret/"+ns+"/quoted") || !strings.Contains(logText, "<secret #") {
		t.Errorf("the logs lack the masked error of the refused Secret:\n%s", logText)
	}
}

// TestEventsSurviveABurst records more events on one parent than
// client-go's default spam filter lets through (25) and finds every one:
// the daemon's filter allows a burst of eventBurst.
func TestEventsSurviveABurst(t *testing.T) {
	ns := env.Namespace(t)
	client := env.Client(t, "")
	ctx := context.Background()
	syncName := "burst-" + ns
	d := newDaemon(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- name: %s
  source: {url: https://git.example/unused.git}
  clusters: [local]
`, env.Contexts[0], env.Kubeconfig, syncName))
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "gitk8s-system"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	parent, err := client.CoreV1().Secrets("gitk8s-system").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: reconcile.InventoryName(syncName)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = client.CoreV1().Secrets("gitk8s-system").Delete(ctx, parent.Name, metav1.DeleteOptions{}) }()

	const sent = 40
	inventory := apply.InventoryOptions{Name: parent.Name, Namespace: parent.Namespace}
	cs := &apply.ChangeSet{}
	for i := range sent {
		// Each event counts one more object, so that none is a repeat.
		cs.Entries = append(cs.Entries, &apply.ChangeSetEntry{Action: apply.Unchanged})
		d.announce(ctx, inventory, fmt.Sprintf("%040d", i), d.targets["local"], &reconcile.ClusterResult{Name: "local", Reason: reconcile.Succeeded, ChangeSet: cs})
	}
	selector := fields.Set{"involvedObject.uid": string(parent.UID), "reason": EventApplied}.AsSelector().String()
	deadline := time.Now().Add(30 * time.Second)
	for {
		list, err := client.CoreV1().Events("gitk8s-system").List(ctx, metav1.ListOptions{FieldSelector: selector})
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for _, e := range list.Items {
			got += int(max(e.Count, 1))
		}
		if got == sent {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events arrived", got, sent)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
