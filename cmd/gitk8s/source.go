package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/gitk8s/gitk8s/internal/chartdeps"
	"github.com/gitk8s/gitk8s/internal/reconcile"
	"github.com/gitk8s/gitk8s/internal/render"
	"github.com/gitk8s/gitk8s/internal/source"
)

// sourceOptions select what to render from SRC.
type sourceOptions struct {
	ref              string
	path             string
	allowRemoteBases bool
	jsonnetEntry     string
	tlas             map[string]string
	extVars          map[string]string
	jsonnetLibs      []string
	helm             render.HelmOptions
	enableHelm       bool
	renderLimits     render.Limits
	renderMemory     string
	renderOutput     string

	// extra are the SRC files after the first; stdin holds standard input
	// once read, for SRC -.
	extra     []string
	stdin     []byte
	stdinRead bool

	semver         string
	gitUsername    string
	passwordFile   string
	caFile         string
	sshKeyFile     string
	knownHostsFile string
	gitTimeout     time.Duration

	helmRepos        []string
	helmUsername     string
	helmPasswordFile string
	helmCAFile       string
	ociPlainHTTP     bool
	ociCAFile        string
	verifyKeys       []string
}

func (o *sourceOptions) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.ref, "ref", "", "branch, tag or commit to read when SRC is a Git repository (default HEAD); for an oci:// SRC, a tag or sha256: digest")
	cmd.Flags().StringVar(&o.path, "path", "", "folder inside SRC to render")
	cmd.Flags().BoolVar(&o.allowRemoteBases, "allow-remote-bases", false, "let kustomizations load bases from remote repositories and URLs")
	cmd.Flags().StringVar(&o.jsonnetEntry, "jsonnet-entry", "", "evaluate only this .jsonnet file (relative to --path) instead of every one")
	cmd.Flags().StringToStringVar(&o.tlas, "tla", nil, "jsonnet top-level argument, key=value (repeatable)")
	cmd.Flags().StringToStringVar(&o.extVars, "ext-str", nil, "jsonnet external variable, key=value (repeatable)")
	cmd.Flags().StringArrayVar(&o.jsonnetLibs, "jsonnet-lib", nil, "jsonnet library folder inside the source (repeatable)")
	cmd.Flags().BoolVar(&o.enableHelm, "enable-helm", false, "let kustomizations inflate their helmCharts (rendered in-process; no helm binary is run)")
	cmd.Flags().StringVar(&o.helm.ReleaseName, "release-name", "", "Helm release name of a chart (default: the chart's name)")
	cmd.Flags().BoolVar(&o.helm.SkipCRDs, "skip-crds", false, "leave a chart's crds/ out of the render")
	cmd.Flags().BoolVar(&o.helm.SkipHooks, "skip-hooks", false, "leave a chart's hooks out of the render")
	cmd.Flags().StringVar(&o.helm.Namespace, "release-namespace", "", "Helm release namespace of a chart (default: --namespace, then the context's namespace; offline: default)")
	cmd.Flags().StringArrayVar(&o.helm.ValuesFiles, "values", nil, "Helm values file, relative to the chart's folder and inside the source (repeatable, later wins)")
	cmd.Flags().StringArrayVar(&o.helm.Set, "set", nil, "Helm value, key=value in helm's --set syntax (repeatable, wins over --values)")
	cmd.Flags().StringVar(&o.helm.KubeVersion, "kube-version", "", "Kubernetes version a chart is rendered for (default: the cluster's; offline: "+render.DefaultKubeVersion+")")
	cmd.Flags().StringArrayVar(&o.helm.APIVersions, "api-versions", nil, "API version a chart may find in .Capabilities, beside the cluster's (repeatable)")
	cmd.Flags().StringVar(&o.renderMemory, "render-memory", "1Gi", "memory the render may use (the render runs in a child process)")
	cmd.Flags().DurationVar(&o.renderLimits.CPU, "render-cpu", render.DefaultLimits().CPU, "CPU time the render may use")
	cmd.Flags().DurationVar(&o.renderLimits.Timeout, "render-timeout", render.DefaultLimits().Timeout, "wall-clock time the render may take")
	cmd.Flags().StringVar(&o.renderOutput, "render-output", "64Mi", "size the rendered objects may have, as JSON")
	cmd.Flags().StringVar(&o.semver, "semver", "", "for a Git URL: the highest tag in this semver range (\">=1.2 <2\", \"~1.4\")")
	cmd.Flags().StringVar(&o.gitUsername, "git-username", os.Getenv("GITK8S_GIT_USERNAME"), "HTTPS user name (default $GITK8S_GIT_USERNAME)")
	cmd.Flags().StringVar(&o.passwordFile, "git-password-file", "", "file holding the HTTPS password or token (default: $GITK8S_GIT_PASSWORD)")
	cmd.Flags().StringVar(&o.caFile, "git-ca-file", "", "PEM certificate authorities for an HTTPS Git server")
	cmd.Flags().StringVar(&o.sshKeyFile, "ssh-key-file", "", "SSH private key (passphrase from $GITK8S_SSH_KEY_PASSPHRASE)")
	cmd.Flags().StringVar(&o.knownHostsFile, "known-hosts-file", "", "known_hosts for SSH (default ~/.ssh/known_hosts); unknown or changed host keys are refused")
	cmd.Flags().DurationVar(&o.gitTimeout, "git-timeout", time.Minute, "bound on each Git network operation")
	cmd.Flags().BoolVar(&o.ociPlainHTTP, "oci-plain-http", false, "reach an oci:// SRC's registry over plain HTTP even when it is not on loopback (credentials: Docker's configuration, or $GITK8S_OCI_USERNAME and $GITK8S_OCI_PASSWORD)")
	cmd.Flags().StringVar(&o.ociCAFile, "oci-ca-file", "", "PEM certificate authorities for an oci:// SRC's registry")
	cmd.Flags().StringArrayVar(&o.verifyKeys, "verify-key", nil, "PEM public key (cosign's) that an oci:// SRC must be signed with; an unsigned artifact is refused (repeatable)")
	cmd.Flags().StringArrayVar(&o.helmRepos, "helm-repo", nil, "chart repository (https://… or oci://HOST/PATH, a URL prefix) that charts' Chart.lock may fetch dependencies from (repeatable; default none: dependencies must be vendored in charts/)")
	cmd.Flags().StringVar(&o.helmUsername, "helm-username", os.Getenv("GITK8S_HELM_USERNAME"), "user name for the --helm-repo repositories (default $GITK8S_HELM_USERNAME; OCI registries without one use Docker's configuration)")
	cmd.Flags().StringVar(&o.helmPasswordFile, "helm-password-file", "", "file holding the password or token for the --helm-repo repositories (default: $GITK8S_HELM_PASSWORD)")
	cmd.Flags().StringVar(&o.helmCAFile, "helm-ca-file", "", "PEM certificate authorities for the --helm-repo repositories")
}

