package policy

import (
	"fmt"
	"sort"
)

// Settings are the gate's settings as people write them: the CLI's
// --policy and --policy-exclude-namespace flags, or a daemon sync's
// policies block. Config checks them and makes the gate's Config.
type Settings struct {
	// Builtin is the mode of every built-in rule that Modes does not name:
	// enforce (the default: each rule at its own severity), warn or off.
	Builtin string
	// Modes are modes by rule id: enforce, warn or off.
	Modes map[string]string
	// Disabled rule ids are off.
	Disabled []string
	// ExcludeNamespaces are not checked.
	ExcludeNamespaces []string
}

// Admission rule ids: findings of admission policies, and admission
// policies that cannot be evaluated.
const (
	RuleAdmissionPolicy        = "admission-policy"
	RuleAdmissionPolicyInvalid = "admission-policy-invalid"
)

// KnownRule reports whether id names a built-in rule or an admission rule.
func KnownRule(id string) bool {
	if id == RuleAdmissionPolicy || id == RuleAdmissionPolicyInvalid {
		return true
	}
	for _, r := range builtin {
		if r.ID == id {
			return true
		}
	}
	return false
}

// ParseMode reads enforce, warn or off.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Enforce, Warn, Off:
		return m, nil
	}
	return "", fmt.Errorf("mode %q: use enforce, warn or off", s)
}

// Config checks the settings and returns the gate's Config, without
// admission policies (LoadAdmission gathers those). It returns every
// problem, each naming its rule id or mode: an unknown rule is refused
// rather than ignored, since a misspelt id would silently leave a rule on.
func (s Settings) Config() (Config, []error) {
	var errs []error
	cfg := Config{Modes: map[string]Mode{}, ExcludeNamespaces: s.ExcludeNamespaces}
	if s.Builtin != "" {
		m, err := ParseMode(s.Builtin)
		if err != nil {
			errs = append(errs, fmt.Errorf("builtin: %w", err))
		} else if m != Enforce {
			for _, r := range builtin {
				cfg.Modes[r.ID] = m
			}
		}
	}
	ids := make([]string, 0, len(s.Modes))
	for id := range s.Modes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if !KnownRule(id) {
			errs = append(errs, fmt.Errorf("rule %s: no such rule; the rules are listed in docs/policies.md", id))
			continue
		}
		m, err := ParseMode(s.Modes[id])
		if err != nil {
			errs = append(errs, fmt.Errorf("rule %s: %w", id, err))
			continue
		}
		cfg.Modes[id] = m
	}
	for _, id := range s.Disabled {
		if !KnownRule(id) {
			errs = append(errs, fmt.Errorf("disabled rule %s: no such rule; the rules are listed in docs/policies.md", id))
			continue
		}
		if m, ok := s.Modes[id]; ok && Mode(m) != Off {
			errs = append(errs, fmt.Errorf("rule %s is disabled and also given mode %q", id, m))
			continue
		}
		cfg.Modes[id] = Off
	}
	return cfg, errs
}
