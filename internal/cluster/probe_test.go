package cluster

import "testing"

func TestProberThresholds(t *testing.T) {
	p := &Prober{FailureThreshold: 3, SuccessThreshold: 2}
	ready, down := Health{State: Ready}, Health{State: Offline, Reason: "connection refused"}
	steps := []struct {
		in   Health
		want State
	}{
		{ready, Ready},   // the first probe sets the state
		{down, Ready},    // one failure is not enough
		{down, Ready},    // two
		{ready, Ready},   // a success resets the count
		{down, Ready},    // 1
		{down, Ready},    // 2
		{down, Offline},  // 3: Offline
		{ready, Offline}, // one success is not enough
		{ready, Ready},   // two: Ready again
		{Health{State: Unauthorized}, Ready},
	}
	for i, s := range steps {
		if got := p.Observe(s.in).State; got != s.want {
			t.Fatalf("step %d: %s, want %s", i, got, s.want)
		}
	}
}

func TestSelect(t *testing.T) {
	specs := []Spec{{Name: "b", Labels: map[string]string{"region": "eu"}}, {Name: "a", Labels: map[string]string{"region": "eu"}}, {Name: "c", Labels: map[string]string{"region": "us"}}}
	got, err := Select(specs, "region=eu")
	if err != nil || len(got) != 2 || got[0].Name != "a" {
		t.Errorf("Select: %v %v", got, err)
	}
	if _, err := Select(specs, "region=mars"); err == nil {
		t.Error("a selector matching nothing is not an error")
	}
	if _, err := Select(specs, "region in (eu"); err == nil {
		t.Error("a bad selector is not an error")
	}
}
