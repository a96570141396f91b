package render

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// A render evaluates what a repository holds — kustomizations that read and
// generate, jsonnet that computes, YAML with aliases — and whoever can push
// to the repository chooses it. So Render never evaluates in the calling
// process: it starts the running executable again as a renderer (a child
// process that does nothing else), hands it the options on stdin, and reads
// the objects back on stdout. The child bounds itself before it reads
// anything of the repository: an address-space limit (memory), a CPU-time
// limit, no file writes, a smaller goroutine stack, and no network unless
// remote bases are allowed. The parent bounds the wall-clock time and the
// size of the answer, and kills the child's process group when either is
// exceeded. Whatever the repository does, the worst outcome is one failed
// render with an error that says which limit was hit.

// childEnv marks a process as a renderer child.
const childEnv = "GITK8S_RENDER_CHILD"

func init() {
	// Any binary that renders imports this package, so every such binary
	// (gitk8s and the test binaries alike) can serve as its own renderer.
	if os.Getenv(childEnv) == "1" {
		os.Exit(serveChild(os.Stdin, os.Stdout))
	}
}

// Limits bound one render. Zero fields take the defaults of DefaultLimits.
type Limits struct {
	// Memory is the memory the renderer may use, in bytes.
	Memory int64 `json:"memory,omitempty"`
	// CPU is the processor time the renderer may use.
	CPU time.Duration `json:"cpu,omitempty"`
	// Timeout is the wall-clock time the render may take.
	Timeout time.Duration `json:"timeout,omitempty"`
	// Output is the size of the rendered objects, in bytes of JSON.
	Output int64 `json:"output,omitempty"`
}

// DefaultLimits are the limits of a render that sets none: 1 GiB of memory,
// 60 s of CPU time, 2 minutes in all and 64 MiB of objects.
func DefaultLimits() Limits {
	return Limits{Memory: 1 << 30, CPU: time.Minute, Timeout: 2 * time.Minute, Output: 64 << 20}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.Memory <= 0 {
		l.Memory = d.Memory
	}
	if l.CPU <= 0 {
		l.CPU = d.CPU
	}
	if l.Timeout <= 0 {
		l.Timeout = d.Timeout
	}
	if l.Output <= 0 {
		l.Output = d.Output
	}
	return l
}

// ErrLimit is wrapped by the error of a render stopped at one of its limits.
var ErrLimit = errors.New("render limit exceeded")

// maxRenderers bounds the renderer children running at once in this
// process, so that many syncs rendering together cannot take all the
// machine's memory: the others wait for a slot.
var renderSlots = make(chan struct{}, max(2, runtime.NumCPU()))

// The messages between parent and child.
type (
	childRequest struct {
		Options Options `json:"options"`
		Limits  Limits  `json:"limits"`
	}
	childResponse struct {
		Objects []childObject `json:"objects,omitempty"`
		Skipped []Skipped     `json:"skipped,omitempty"`
		Errors  []childError  `json:"errors,omitempty"`
	}
	childObject struct {
		File      string         `json:"file"`
		Line      int            `json:"line,omitempty"`
		Object    map[string]any `json:"object"`
		Encrypted bool           `json:"encrypted,omitempty"`
	}
	childError struct {
		// Render is true for an *Error (file, line, object); false for
		// an error about the options or the tree as a whole.
		Render  bool   `json:"render,omitempty"`
		File    string `json:"file,omitempty"`
		Line    int    `json:"line,omitempty"`
		Object  string `json:"object,omitempty"`
		Message string `json:"message"`
		// RemoteBase marks an error that wraps ErrRemoteBase.
		RemoteBase bool `json:"remoteBase,omitempty"`
	}
)

