package render

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gitk8s/gitk8s/internal/testenv"
)

// aliasBomb is a "billion laughs" document: nine levels of nine aliases,
// 387 million strings once expanded.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\nx0: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n")
	for i := 1; i <= 9; i++ {
		p := fmt.Sprintf("*a%d", i-1)
		fmt.Fprintf(&b, "x%d: &a%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(p+",", 9), ","))
	}
	b.WriteString("data: {k: v}\n")
	return b.String()
}

// TestRenderLimits: a repository that recurses, allocates, spins, waits or
// outputs without bound fails its own render with an error naming the limit
// it hit, and the process that asked goes on.
func TestRenderLimits(t *testing.T) {
	small := Limits{Memory: 256 << 20, CPU: 2 * time.Second, Timeout: 20 * time.Second, Output: 1 << 20}
	tests := []struct {
		name   string
		files  map[string]string
		limits Limits
		want   string
	}{
		{"tailstrict recursion", map[string]string{
			"main.jsonnet": "local f(n) = f(n + 1) tailstrict; f(0)",
		}, small, "recursed too deeply"},
		{"a huge string", map[string]string{
			"main.jsonnet": `{apiVersion: "v1", kind: "ConfigMap", metadata: {name: "x"}, data: {k: std.repeat("xxxxxxxx", 1 << 28)}}`,
		}, small, "more than 256 MiB of memory"},
		{"a huge array", map[string]string{
			"main.jsonnet": `std.length(std.makeArray(1 << 30, function(i) [i]))`,
		}, small, "more than 256 MiB of memory"},
		{"a loop that spins", map[string]string{
			"main.jsonnet": `[x for x in std.range(1, 100000) for y in std.range(1, 100000) if x < 0]`,
		}, small, "more than 2s of CPU time"},
		{"a render that takes too long", map[string]string{
			"main.jsonnet": `[x for x in std.range(1, 100000) for y in std.range(1, 100000) if x < 0]`,
		}, Limits{Memory: 256 << 20, CPU: time.Minute, Timeout: time.Second, Output: 1 << 20}, "took longer than 1s"},
		{"output larger than the limit", map[string]string{
			"main.jsonnet": `[{apiVersion: "v1", kind: "ConfigMap", metadata: {name: "c" + i}, data: {k: std.repeat("x", 1000)}} for i in std.range(1, 400)]`,
		}, Limits{Memory: 256 << 20, CPU: 20 * time.Second, Timeout: 40 * time.Second, Output: 256 << 10}, "more than 256 KiB of JSON"},
		{"an alias bomb listed as a kustomize resource", map[string]string{
			"kustomization.yaml": "resources: [bomb.yaml]\n",
			"bomb.yaml":          aliasBomb(),
		}, small, ""},
		{"an alias bomb in plain YAML", map[string]string{
			"bomb.yaml": aliasBomb(),
		}, small, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := testenv.WriteFiles(t, tt.files)
			start := time.Now()
			_, err := Render(t.Context(), Options{Root: root, Limits: tt.limits})
			t.Logf("after %s: %v", time.Since(start).Round(time.Millisecond), err)
			if err == nil {
				t.Fatal("rendered without error")
			}
			if tt.want != "" {
				if !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrLimit) {
					t.Errorf("error %q, want one that wraps ErrLimit and says %q", err, tt.want)
				}
			}
			if took := time.Since(start); took > tt.limits.Timeout+5*time.Second {
				t.Errorf("the render took %s, more than its limits allow", took)
			}
		})
	}
}

// TestRenderLimitsDoNotStopOthers: while one sync's render spins until its
// limit, another's finishes as fast as ever.
func TestRenderLimitsDoNotStopOthers(t *testing.T) {
	hostile := testenv.WriteFiles(t, map[string]string{
		"main.jsonnet": `[x for x in std.range(1, 100000) for y in std.range(1, 100000) if x < 0]`,
	})
	good := testenv.WriteFiles(t, map[string]string{
		"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine}\n",
	})
	var wg sync.WaitGroup
	wg.Add(1)
	var hostileErr error
	go func() {
		defer wg.Done()
		_, hostileErr = Render(t.Context(), Options{Root: hostile, Limits: Limits{CPU: 4 * time.Second}})
	}()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	b, err := Render(t.Context(), Options{Root: good})
	took := time.Since(start)
	if err != nil || len(b.Objects) != 1 {
		t.Fatalf("the good render: %v", err)
	}
	wg.Wait()
	t.Logf("the good render took %s while the hostile one ran; the hostile one: %v", took.Round(time.Millisecond), hostileErr)
	if took > 3*time.Second {
		t.Errorf("the good render took %s", took)
	}
	if !errors.Is(hostileErr, ErrLimit) {
		t.Errorf("the hostile render: %v, want a limit", hostileErr)
	}
}