// stdinReader is what SRC - reads.
var stdinReader io.Reader = os.Stdin

// take reads the SRC arguments: one repository, folder or file, several
// files, or - for standard input. It returns the first, which names the
// source.
func (o *sourceOptions) take(args []string) string {
	o.extra = args[1:]
	return args[0]
}

// syncName is the sync name of the SRC arguments when none is given.
func (o *sourceOptions) syncName(src, folder string) string {
	return reconcile.SyncNameOfSources(append([]string{src}, o.extra...), folder)
}

// onceStdin reads standard input the first time a snapshot needs it and
// serves the same bytes to every later one (diff opens the source twice).
type onceStdin struct {
	o *sourceOptions
	r *bytes.Reader
}

func (s *onceStdin) Read(p []byte) (int, error) {
	if s.r == nil {
		if !s.o.stdinRead {
			s.o.stdinRead = true
			data, err := io.ReadAll(io.LimitReader(stdinReader, 64<<20+1))
			if err != nil {
				return 0, err
			}
			s.o.stdin = data
		}
		s.r = bytes.NewReader(s.o.stdin)
	}
	return s.r.Read(p)
}

// readsStdin reports whether SRC - is among the arguments.
func (o *sourceOptions) readsStdin(src string) bool {
	return src == source.Stdin || slices.Contains(o.extra, source.Stdin)
}

