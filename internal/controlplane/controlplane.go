package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Options says what to start and where.
type Options struct {
	// Dir holds everything the control plane writes: certificates, etcd data,
	// logs, the kubeconfig and the state file. It is created if missing.
	Dir string
	// BinDir holds etcd, kube-apiserver, kube-controller-manager,
	// kube-scheduler and kwok.
	BinDir string
	// KwokStages is the file of kwok Stage objects (node and pod lifecycles)
	// that kwok runs; see Stages.
	KwokStages string
	// Clusters is how many clusters to start (default 1). They share one etcd,
	// each under its own key prefix.
	Clusters int
	// Nodes is how many fake nodes each cluster gets (default 3).
	Nodes int
	// Detach lets the processes outlive the caller (for `make demo`); without
	// it they are killed when the calling process dies (for tests).
	Detach bool
}

// ControlPlane is a running set of local clusters.
type ControlPlane struct {
	// Dir is the working directory given in Options.
	Dir string `json:"dir"`
	// Kubeconfig is the path of a kubeconfig with one context per cluster,
	// named after the cluster, each with cluster-admin credentials.
	Kubeconfig string `json:"kubeconfig"`
	// Clusters are the clusters in start order.
	Clusters []*Cluster `json:"clusters"`
	// Etcd is the shared etcd.
	Etcd Process `json:"etcd"`
	// EtcdURL is where etcd serves its clients.
	EtcdURL string `json:"etcdURL"`

	opts     Options
	etcdArgs []string
}

// Cluster is one local cluster: an API server and its controllers.
type Cluster struct {
	// Name is also the kubeconfig context name.
	Name string `json:"name"`
	// Server is the API server's URL.
	Server string `json:"server"`
	// Processes are the cluster's processes, the API server first.
	Processes []Process `json:"processes"`

	dir     string
	apiArgs []string
	client  *http.Client
}

// Process is one started program.
type Process struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	Log  string `json:"log"`
}

const stateFile = "state.json"

// Start builds certificates and configuration in opts.Dir, starts etcd and
// every cluster, waits until each API server is ready and its nodes are
// Ready, and writes the kubeconfig. On failure it stops what it started.
func Start(ctx context.Context, opts Options) (_ *ControlPlane, err error) {
	if opts.Clusters <= 0 {
		opts.Clusters = 1
	}
	if opts.Nodes <= 0 {
		opts.Nodes = 3
	}
	for _, bin := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
		if _, err := os.Stat(filepath.Join(opts.BinDir, bin)); err != nil {
			return nil, fmt.Errorf("control plane binary %s missing in %s (build them with `make controlplane`): %w", bin, opts.BinDir, err)
		}
	}
	if _, err := os.Stat(opts.KwokStages); err != nil {
		return nil, fmt.Errorf("kwok stages %s missing (build them with `make controlplane`): %w", opts.KwokStages, err)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	if old, err := Load(opts.Dir); err == nil && old.anyAlive() {
		return nil, fmt.Errorf("a control plane is already running from %s; stop it first", opts.Dir)
	}
	// A fresh start never reuses old data: tests and the demo expect empty clusters.
	for _, stale := range []string{"etcd", "kubeconfig", stateFile} {
		_ = os.RemoveAll(filepath.Join(opts.Dir, stale))
	}
	cp := &ControlPlane{Dir: opts.Dir, Kubeconfig: filepath.Join(opts.Dir, "kubeconfig"), opts: opts}
	defer func() {
		if err != nil {
			_ = cp.Stop()
		}
	}()

	if err := cp.startEtcd(ctx); err != nil {
		return nil, err
	}
	kubeconfig := clientcmdapi.NewConfig()
	for i := 1; i <= opts.Clusters; i++ {
		c, err := cp.startCluster(ctx, fmt.Sprintf("local-%d", i), kubeconfig)
		if err != nil {
			return nil, err
		}
		cp.Clusters = append(cp.Clusters, c)
		if err := cp.save(); err != nil {
			return nil, err
		}
	}
	kubeconfig.CurrentContext = cp.Clusters[0].Name
	if err := clientcmd.WriteToFile(*kubeconfig, cp.Kubeconfig); err != nil {
		return nil, err
	}
	for _, c := range cp.Clusters {
		if err := createNodes(ctx, cp.Kubeconfig, c.Name, opts.Nodes); err != nil {
			return nil, fmt.Errorf("cluster %s: %w", c.Name, err)
		}
	}
	return cp, cp.save()
}

// Load reads the state of a control plane started from dir.
func Load(dir string) (*ControlPlane, error) {
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{}
	if err := json.Unmarshal(data, cp); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, stateFile), err)
	}
	return cp, nil
}

// Stop ends exactly the processes this control plane started, clusters
// first and etcd last, and waits until they are gone.
func (cp *ControlPlane) Stop() error {
	var errs []error
	for i := len(cp.Clusters) - 1; i >= 0; i-- {
		procs := cp.Clusters[i].Processes
		for j := len(procs) - 1; j >= 0; j-- {
			errs = append(errs, procs[j].stop())
		}
	}
	errs = append(errs, cp.Etcd.stop())
	return errors.Join(errs...)
}