// TestRenderCancel: a cancelled context ends the renderer at once.
func TestRenderCancel(t *testing.T) {
	root := testenv.WriteFiles(t, map[string]string{
		"main.jsonnet": `[x for x in std.range(1, 100000) for y in std.range(1, 100000) if x < 0]`,
	})
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Render(ctx, Options{Root: root})
	if err == nil || !strings.Contains(err.Error(), "render stopped") || time.Since(start) > 3*time.Second {
		t.Errorf("after %s: %v, want the render stopped at the deadline", time.Since(start), err)
	}
}

// TestKustomizeNeverFetches: with remote bases off, no path kustomize
// accepts reaches the network; every one fails naming the fix.
func TestKustomizeNeverFetches(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		fmt.Fprint(w, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fetched}\n")
	}))
	defer srv.Close()
	u := srv.URL + "/x.yaml"
	cm := "cm.yaml"
	cases := map[string]string{
		"resources":        "resources: [" + u + "]\n",
		"patches":          "resources: [" + cm + "]\npatches: [{path: " + u + "}]\n",
		"strategic merge":  "resources: [" + cm + "]\npatchesStrategicMerge: [" + u + "]\n",
		"json6902":         "resources: [" + cm + "]\npatchesJson6902: [{target: {version: v1, kind: ConfigMap, name: cm}, path: " + u + "}]\n",
		"generator files":  "configMapGenerator: [{name: g, files: [" + u + "]}]\n",
		"generator envs":   "configMapGenerator: [{name: g, envs: [" + u + "]}]\n",
		"secret files":     "secretGenerator: [{name: g, files: [k=" + u + "]}]\n",
		"transformers":     "resources: [" + cm + "]\ntransformers: [" + u + "]\n",
		"generators":       "generators: [" + u + "]\n",
		"validators":       "resources: [" + cm + "]\nvalidators: [" + u + "]\n",
		"openapi":          "resources: [" + cm + "]\nopenapi: {path: " + u + "}\n",
		"replacements":     "resources: [" + cm + "]\nreplacements: [{path: " + u + "}]\n",
		"configurations":   "resources: [" + cm + "]\nconfigurations: [" + u + "]\n",
		"crds":             "resources: [" + cm + "]\ncrds: [" + u + "]\n",
		"components":       "resources: [" + cm + "]\ncomponents: [" + u + "]\n",
		"helm chart":       "helmCharts: [{name: x, repo: " + srv.URL + "}]\n",
		"git remote":       "resources: [" + "https://" + strings.TrimPrefix(srv.URL, "http://") + "/org/repo//base?ref=main" + "]\n",
		"scp-like remote":  "resources: [git@" + strings.TrimPrefix(srv.URL, "http://") + ":org/repo.git]\n",
		"base in a folder": "resources: [base]\n",
	}
	for name, kustomization := range cases {
		t.Run(name, func(t *testing.T) {
			files := map[string]string{
				"kustomization.yaml": kustomization,
				cm:                   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n",
			}
			if name == "base in a folder" {
				files["base/kustomization.yaml"] = "resources: [" + u + "]\n"
			}
			root := testenv.WriteFiles(t, files)
			before := requests.Load()
			_, err := Render(t.Context(), Options{Root: root})
			if n := requests.Load() - before; n != 0 {
				t.Errorf("%d requests reached the server", n)
			}
			if err == nil {
				t.Fatal("rendered without error")
			}
			t.Log(err)
			if name == "helm chart" {
				// With Helm on, a chart that is not vendored is not pulled.
				_, err := Render(t.Context(), Options{Root: root, KustomizeHelm: true})
				if n := requests.Load() - before; n != 0 {
					t.Errorf("with Helm on, %d requests reached the server", n)
				}
				if err == nil || !strings.Contains(err.Error(), "does not pull") {
					t.Errorf("with Helm on: %v, want an error saying the chart is not pulled", err)
				}
			}
		})
	}
}

// TestKustomizeRemoteFetchesAreBounded: with remote bases on, a server that
// never answers costs the render its timeout and nothing more.
func TestKustomizeRemoteFetchesAreBounded(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/ok.yaml") {
			fmt.Fprint(w, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fetched}\n")
			return
		}
		<-release
	}))
	defer srv.Close()
	defer close(release)
	ok := testenv.WriteFiles(t, map[string]string{"kustomization.yaml": "resources: [" + srv.URL + "/ok.yaml]\n"})
	b, err := Render(t.Context(), Options{Root: ok, AllowRemoteBases: true})
	if err != nil || len(b.Objects) != 1 || b.Objects[0].Object.GetName() != "fetched" {
		t.Fatalf("a remote resource with remote bases on: %v", err)
	}
	slow := testenv.WriteFiles(t, map[string]string{"kustomization.yaml": "resources: [" + srv.URL + "/slow.yaml]\n"})
	start := time.Now()
	_, err = Render(t.Context(), Options{Root: slow, AllowRemoteBases: true, Limits: Limits{Timeout: 2 * time.Second}})
	if !errors.Is(err, ErrLimit) || time.Since(start) > 5*time.Second {
		t.Errorf("after %s: %v, want the render stopped at its timeout", time.Since(start), err)
	}
}