// renderIsolated runs one render in a renderer child.
func renderIsolated(ctx context.Context, opts Options) (*Bundle, error) {
	limits := opts.Limits.withDefaults()
	select {
	case renderSlots <- struct{}{}:
		defer func() { <-renderSlots }()
	case <-ctx.Done():
		return nil, fmt.Errorf("render stopped: %w", ctx.Err())
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("render: cannot find the gitk8s executable to render in: %w", err)
	}
	req, err := json.Marshal(childRequest{Options: opts, Limits: limits})
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = childEnviron(opts.AllowRemoteBases)
	cmd.Stdin = bytes.NewReader(req)
	stdout := &cappedBuffer{limit: limits.Output + 1<<20}
	stdout.overflow = func() { killProcessGroup(cmd) }
	stderr := &cappedBuffer{limit: 64 << 10, truncate: true}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Wait returns even if something the renderer started still holds
	// its pipes.
	cmd.WaitDelay = time.Second
	isolateProcess(cmd)
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("render: cannot start the renderer: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Whatever the renderer started ends with it.
	defer killProcessGroup(cmd)
	timer := time.NewTimer(limits.Timeout)
	defer timer.Stop()
	var waitErr error
	var stopped error
	select {
	case waitErr = <-done:
	case <-timer.C:
		killProcessGroup(cmd)
		waitErr = <-done
		stopped = fmt.Errorf("%w: the render took longer than %s; simplify what the repository computes, or raise the render timeout", ErrLimit, limits.Timeout)
	case <-ctx.Done():
		killProcessGroup(cmd)
		<-done
		return nil, fmt.Errorf("render stopped: %w", ctx.Err())
	}
	if stopped == nil && (stdout.exceeded() || cmd.ProcessState.ExitCode() == exitOutputLimit) {
		stopped = fmt.Errorf("%w: the rendered objects are more than %s of JSON; split the source into several syncs, or raise the render output limit", ErrLimit, byteSize(limits.Output))
	}
	if stopped == nil && waitErr != nil {
		stopped = childFailure(waitErr, cmd.ProcessState, stderr.String(), limits, time.Since(started))
	}
	if stopped != nil {
		return nil, stopped
	}
	return decodeResponse(stdout.Bytes(), limits)
}

// childEnviron is the renderer's whole environment: nothing of the
// parent's (its credentials among it) but what a remote base needs, and
// the race detector's settings in a binary built with it.
func childEnviron(remote bool) []string {
	env := []string{childEnv + "=1"}
	if v, ok := os.LookupEnv("GORACE"); ok {
		env = append(env, "GORACE="+v)
	}
	if remote {
		for _, name := range []string{"PATH", "HOME", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR"} {
			if v, ok := os.LookupEnv(name); ok {
				env = append(env, name+"="+v)
			}
		}
	}
	return env
}

// outOfAddressSpace reports whether the renderer's stderr shows it ended
// at its address-space limit: an allocation the Go runtime or the race
// detector could not map (in -race builds the runtime may find no room
// left to place its heap beside the detector's shadow memory), or a
// thread whose stack could not be had.
func outOfAddressSpace(stderr string) bool {
	for _, sign := range []string{"out of memory", "cannot allocate", "failed to allocate", "cannot map pages",
		"pthread_create failed", "failed to create new OS thread", "too many address space collisions"} {
		if strings.Contains(stderr, sign) {
			return true
		}
	}
	return strings.Contains(stderr, "ThreadSanitizer") && strings.Contains(stderr, "mmap")
}

// childFailure explains a renderer that did not answer.
func childFailure(waitErr error, state *os.ProcessState, stderr string, limits Limits, took time.Duration) error {
	switch {
	case strings.Contains(stderr, "stack exceeds") || strings.Contains(stderr, "stack overflow"):
		return fmt.Errorf("%w: the render recursed too deeply (a jsonnet function or Helm template that never stops calling itself?); make the recursion end", ErrLimit)
	case state != nil && state.ExitCode() == exitMemoryLimit, outOfAddressSpace(stderr):
		return fmt.Errorf("%w: the render needed more than %s of memory (a YAML alias bomb, a jsonnet value or a Helm template output built too large?); make the source smaller, or raise the render memory limit", ErrLimit, byteSize(limits.Memory))
	case state != nil && (state.ExitCode() == exitCPULimit || killedBySignal(state) && cpuTime(state) >= limits.CPU*9/10):
		return fmt.Errorf("%w: the render used more than %s of CPU time; simplify what the repository computes, or raise the render CPU limit", ErrLimit, limits.CPU)
	}
	if line := firstLine(stderr, "panic: "); line != "" {
		return fmt.Errorf("render failed: the renderer crashed (%s) after %s; this is a bug in gitk8s, please report it with the source that causes it", truncate(line, 200), took.Round(time.Millisecond))
	}
	if line := firstLine(stderr, "fatal error: "); line != "" {
		return fmt.Errorf("render failed: the renderer ended without an answer (%v, %s) after %s", waitErr, truncate(line, 200), took.Round(time.Millisecond))
	}
	return fmt.Errorf("render failed: the renderer ended without an answer (%v) after %s", waitErr, took.Round(time.Millisecond))
}

func firstLine(s, prefix string) string {
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}

// decodeResponse turns the child's answer into a bundle or errors.
func decodeResponse(data []byte, limits Limits) (*Bundle, error) {
	var resp childResponse
	if err := utiljson.Unmarshal(data, &resp); err != nil {
		return nil, fmt.Errorf("render failed: the renderer's answer is not readable: %v", err)
	}
	if len(resp.Errors) > 0 {
		errs := make([]error, 0, len(resp.Errors))
		for _, e := range resp.Errors {
			var err error = errors.New(e.Message)
			if e.RemoteBase {
				err = &sentinelError{msg: e.Message, is: ErrRemoteBase}
			}
			if e.Render {
				err = &Error{Source: Source{File: e.File, Line: e.Line}, Object: e.Object, Err: err}
			}
			errs = append(errs, err)
		}
		return nil, errors.Join(errs...)
	}
	bundle := &Bundle{Objects: make([]*Object, 0, len(resp.Objects)), Skipped: resp.Skipped}
	for _, o := range resp.Objects {
		bundle.Objects = append(bundle.Objects, &Object{
			Object:    &unstructured.Unstructured{Object: o.Object},
			Source:    Source{File: o.File, Line: o.Line},
			Encrypted: o.Encrypted,
		})
	}
	return bundle, nil
}

// sentinelError carries a message and the sentinel it was made from.
type sentinelError struct {
	msg string
	is  error
}

func (e *sentinelError) Error() string { return e.msg }
func (e *sentinelError) Unwrap() error { return e.is }

// maxErrors is how many errors one render reports; the rest are counted.
const maxErrors = 100

// exitOutputLimit is the renderer's exit code when its answer would be
// larger than the output limit.
const exitOutputLimit = 4

// exitCPULimit and exitMemoryLimit are the renderer's exit codes when it
// reached its CPU or memory limit.
const (
	exitCPULimit    = 5
	exitMemoryLimit = 6
)

// serveChild is the renderer: it reads one request, bounds itself, renders
// and writes the answer. It returns the exit code.
func serveChild(in io.Reader, out io.Writer) int {
	var req childRequest
	if err := json.NewDecoder(io.LimitReader(in, 16<<20)).Decode(&req); err != nil {
		fmt.Fprintf(os.Stderr, "renderer: bad request: %v\n", err)
		return 3
	}
	if err := limitSelf(req.Limits); err != nil {
		fmt.Fprintf(os.Stderr, "renderer: cannot limit itself: %v\n", err)
		return 3
	}
	closeNetwork(req.Options.AllowRemoteBases)
	resp := renderForChild(req.Options)
	w := &jsonLimitWriter{w: out, left: req.Limits.Output}
	if err := json.NewEncoder(w).Encode(resp); err != nil {
		if w.left < 0 {
			return exitOutputLimit
		}
		fmt.Fprintf(os.Stderr, "renderer: cannot write the answer: %v\n", err)
		return 3
	}
	return 0
}

// renderForChild renders in this process and converts the outcome.
func renderForChild(opts Options) (resp childResponse) {
	defer func() {
		if r := recover(); r != nil {
			resp = childResponse{Errors: []childError{{Message: fmt.Sprintf("render failed: the renderer crashed (panic: %s); this is a bug in gitk8s, please report it with the source that causes it", truncate(fmt.Sprint(r), 200))}}}
		}
	}()
	bundle, err := renderInProcess(context.Background(), opts)
	if err != nil {
		errs := flattenErrors(err)
		if len(errs) > maxErrors {
			more := len(errs) - maxErrors
			errs = append(errs[:maxErrors], fmt.Errorf("and %d more errors; fix these first", more))
		}
		for _, e := range errs {
			ce := childError{Message: e.Error(), RemoteBase: errors.Is(e, ErrRemoteBase)}
			var re *Error
			if errors.As(e, &re) {
				ce = childError{Render: true, File: re.Source.File, Line: re.Source.Line, Object: re.Object, Message: re.Err.Error(), RemoteBase: errors.Is(re.Err, ErrRemoteBase)}
			}
			if opts.Boundary != "" {
				ce.Message = strings.NewReplacer("outside the repository", "outside "+opts.Boundary,
					"leaves the repository", "leaves "+opts.Boundary).Replace(ce.Message)
			}
			resp.Errors = append(resp.Errors, ce)
		}
		return resp
	}
	resp.Skipped = bundle.Skipped
	for _, o := range bundle.Objects {
		resp.Objects = append(resp.Objects, childObject{File: o.Source.File, Line: o.Source.Line, Object: o.Object.Object, Encrypted: o.Encrypted})
	}
	return resp
}

// flattenErrors undoes errors.Join, one level at a time.
func flattenErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flattenErrors(e)...)
		}
		return out
	}
	return []error{err}
}

// cappedBuffer keeps at most limit bytes. Past it, a truncating buffer drops
// the rest; otherwise it records the overflow, calls overflow once and
// refuses further writes.
type cappedBuffer struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	limit    int64
	truncate bool
	over     bool
	overflow func()
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := b.limit - int64(b.buf.Len())
	if int64(len(p)) <= room {
		return b.buf.Write(p)
	}
	if room > 0 {
		b.buf.Write(p[:room])
	}
	if b.truncate {
		return len(p), nil
	}
	if !b.over {
		b.over = true
		if b.overflow != nil {
			go b.overflow()
		}
	}
	return 0, errOutputLimit
}

var errOutputLimit = errors.New("output limit exceeded")

func (b *cappedBuffer) exceeded() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.over
}

func (b *cappedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Bytes()
}

func (b *cappedBuffer) String() string { return string(b.Bytes()) }

// jsonLimitWriter stops the child's answer at the output limit, so a huge
// bundle is never fully encoded.
type jsonLimitWriter struct {
	w    io.Writer
	left int64
}

func (l *jsonLimitWriter) Write(p []byte) (int, error) {
	l.left -= int64(len(p))
	if l.left < 0 {
		return 0, errOutputLimit
	}
	return l.w.Write(p)
}
