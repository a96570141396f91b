package apply_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gitk8s/gitk8s/internal/apply"
)

func secret(ns, name, value string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: %s, namespace: %s}\ndata: {password: %s}\n",
		name, ns, base64.StdEncoding.EncodeToString([]byte(value)))
}

// secretLeaks returns which of the values, plain or in base64, text holds.
func secretLeaks(text string, values ...string) []string {
	var out []string
	for _, v := range values {
		for _, s := range []string{v, base64.StdEncoding.EncodeToString([]byte(v))} {
			if strings.Contains(text, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// TestDryRunPlanWritesNothing: a plan reports what an apply would do to
// each object, with diffs, and the cluster is left as it was.
func TestDryRunPlanWritesNothing(t *testing.T) {
	ns := env.Namespace(t)
	extra := ns + "-new"
	clusterScoped(t, namespacesGVR, extra)
	const oldPassword, newPassword = "old-s3cret-password", "new-s3cret-password"
	mustApply(t, options(ns), decode(t,
		configMap(ns, "same", "v"), configMap(ns, "changed", "old-value"), secret(ns, "creds", oldPassword)))

	mark := env.MarkAudit(t, "")
	opts := options(ns)
	opts.DryRun = true
	cs := run(t, opts, decode(t,
		configMap(ns, "same", "v"), configMap(ns, "changed", "new-value"), secret(ns, "creds", newPassword),
		configMap(ns, "fresh", "v"),
		fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", extra),
		configMap(extra, "inside", "v")))

	want := map[string]apply.Action{
		"ConfigMap/" + ns + "/same":      apply.Unchanged,
		"ConfigMap/" + ns + "/changed":   apply.Configured,
		"Secret/" + ns + "/creds":        apply.Configured,
		"ConfigMap/" + ns + "/fresh":     apply.Created,
		"Namespace/" + extra:             apply.Created,
		"ConfigMap/" + extra + "/inside": apply.Created,
	}
	if d := cmp.Diff(want, actions(cs)); d != "" {
		t.Errorf("actions (-want +got):\n%s", d)
	}
	if cs.Failed() {
		t.Errorf("plan failed: %v", cs.Errors())
	}
	for _, e := range cs.Entries {
		if (e.Diff == "") != (e.Action == apply.Unchanged) {
			t.Errorf("%s is %s with diff %q", e.Ref, e.Action, e.Diff)
		}
		if leaks := secretLeaks(e.Diff, oldPassword, newPassword); len(leaks) > 0 {
			t.Errorf("diff of %s shows Secret values %q:\n%s", e.Ref, leaks, e.Diff)
		}
	}
	if d := entry(t, cs, "ConfigMap/"+ns+"/changed").Diff; !strings.Contains(d, "old-value") || !strings.Contains(d, "new-value") {
		t.Errorf("diff of the changed ConfigMap does not show old and new value:\n%s", d)
	}
	if d := entry(t, cs, "ConfigMap/"+ns+"/fresh").Diff; !strings.Contains(d, "--- /dev/null") {
		t.Errorf("diff of a new ConfigMap is not a creation:\n%s", d)
	}
	if d := entry(t, cs, "Secret/"+ns+"/creds").Diff; !strings.Contains(d, "password") {
		t.Errorf("diff of the Secret does not name the changed key:\n%s", d)
	}

	if w := writes(t, mark); len(w) > 0 {
		t.Errorf("a dry-run plan wrote %v", w)
	}
	if got := liveData(t, ns, "changed")["value"]; got != "old-value" {
		t.Errorf("ConfigMap changed holds %q after a plan", got)
	}
	if got := liveData(t, ns, "fresh"); got != nil {
		t.Errorf("ConfigMap fresh exists after a plan: %v", got)
	}
	if live(t, namespacesGVR, "", extra) != nil {
		t.Errorf("Namespace %s exists after a plan", extra)
	}
	s, err := kube(t).CoreV1().Secrets(ns).Get(context.Background(), "creds", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(s.Data["password"]); got != oldPassword {
		t.Errorf("Secret creds holds %q after a plan", got)
	}
}

// TestRefusedSecretErrorHidesValues: when the API server refuses a Secret
// and quotes its value, the entry's error does not show it.
func TestRefusedSecretErrorHidesValues(t *testing.T) {
	tests := []struct {
		name  string
		doc   string // %s is the namespace
		value string
	}{
		{
			name:  "number in stringData",
			doc:   "apiVersion: v1\nkind: Secret\nmetadata: {name: pin, namespace: %s}\nstringData: {pin: 73519246}\n",
			value: "73519246",
		},
		{
			name:  "value in a label",
			doc:   "apiVersion: v1\nkind: Secret\nmetadata: {name: token, namespace: %s, labels: {copy: \"not a label: t0ps3cret-token\"}}\nstringData: {token: \"not a label: t0ps3cret-token\"}\n",
			value: "not a label: t0ps3cret-token",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t)
			for _, dryRun := range []bool{true, false} {
				opts := options(ns)
				opts.DryRun = dryRun
				cs := run(t, opts, decode(t, fmt.Sprintf(tc.doc, ns)))
				if len(cs.Entries) != 1 || cs.Entries[0].Action != apply.Failed || cs.Entries[0].Err == nil {
					t.Fatalf("dry run %t: the Secret was not refused: %v", dryRun, actions(cs))
				}
				e := cs.Entries[0]
				if leaks := secretLeaks(e.Err.Error()+e.Diff, tc.value); len(leaks) > 0 {
					t.Errorf("dry run %t: error shows the Secret value %q: %v", dryRun, leaks, e.Err)
				}
				// The masked error still wraps the API server's, which
				// quotes the value: otherwise this case tests nothing.
				quoted := false
				for err := errors.Unwrap(e.Err); err != nil; err = errors.Unwrap(err) {
					quoted = quoted || len(secretLeaks(err.Error(), tc.value)) > 0
				}
				if !quoted {
					t.Errorf("dry run %t: the API server's error does not quote the value: %v", dryRun, e.Err)
				}
				if !strings.HasPrefix(e.Err.Error(), e.Source.String()+": "+e.Ref+": ") {
					t.Errorf("dry run %t: error does not start with the source and the object: %v", dryRun, e.Err)
				}
			}
		})
	}
}

// TestInvalidObjectWritesNothing: one object the plan refuses stops the
// whole apply before its first write, and nothing is pruned.
func TestInvalidObjectWritesNothing(t *testing.T) {
	tests := []struct {
		name string
		bad  string // %s is the namespace
		// kind is the bad object's kind; want is in its error.
		kind, want string
	}{
		{
			name: "value the API server refuses",
			bad:  "apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: %s}\nspec: {type: Nope, ports: [{port: 80}]}\n",
			kind: "Service", want: "spec.type",
		},
		{
			name: "negative replicas",
			bad: `apiVersion: apps/v1
kind: Deployment
metadata: {name: bad, namespace: %s}
spec:
  replicas: -1
  selector: {matchLabels: {app: bad}}
  template:
    metadata: {labels: {app: bad}}
    spec:
      containers: [{name: app, image: nginx}]
`,
			kind: "Deployment", want: "spec.replicas",
		},
		{
			name: "wave that is not a number",
			bad:  "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad, namespace: %s, annotations: {gitk8s.io/wave: first}}\n",
			kind: "ConfigMap", want: apply.AnnotationWave,
		},
		{
			name: "kind the cluster does not serve",
			bad:  "apiVersion: nowhere.example.test/v1\nkind: Gadget\nmetadata: {name: bad, namespace: %s}\n",
			kind: "Gadget", want: "not known",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t)
			opts := options(ns)
			opts.Prune = true
			mustApply(t, opts, decode(t,
				configMap(ns, "keep", "old"), configMap(ns, "a", "v"), configMap(ns, "b", "v"), configMap(ns, "gone", "v")))

			mark := env.MarkAudit(t, "")
			cs := run(t, opts, decode(t,
				configMap(ns, "keep", "new"), configMap(ns, "a", "v"), configMap(ns, "b", "v"),
				configMap(ns, "fresh", "v"), fmt.Sprintf(tc.bad, ns)))

			if !cs.Failed() {
				t.Fatalf("apply did not fail: %v", actions(cs))
			}
			var bad *apply.ChangeSetEntry
			for _, e := range cs.Entries {
				if e.ID.GroupKind.Kind == tc.kind && e.ID.Name == "bad" {
					bad = e
				}
			}
			if bad == nil {
				t.Fatalf("no entry for the %s: %v", tc.kind, actions(cs))
			}
			if bad.Action != apply.Failed || bad.Err == nil || !strings.Contains(bad.Err.Error(), tc.want) {
				t.Errorf("%s is %s with error %v, want failed naming %q", bad.Ref, bad.Action, bad.Err, tc.want)
			}
			if bad.Source.File != bundleFile || !strings.HasPrefix(bad.Err.Error(), bad.Source.String()+": "+tc.kind+"/") {
				t.Errorf("error does not start with the file, line and object: %v", bad.Err)
			}
			for _, name := range []string{"keep", "a", "b", "fresh"} {
				if a := entry(t, cs, "ConfigMap/"+ns+"/"+name).Action; a != apply.Skipped {
					t.Errorf("ConfigMap %s is %s, want skipped", name, a)
				}
			}

			if w := writes(t, mark); len(w) > 0 {
				t.Errorf("a failed plan wrote %v", w)
			}
			if got := liveData(t, ns, "keep")["value"]; got != "old" {
				t.Errorf("ConfigMap keep holds %q, want the old value", got)
			}
			if got := liveData(t, ns, "fresh"); got != nil {
				t.Errorf("ConfigMap fresh was created: %v", got)
			}
			if liveData(t, ns, "gone") == nil {
				t.Errorf("ConfigMap gone was pruned after a failed plan")
			}
		})
	}
}

// TestUnknownKindEntryAgreesWithItsError: an object of a kind the cluster
// does not serve is named the same way by its entry and by its error.
func TestUnknownKindEntryAgreesWithItsError(t *testing.T) {
	ns := env.Namespace(t)
	cs := run(t, options(ns), decode(t, "apiVersion: nowhere.example.test/v1\nkind: Gadget\nmetadata: {name: bad, namespace: "+ns+"}\n"))
	if len(cs.Entries) != 1 || cs.Entries[0].Action != apply.Failed {
		t.Fatalf("the Gadget did not fail: %v", actions(cs))
	}
	e := cs.Entries[0]
	if want := e.Source.String() + ": " + e.Ref + ": "; !strings.HasPrefix(e.Err.Error(), want) {
		t.Errorf("entry %s (id %s), but its error names another object: %v", e.Ref, e.ID, e.Err)
	}
}