// TestKustomizeErrorsHideSecretInputs: a kustomize error that quotes a
// Secret generator's input shows none of it.
func TestKustomizeErrorsHideSecretInputs(t *testing.T) {
	const secret = "hunter2-correct-horse"
	tests := map[string]map[string]string{
		"literal without =": {
			"kustomization.yaml": "secretGenerator: [{name: db, literals: [" + secret + "]}]\n",
		},
		"a duplicate key": {
			"kustomization.yaml": "secretGenerator: [{name: db, literals: ['k=" + secret + "', 'k=" + secret + "']}]\n",
		},
		"in a base": {
			"kustomization.yaml":      "resources: [base]\n",
			"base/kustomization.yaml": "secretGenerator: [{name: db, literals: [" + secret + "]}]\n",
		},
	}
	for name, files := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Render(t.Context(), Options{Root: testenv.WriteFiles(t, files)})
			if err == nil {
				t.Fatal("rendered without error")
			}
			t.Log(err)
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "correct-horse") {
				t.Errorf("the error shows the Secret's input: %v", err)
			}
		})
	}
}

// TestKustomizeEnvFilesCannotReadTheEnvironment: an env file line without
// "=" takes its value from kustomize's environment; the renderer's holds
// nothing of gitk8s's, so a commit cannot turn the daemon's credentials
// into a Secret it can read.
func TestKustomizeEnvFilesCannotReadTheEnvironment(t *testing.T) {
	t.Setenv("GITK8S_TOKEN_FOR_TEST", "s3cr3t-from-the-environment")
	root := testenv.WriteFiles(t, map[string]string{
		"kustomization.yaml": "secretGenerator: [{name: loot, envs: [loot.env]}]\n",
		"loot.env":           "GITK8S_TOKEN_FOR_TEST\nHOME\nPATH\n",
	})
	b, err := Render(t.Context(), Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(b.Objects[0].Object.Object)
	t.Logf("the generated Secret: %s", data)
	for _, v := range []string{"s3cr3t-from-the-environment", os.Getenv("HOME"), os.Getenv("PATH")} {
		if v != "" && strings.Contains(string(data), base64.StdEncoding.EncodeToString([]byte(v))) {
			t.Errorf("the Secret holds a value of gitk8s's environment")
		}
	}
}

// TestRendererEnvironment: the renderer child gets none of the parent's
// environment unless remote bases need it.
func TestRendererEnvironment(t *testing.T) {
	t.Setenv("GITK8S_TOKEN_FOR_TEST", "s3cr3t")
	for _, remote := range []bool{false, true} {
		for _, kv := range childEnviron(remote) {
			if strings.Contains(kv, "s3cr3t") {
				t.Errorf("remote=%v: the renderer inherits %s", remote, kv)
			}
		}
	}
	for _, kv := range childEnviron(false) {
		if name, _, _ := strings.Cut(kv, "="); name != childEnv && name != "GORACE" {
			t.Errorf("without remote bases the renderer's environment holds %s, want only its marker (and the race detector's settings)", kv)
		}
	}
	if _, ok := os.LookupEnv(childEnv); ok {
		t.Errorf("the test process itself is marked a renderer")
	}
}

// TestRendererIsTheFirstToGo: the renderer raises its own OOM score, so
// that if memory runs short the kernel ends it before gitk8s.
func TestRendererIsTheFirstToGo(t *testing.T) {
	if _, err := os.Stat("/proc/self/oom_score_adj"); err != nil {
		t.Skip("no /proc/self/oom_score_adj on this system")
	}
	root := testenv.WriteFiles(t, map[string]string{
		"main.jsonnet": `[x for x in std.range(1, 100000) for y in std.range(1, 100000) if x < 0]`,
	})
	done := make(chan error, 1)
	go func() {
		_, err := Render(t.Context(), Options{Root: root, Limits: Limits{Timeout: 5 * time.Second}})
		done <- err
	}()
	score := ""
	for deadline := time.Now().Add(4 * time.Second); score != "1000" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, pid := range childrenOf(t, os.Getpid()) {
			data, err := os.ReadFile("/proc/" + pid + "/oom_score_adj")
			if err == nil {
				score = strings.TrimSpace(string(data))
			}
		}
	}
	<-done
	if score != "1000" {
		t.Errorf("the renderer's oom_score_adj is %q, want 1000", score)
	}
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(t *testing.T, pid int) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, e := range entries {
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after ")".
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) > 1 && fields[1] == fmt.Sprint(pid) {
			kids = append(kids, e.Name())
		}
	}
	return kids
}

