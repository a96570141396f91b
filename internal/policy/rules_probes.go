package policy

import (
	"fmt"
	"reflect"
)

func init() {
	register("probe-liveness-missing", Warning, "long-running containers should have a liveness probe", func(c *Context) []Finding {
		return probeMissing(c, "livenessProbe", "liveness", "the kubelet cannot restart it when it hangs")
	})
	register("probe-readiness-missing", Warning, "long-running containers should have a readiness probe", func(c *Context) []Finding {
		return probeMissing(c, "readinessProbe", "readiness", "Services send it traffic before it can answer")
	})
	register("probe-port-undeclared", Error, "a probe's named port must be one the container declares", func(c *Context) []Finding {
		return checkProbePorts(c, true)
	})
	register("probe-port-unlisted", Warning, "a probe's numbered port should be among the container's declared ports", func(c *Context) []Finding {
		return checkProbePorts(c, false)
	})
	register("probe-liveness-equals-readiness", Warning, "liveness and readiness probes should differ", checkProbesEqual)
	register("probe-timing", Error, "probe timings the API server refuses", checkProbeTiming)
	register("probe-timeout-period", Warning, "a probe's timeout should be below its period", checkProbeTimeoutPeriod)
}

func probeMissing(c *Context, field, name, why string) []Finding {
	var out []Finding
	for _, w := range workloads(c.Objects) {
		if !w.longRunning {
			continue
		}
		for _, ctr := range containers(w.spec, "containers") {
			if _, ok := ctr[field]; !ok {
				out = append(out, finding(w.obj,
					fmt.Sprintf("container %s has no %s probe: %s", str(ctr, "name"), name, why),
					fmt.Sprintf("add %s to container %s", field, str(ctr, "name"))))
			}
		}
	}
	return out
}

var probeFields = []string{"livenessProbe", "readinessProbe", "startupProbe"}

// probePort returns a probe's port (number or name) and whether it has one.
func probePort(probe map[string]any) (any, bool) {
	for _, handler := range []string{"httpGet", "tcpSocket", "grpc"} {
		if h := mapAt(probe, handler); h != nil {
			p, ok := h["port"]
			return p, ok
		}
	}
	return nil, false
}

// checkProbePorts reports probes whose port the container does not
// declare: named ports when named is set (the kubelet cannot resolve the
// name, so the probe always fails), numbered ones otherwise. A numbered
// port need not be declared: declared ports are informational and the
// kubelet probes the number all the same, so an undeclared one is at most
// a typo, and is reported only when the container declares ports at all.
func checkProbePorts(c *Context, named bool) []Finding {
	var out []Finding
	for _, w := range workloads(c.Objects) {
		for _, ctr := range append(containers(w.spec, "containers"), containers(w.spec, "initContainers")...) {
			names, numbers := map[string]bool{}, map[int64]bool{}
			ports, _ := ctr["ports"].([]any)
			for _, p := range ports {
				pm, _ := p.(map[string]any)
				if n, ok := pm["name"].(string); ok {
					names[n] = true
				}
				if n, ok := pm["containerPort"].(int64); ok {
					numbers[n] = true
				}
			}
			for _, field := range probeFields {
				probe := mapAt(ctr, field)
				if probe == nil {
					continue
				}
				port, ok := probePort(probe)
				if !ok {
					continue
				}
				switch p := port.(type) {
				case string:
					if named && !names[p] {
						out = append(out, finding(w.obj, fmt.Sprintf("container %s: %s uses port %q, which the container does not name in ports: the kubelet cannot resolve it and the probe always fails", str(ctr, "name"), field, p),
							fmt.Sprintf("add a port named %s to container %s, or probe a declared one", p, str(ctr, "name"))))
					}
				case int64:
					if !named && len(numbers) > 0 && !numbers[p] {
						out = append(out, finding(w.obj, fmt.Sprintf("container %s: %s uses port %d, which is not among the container's declared ports; the kubelet probes it all the same, so this is only a problem if the number is a typo", str(ctr, "name"), field, p),
							fmt.Sprintf("declare %d in the container's ports, or probe one that is declared", p)))
					}
				}
			}
		}
	}
	return out
}

func checkProbesEqual(c *Context) []Finding {
	var out []Finding
	for _, w := range workloads(c.Objects) {
		for _, ctr := range containers(w.spec, "containers") {
			l, r := mapAt(ctr, "livenessProbe"), mapAt(ctr, "readinessProbe")
			if l != nil && r != nil && reflect.DeepEqual(l, r) {
				out = append(out, finding(w.obj, fmt.Sprintf("container %s: liveness and readiness probes are the same: a container that is only busy gets restarted instead of taken out of rotation", str(ctr, "name")),
					"give liveness a longer period or failure threshold, or probe something more basic"))
			}
		}
	}
	return out
}

// checkProbeTimeoutPeriod warns of a timeout that is not below the period.
// It breaks nothing: the kubelet never runs two probes of a container at
// once, so a slow answer only delays the next probe, and a probe that
// hangs is noticed after failureThreshold timeouts rather than periods.
func checkProbeTimeoutPeriod(c *Context) []Finding {
	var out []Finding
	for _, w := range workloads(c.Objects) {
		for _, ctr := range containers(w.spec, "containers") {
			for _, field := range probeFields {
				probe := mapAt(ctr, field)
				if probe == nil {
					continue
				}
				period, timeout := int64(10), int64(1)
				if v, ok := probe["periodSeconds"].(int64); ok {
					period = v
				}
				if v, ok := probe["timeoutSeconds"].(int64); ok {
					timeout = v
				}
				if timeout >= period && period >= 1 {
					out = append(out, finding(w.obj, fmt.Sprintf("container %s: %s.timeoutSeconds (%d) is not below periodSeconds (%d): the kubelet waits for a probe before it starts the next, so a slow answer probes every %d s instead of every %d s", str(ctr, "name"), field, timeout, period, timeout, period),
						"make timeoutSeconds smaller than periodSeconds if probes should keep their period"))
				}
			}
		}
	}
	return out
}

func checkProbeTiming(c *Context) []Finding {
	var out []Finding
	for _, w := range workloads(c.Objects) {
		for _, ctr := range containers(w.spec, "containers") {
			for _, field := range probeFields {
				probe := mapAt(ctr, field)
				if probe == nil {
					continue
				}
				num := func(k string, def int64) int64 {
					if v, ok := probe[k].(int64); ok {
						return v
					}
					return def
				}
				name := str(ctr, "name")
				if field != "readinessProbe" && num("successThreshold", 1) != 1 {
					out = append(out, finding(w.obj, fmt.Sprintf("container %s: %s.successThreshold is %d; the API requires 1 for liveness and startup probes", name, field, num("successThreshold", 1)), "set successThreshold to 1 or remove it"))
				}
				for _, k := range []string{"periodSeconds", "timeoutSeconds", "failureThreshold", "successThreshold"} {
					if v, ok := probe[k].(int64); ok && v < 1 {
						out = append(out, finding(w.obj, fmt.Sprintf("container %s: %s.%s is %d; it must be at least 1", name, field, k, v), fmt.Sprintf("set %s to 1 or more", k)))
					}
				}
			}
		}
	}
	return out
}