// openOptions are the source options, credentials read from their files.
func (o *sourceOptions) openOptions() (source.Options, error) {
	opts := source.Options{Ref: o.ref, SemVer: o.semver, Path: o.path, Timeout: o.gitTimeout, Files: o.extra, Stdin: &onceStdin{o: o}}
	if err := o.checkLimits(); err != nil {
		return opts, err
	}
	if errs := o.helm.Check(); len(errs) > 0 {
		return opts, errs[0]
	}
	opts.OCI = source.OCIOptions{Auth: source.Auth{Username: os.Getenv("GITK8S_OCI_USERNAME"), Password: os.Getenv("GITK8S_OCI_PASSWORD")},
		DockerConfig: true, PlainHTTP: o.ociPlainHTTP, Timeout: o.gitTimeout}
	if o.ociCAFile != "" {
		data, err := os.ReadFile(o.ociCAFile)
		if err != nil {
			return opts, fmt.Errorf("--oci-ca-file: %w", err)
		}
		opts.OCI.Auth.CABundle = data
	}
	for _, file := range o.verifyKeys {
		data, err := os.ReadFile(file)
		if err != nil {
			return opts, fmt.Errorf("--verify-key: %w", err)
		}
		keys, err := source.ParsePublicKeys(data)
		if err != nil {
			return opts, fmt.Errorf("--verify-key %s: %w", file, err)
		}
		opts.OCI.VerifyKeys = append(opts.OCI.VerifyKeys, keys...)
	}
	opts.Auth.Username = o.gitUsername
	opts.Auth.Password = os.Getenv("GITK8S_GIT_PASSWORD")
	opts.Auth.SSHKeyPassphrase = os.Getenv("GITK8S_SSH_KEY_PASSPHRASE")
	read := func(path string, into *[]byte) error {
		if path == "" {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		*into = data
		return nil
	}
	var password []byte
	if err := read(o.passwordFile, &password); err != nil {
		return opts, err
	}
	if len(password) > 0 {
		opts.Auth.Password = strings.TrimSpace(string(password))
	}
	if err := read(o.caFile, &opts.Auth.CABundle); err != nil {
		return opts, err
	}
	if err := read(o.sshKeyFile, &opts.Auth.SSHKey); err != nil {
		return opts, err
	}
	knownHosts := o.knownHostsFile
	if knownHosts == "" {
		if home, err := os.UserHomeDir(); err == nil {
			if _, err := os.Stat(filepath.Join(home, ".ssh", "known_hosts")); err == nil {
				knownHosts = filepath.Join(home, ".ssh", "known_hosts")
			}
		}
	}
	if err := read(knownHosts, &opts.Auth.KnownHosts); err != nil {
		return opts, err
	}
	return opts, nil
}

// renderSettings are the render flags as the engine reads them. The
// quantities were checked by parseLimits.
func (o *sourceOptions) renderSettings() (reconcile.RenderSettings, error) {
	repos, err := o.chartRepositories()
	if err != nil {
		return reconcile.RenderSettings{}, err
	}
	ageKeys, err := sopsAgeKeys()
	if err != nil {
		return reconcile.RenderSettings{}, err
	}
	limits := o.renderLimits
	if q, err := resource.ParseQuantity(o.renderMemory); err == nil {
		limits.Memory = q.Value()
	}
	if q, err := resource.ParseQuantity(o.renderOutput); err == nil {
		limits.Output = q.Value()
	}
	return reconcile.RenderSettings{AllowRemoteBases: o.allowRemoteBases, JsonnetEntry: o.jsonnetEntry,
		TLAs: o.tlas, ExtVars: o.extVars, JsonnetLibs: o.jsonnetLibs, Helm: o.helm, KustomizeHelm: o.enableHelm, Limits: limits,
		ChartRepositories: repos, Charts: chartdeps.NewFetcher(chartCacheDir()), SOPS: render.SOPSOptions{AgeKeys: ageKeys}}, nil
}

// sopsAgeKeys are the age keys SOPS-encrypted files are decrypted with,
// found where the sops CLI finds them: $SOPS_AGE_KEY, the file
// $SOPS_AGE_KEY_FILE names, else the user's sops/age/keys.txt.
func sopsAgeKeys() (string, error) {
	keys := os.Getenv("SOPS_AGE_KEY")
	if file := os.Getenv("SOPS_AGE_KEY_FILE"); file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("$SOPS_AGE_KEY_FILE: %w", err)
		}
		keys += "\n" + string(data)
	} else if keys == "" {
		if dir, err := os.UserConfigDir(); err == nil {
			if data, err := os.ReadFile(filepath.Join(dir, "sops", "age", "keys.txt")); err == nil {
				keys = string(data)
			}
		}
	}
	return keys, nil
}

// chartRepositories are the --helm-repo repositories with the --helm-*
// credentials; without an explicit user name or password, OCI registries
// use Docker's configuration.
func (o *sourceOptions) chartRepositories() ([]chartdeps.Repository, error) {
	var auth source.Auth
	auth.Username = o.helmUsername
	auth.Password = os.Getenv("GITK8S_HELM_PASSWORD")
	if o.helmPasswordFile != "" {
		data, err := os.ReadFile(o.helmPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("--helm-password-file: %w", err)
		}
		auth.Password = strings.TrimSpace(string(data))
	}
	if o.helmCAFile != "" {
		data, err := os.ReadFile(o.helmCAFile)
		if err != nil {
			return nil, fmt.Errorf("--helm-ca-file: %w", err)
		}
		auth.CABundle = data
	}
	var repos []chartdeps.Repository
	for _, u := range o.helmRepos {
		if err := chartdeps.CheckRepositoryURL(u); err != nil {
			return nil, fmt.Errorf("--helm-repo %s: %w", source.Redact(u), err)
		}
		repos = append(repos, chartdeps.Repository{URL: u, Auth: auth})
	}
	return repos, nil
}

// chartCacheDir is where the CLI keeps fetched chart dependencies:
// $XDG_CACHE_HOME/gitk8s/charts (or the platform's equivalent), else a
// folder in the temporary directory.
func chartCacheDir() string {
	if base, err := os.UserCacheDir(); err == nil {
		return filepath.Join(base, "gitk8s", "charts")
	}
	return filepath.Join(os.TempDir(), "gitk8s-charts")
}

// checkLimits refuses render limits that are not quantities.
func (o *sourceOptions) checkLimits() error {
	for flag, v := range map[string]string{"--render-memory": o.renderMemory, "--render-output": o.renderOutput} {
		if q, err := resource.ParseQuantity(v); err != nil || q.Sign() <= 0 {
			return fmt.Errorf("%s %q: want a positive quantity such as 512Mi or 2Gi", flag, v)
		}
	}
	return nil
}

// printSkipped says which files and folders the render left out because
// they are not Kubernetes objects, one note each.
func printSkipped(w io.Writer, bundle *render.Bundle) {
	for _, s := range bundle.Skipped {
		fmt.Fprintf(w, "note: %s is %s, not Kubernetes objects; left out\n", s.File, s.What)
	}
}