// TestRenderersReadOnlyRegularFilesInside: a link the kernel follows but
// path resolution cannot (/proc/self/fd/N names "pipe:[…]"), and a named
// pipe inside the repository, are refused by kustomize and jsonnet before
// anything is read from them; reading either would block the render or
// read what another process writes.
func TestRenderersReadOnlyRegularFilesInside(t *testing.T) {
	tests := map[string]struct {
		files map[string]string
		link  string // made at "loot" when set
		fifo  bool   // a named pipe at "loot"
		want  string
	}{
		"kustomize file through a /proc link": {
			files: map[string]string{"kustomization.yaml": "configMapGenerator: [{name: x, files: [loot]}]\n"},
			link:  "/proc/self/fd/0", want: "loot",
		},
		"kustomize resource through a /proc link": {
			files: map[string]string{"kustomization.yaml": "resources: [loot]\n"},
			link:  "/proc/self/fd/1", want: "loot",
		},
		"kustomize file that is a named pipe": {
			files: map[string]string{"kustomization.yaml": "configMapGenerator: [{name: x, files: [loot]}]\n"},
			fifo:  true, want: "not a regular file",
		},
		"jsonnet importstr through a /proc link": {
			files: map[string]string{"main.jsonnet": "{apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'x'}, data: {k: importstr 'loot'}}"},
			link:  "/proc/self/fd/0", want: "loot",
		},
		"jsonnet importstr of a named pipe": {
			files: map[string]string{"main.jsonnet": "{apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'x'}, data: {k: importstr 'loot'}}"},
			fifo:  true, want: "not a regular file",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			root := testenv.WriteFiles(t, tt.files)
			loot := root + "/loot"
			if tt.link != "" {
				if err := os.Symlink(tt.link, loot); err != nil {
					t.Fatal(err)
				}
			}
			if tt.fifo {
				if err := syscall.Mkfifo(loot, 0o644); err != nil {
					t.Skipf("mkfifo: %v", err)
				}
			}
			start := time.Now()
			_, err := Render(t.Context(), Options{Root: root, Limits: Limits{Timeout: 10 * time.Second}})
			t.Logf("after %s: %v", time.Since(start).Round(time.Millisecond), err)
			if err == nil || !strings.Contains(err.Error(), tt.want) || errors.Is(err, ErrLimit) {
				t.Errorf("error %v, want one that says %q at once", err, tt.want)
			}
		})
	}
}

// TestKustomizeErrorsHideQuotedSecrets: a Secret kustomize quotes whole in
// an error shows no value.
func TestKustomizeErrorsHideQuotedSecrets(t *testing.T) {
	msg := "found multiple possible referrals: \napiVersion: v1\ndata:\n  password: aHVudGVyMg==\n  user: YWRtaW4=\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  token: plain-token\ntype: Opaque\n"
	got := redactSecretInputs(msg, nil)
	for _, v := range []string{"aHVudGVyMg==", "YWRtaW4=", "plain-token"} {
		if strings.Contains(got, v) {
			t.Errorf("the error still shows %s:\n%s", v, got)
		}
	}
	if !strings.Contains(got, "password: [redacted]") || !strings.Contains(got, "name: db") {
		t.Errorf("the error lost what is not a value:\n%s", got)
	}
}

// The ways a renderer ends at its address-space limit are all named as
// the memory limit; another fatal error is quoted.
func TestChildFailureNamesTheAddressSpaceLimit(t *testing.T) {
	limits := Limits{Memory: 256 << 20}
	for _, stderr := range []string{
		"fatal error: runtime: out of memory\n",
		"runtime/cgo: pthread_create failed: Resource temporarily unavailable\nSIGABRT: abort\n",
		"runtime: failed to create new OS thread (have 9 already; errno=11)\nfatal error: newosproc\n",
		"fatal error: runtime: cannot map pages in arena address space\n",
		"==1==ERROR: ThreadSanitizer failed to allocate 0x4000 (16384) bytes\n",
		"ThreadSanitizer: unexpected mmap failure\n",
		"fatal error: too many address space collisions for -race mode\n",
	} {
		if err := childFailure(errors.New("exit status 2"), nil, stderr, limits, time.Second); !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "more than 256 MiB of memory") {
			t.Errorf("stderr %q: %v, want the memory limit", stderr, err)
		}
	}
	err := childFailure(errors.New("exit status 2"), nil, "goroutine 1 [running]:\nfatal error: concurrent map writes\n", limits, time.Second)
	if errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "fatal error: concurrent map writes") {
		t.Errorf("another fatal error: %v, want it quoted and not a limit", err)
	}
}