// Running reports whether every process of the control plane is alive.
func (cp *ControlPlane) Running() bool {
	if !cp.Etcd.alive() {
		return false
	}
	for _, c := range cp.Clusters {
		for _, p := range c.Processes {
			if !p.alive() {
				return false
			}
		}
	}
	return len(cp.Clusters) > 0
}

func (cp *ControlPlane) anyAlive() bool {
	if cp.Etcd.alive() {
		return true
	}
	for _, c := range cp.Clusters {
		for _, p := range c.Processes {
			if p.alive() {
				return true
			}
		}
	}
	return false
}

func (cp *ControlPlane) save() error {
	data, err := json.MarshalIndent(cp, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(cp.Dir, stateFile), data, 0o644)
}

func (cp *ControlPlane) startEtcd(ctx context.Context) error {
	clientPort, err := freePort()
	if err != nil {
		return err
	}
	peerPort, err := freePort()
	if err != nil {
		return err
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	cp.EtcdURL = client
	cp.etcdArgs = []string{
		"--name=gitk8s",
		"--data-dir=" + filepath.Join(cp.Dir, "etcd"),
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=gitk8s=" + peer,
		"--unsafe-no-fsync=true",
		"--quota-backend-bytes=4294967296",
		"--log-level=warn",
	}
	return cp.spawnEtcd(ctx)
}

// spawnEtcd starts etcd with its arguments (its addresses and data
// directory) and waits until it is healthy.
func (cp *ControlPlane) spawnEtcd(ctx context.Context) error {
	p, err := cp.spawn("etcd", filepath.Join(cp.Dir, "etcd.log"), cp.etcdArgs...)
	if err != nil {
		return err
	}
	cp.Etcd = p
	if err := cp.save(); err != nil {
		return err
	}
	return waitFor(ctx, "etcd", p, 60*time.Second, func() bool {
		resp, err := http.Get(cp.EtcdURL + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func (cp *ControlPlane) startCluster(ctx context.Context, name string, kubeconfig *clientcmdapi.Config) (*Cluster, error) {
	dir := filepath.Join(cp.Dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ca, err := newCA(name + "-ca")
	if err != nil {
		return nil, err
	}
	serving, err := newServingCert(ca)
	if err != nil {
		return nil, err
	}
	admin, err := newClientCert(ca, "gitk8s-admin", "system:masters")
	if err != nil {
		return nil, err
	}
	caFile, caKeyFile, err := ca.write(dir, "ca")
	if err != nil {
		return nil, err
	}
	servingCert, servingKey, err := serving.write(dir, "apiserver")
	if err != nil {
		return nil, err
	}
	saKey, saPub, err := newServiceAccountKey(dir)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	c := &Cluster{Name: name, Server: fmt.Sprintf("https://127.0.0.1:%d", port), dir: dir}

	kubeconfig.Clusters[name] = &clientcmdapi.Cluster{Server: c.Server, CertificateAuthorityData: ca.certPEM}
	kubeconfig.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: admin.certPEM, ClientKeyData: admin.keyPEM}
	kubeconfig.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name, Namespace: "default"}
	own := clientcmdapi.NewConfig()
	own.Clusters[name], own.AuthInfos[name], own.Contexts[name] = kubeconfig.Clusters[name], kubeconfig.AuthInfos[name], kubeconfig.Contexts[name]
	own.CurrentContext = name
	adminKubeconfig := filepath.Join(dir, "admin.kubeconfig")
	if err := clientcmd.WriteToFile(*own, adminKubeconfig); err != nil {
		return nil, err
	}

	c.apiArgs = []string{
		"--etcd-servers=" + cp.EtcdURL,
		"--etcd-prefix=/" + name,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + servingCert,
		"--tls-private-key-file=" + servingKey,
		"--client-ca-file=" + caFile,
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--api-audiences=https://kubernetes.default.svc",
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--service-node-port-range=30000-32767",
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
		"--audit-log-path=" + filepath.Join(dir, "audit.log"),
		"--audit-policy-file=" + filepath.Join(dir, "audit-policy.yaml"),
		"--audit-log-format=json",
		"--audit-log-maxsize=200",
		"--audit-log-maxbackup=1",
	}
	if err := os.WriteFile(filepath.Join(dir, "audit-policy.yaml"), []byte(auditPolicy), 0o644); err != nil {
		return nil, err
	}
	tlsConfig := &tls.Config{RootCAs: x509.NewCertPool()}
	tlsConfig.RootCAs.AddCert(ca.cert)
	clientCert, err := tls.X509KeyPair(admin.certPEM, admin.keyPEM)
	if err != nil {
		return nil, err
	}
	tlsConfig.Certificates = []tls.Certificate{clientCert}
	c.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	if err := cp.startAPIServer(ctx, c); err != nil {
		return nil, err
	}

	controllers := []struct {
		name string
		args []string
	}{
		{"kube-controller-manager", []string{
			"--kubeconfig=" + adminKubeconfig,
			"--authentication-kubeconfig=" + adminKubeconfig,
			"--authorization-kubeconfig=" + adminKubeconfig,
			"--secure-port=0",
			"--leader-elect=false",
			"--use-service-account-credentials=false",
			"--service-account-private-key-file=" + saKey,
			"--root-ca-file=" + caFile,
			"--cluster-signing-cert-file=" + caFile,
			"--cluster-signing-key-file=" + caKeyFile,
			"--allocate-node-cidrs=false",
			"--cluster-name=" + name,
			"--concurrent-deployment-syncs=10",
			"--concurrent-replicaset-syncs=10",
			"--concurrent-statefulset-syncs=10",
			"--kube-api-qps=200",
			"--kube-api-burst=400",
		}},
		{"kube-scheduler", []string{
			"--kubeconfig=" + adminKubeconfig,
			"--authentication-kubeconfig=" + adminKubeconfig,
			"--authorization-kubeconfig=" + adminKubeconfig,
			"--secure-port=0",
			"--leader-elect=false",
		}},
		{"kwok", []string{
			"--kubeconfig=" + adminKubeconfig,
			"--manage-all-nodes=false",
			"--manage-nodes-with-annotation-selector=" + FakeNodeAnnotation + "=fake",
			"--config=" + cp.opts.KwokStages,
			"--server-address=",
			"--cidr=10.244.0.0/16",
			"--node-ip=10.0.0.1",
		}},
	}
	for _, ctrl := range controllers {
		p, err := cp.spawn(ctrl.name, filepath.Join(dir, ctrl.name+".log"), ctrl.args...)
		if err != nil {
			return nil, err
		}
		c.Processes = append(c.Processes, p)
	}
	return c, nil
}

// Cluster returns the cluster of that name, or nil.
func (cp *ControlPlane) Cluster(name string) *Cluster {
	for _, c := range cp.Clusters {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// StopAPIServer stops a cluster's API server, leaving its controllers and
// data alone, as when a cluster becomes unreachable. Only a ControlPlane
// returned by Start can restart it.
func (cp *ControlPlane) StopAPIServer(name string) error {
	c := cp.Cluster(name)
	if c == nil || len(c.Processes) == 0 {
		return fmt.Errorf("no cluster %s", name)
	}
	return c.Processes[0].stop()
}

// StartAPIServer starts a stopped API server again and waits until it is ready.
func (cp *ControlPlane) StartAPIServer(ctx context.Context, name string) error {
	c := cp.Cluster(name)
	if c == nil || c.apiArgs == nil {
		return fmt.Errorf("cluster %s was not started by this process", name)
	}
	return cp.startAPIServer(ctx, c)
}

// startAPIServer starts (or restarts) the cluster's API server and waits
// until /readyz answers.
func (cp *ControlPlane) startAPIServer(ctx context.Context, c *Cluster) error {
	p, err := cp.spawn("kube-apiserver", filepath.Join(c.dir, "kube-apiserver.log"), c.apiArgs...)
	if err != nil {
		return err
	}
	if len(c.Processes) == 0 {
		c.Processes = append(c.Processes, p)
	} else {
		c.Processes[0] = p
	}
	if err := cp.save(); err != nil {
		return err
	}
	return waitFor(ctx, c.Name+" kube-apiserver", p, 120*time.Second, func() bool {
		resp, err := c.client.Get(c.Server + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// spawn starts one program with its output in logFile.
func (cp *ControlPlane) spawn(name, logFile string, args ...string) (Process, error) {
	log, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return Process{}, err
	}
	defer log.Close()
	cmd := exec.Command(filepath.Join(cp.opts.BinDir, name), args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !cp.opts.Detach {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return Process{}, fmt.Errorf("start %s: %w", name, err)
	}
	// The process is reaped by whoever waits on it; a goroutine does so here
	// so that a stopped process does not linger as a zombie.
	go func() { _ = cmd.Wait() }()
	return Process{Name: name, PID: cmd.Process.Pid, Log: logFile}, nil
}

// alive reports whether the process still runs and is not a zombie.
func (p Process) alive() bool {
	if p.PID <= 0 {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	if err != nil {
		return false
	}
	// The state letter follows the parenthesised command name.
	for i := len(stat) - 1; i > 0; i-- {
		if stat[i] == ')' {
			return i+2 < len(stat) && stat[i+2] != 'Z'
		}
	}
	return true
}

// stop sends SIGTERM, waits up to 10 s, then SIGKILL.
func (p Process) stop() error {
	if !p.alive() {
		return nil
	}
	if err := syscall.Kill(p.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop %s (pid %d): %w", p.Name, p.PID, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if !p.alive() {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s (pid %d): %w", p.Name, p.PID, err)
	}
	return nil
}

// waitFor polls ready until it is true, the process dies or the timeout passes.
func waitFor(ctx context.Context, what string, p Process, timeout time.Duration, ready func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if ready() {
			return nil
		}
		if !p.alive() {
			return fmt.Errorf("%s exited during start; see %s", what, p.Log)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s; see %s", what, timeout, p.Log)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// auditPolicy records who did what (metadata only, no bodies, so no Secret
// value reaches the audit log); tests count the requests a command sent.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
`
