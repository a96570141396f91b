package policy

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSettingsConfig(t *testing.T) {
	allBuiltin := func(m Mode) map[string]Mode {
		out := map[string]Mode{}
		for _, r := range Rules() {
			out[r.ID] = m
		}
		return out
	}
	tests := []struct {
		name      string
		settings  Settings
		wantModes map[string]Mode
		wantErr   string
	}{
		{name: "empty", settings: Settings{}, wantModes: map[string]Mode{}},
		{name: "modes", settings: Settings{Modes: map[string]string{"quota-fit": "warn", "admission-policy": "off"}},
			wantModes: map[string]Mode{"quota-fit": Warn, "admission-policy": Off}},
		{name: "builtin enforce changes nothing", settings: Settings{Builtin: "enforce"}, wantModes: map[string]Mode{}},
		{name: "builtin warn, one rule enforced", settings: Settings{Builtin: "warn", Modes: map[string]string{"quota-fit": "enforce"}},
			wantModes: func() map[string]Mode { m := allBuiltin(Warn); m["quota-fit"] = Enforce; return m }()},
		{name: "disabled", settings: Settings{Disabled: []string{"probe-timing", "admission-policy-invalid"}},
			wantModes: map[string]Mode{"probe-timing": Off, "admission-policy-invalid": Off}},
		{name: "every problem named", settings: Settings{Builtin: "loud", Modes: map[string]string{"no-such": "off", "quota-fit": "strict", "probe-timing": "warn"},
			Disabled: []string{"nope", "probe-timing"}},
			wantErr: "builtin: mode \"loud\": use enforce, warn or off\n" +
				"rule no-such: no such rule; the rules are listed in docs/policies.md\n" +
				"rule quota-fit: mode \"strict\": use enforce, warn or off\n" +
				"disabled rule nope: no such rule; the rules are listed in docs/policies.md\n" +
				"rule probe-timing is disabled and also given mode \"warn\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, errs := tt.settings.Config()
			if tt.wantErr != "" {
				if got := errors.Join(errs...); got == nil || got.Error() != tt.wantErr {
					t.Errorf("errors (-want +got):\n%s", cmp.Diff(tt.wantErr, errString(got)))
				}
				return
			}
			if len(errs) > 0 {
				t.Fatalf("errors: %v", errs)
			}
			if diff := cmp.Diff(tt.wantModes, cfg.Modes); diff != "" {
				t.Errorf("modes (-want +got):\n%s", diff)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestBuiltinOffAppliesWhatEnforceBlocks(t *testing.T) {
	quota := "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q, namespace: shop}\nspec: {hard: {pods: '1'}}\n---\n" + deploy("      containers: [{name: app, image: x}]\n")
	enforce, _ := Settings{Builtin: "enforce"}.Config()
	if !Blocking(Evaluate(objects(t, quota), enforce, nil)) {
		t.Fatal("quota-fit does not block with builtin: enforce")
	}
	for _, s := range []Settings{{Builtin: "off"}, {Builtin: "warn"}, {Disabled: []string{"quota-fit"}}} {
		cfg, errs := s.Config()
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		if Blocking(Evaluate(objects(t, quota), cfg, nil)) {
			t.Errorf("%+v still blocks", s)
		}
	}
}

func TestLoadAdmissionDirs(t *testing.T) {
	bad := "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata: {name: broken}\nspec:\n  validations:\n  - expression: \"object.data.size( > 2\"\n"
	root := t.TempDir()
	for name, content := range map[string]string{"guard/bad.yaml": bad, "app/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files := func(ap *AdmissionPolicies) []string {
		var out []string
		for _, e := range ap.Errors {
			out = append(out, e.File)
		}
		return out
	}
	ap, err := LoadAdmissionDirs(t.Context(), root, "app", []string{"guard"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"guard/bad.yaml"}, files(ap)); diff != "" {
		t.Errorf("policies of a named folder (-want +got):\n%s", diff)
	}
	if ap, err := LoadAdmission(t.Context(), root, "app", nil); err != nil || len(ap.Errors) != 0 {
		t.Errorf("the default policies/ folder picked up another: %v %v", err, files(ap))
	}
	if _, err := LoadAdmissionDirs(t.Context(), root, "app", []string{"guard", "missing"}, nil); err == nil || err.Error() != "policies missing: not in the repository" {
		t.Errorf("a named folder that is missing: %v", err)
	}
}
