package testenv

import "strings"

// sanitize makes a test name a valid label value.
func sanitize(name string) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteRune('_')
		}
	}
	s := strings.Trim(b.String(), "_-.")
	if len(s) > 63 {
		s = strings.Trim(s[:63], "_-.")
	}
	return s
}
