package chartdeps

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	chart "helm.sh/helm/v4/pkg/chart/v2"
	"sigs.k8s.io/yaml"

	"github.com/gitk8s/gitk8s/internal/render"
	"github.com/gitk8s/gitk8s/internal/source"
)

// LockFile pins a chart's dependencies, as helm dependency update writes it.
const LockFile = "Chart.lock"

// ErrUnavailable is wrapped by the error of a fetch that failed on the
// network or at the repository (unreachable, refused, timed out, a server
// error), as opposed to a chart or lock that is wrong.
var ErrUnavailable = errors.New("chart repository unavailable")

// Repository is a chart repository a sync may fetch dependencies from.
type Repository struct {
	// URL is matched as a prefix of the repository a Chart.lock names: an
	// https:// (or http://) chart repository, or oci://HOST/PATH. "https://"
	// alone allows every HTTPS repository.
	URL string
	// Auth are its credentials: Username and Password (or a token as the
	// password) and CABundle, as for Git. They are sent only to the
	// repository's own host.
	Auth source.Auth
}

// Fetcher fetches the dependencies that charts' Chart.lock files name from
// the repositories a sync allows, and keeps them on disk by digest: an
// archive fetched once is never fetched again, and an unchanged repository
// costs one request per render (a conditional GET of its index, a HEAD of
// an OCI tag). One Fetcher serves any number of syncs at once.
type Fetcher struct {
	// Dir holds the cache.
	Dir string
	// Timeout bounds each request (default 60s).
	Timeout time.Duration
	// DockerConfig, when set, lets OCI registries without credentials in
	// Repositories use those of Docker's configuration ($DOCKER_CONFIG or
	// ~/.docker/config.json), as the CLI does.
	DockerConfig bool

	locks source.KeyLocks
}

// NewFetcher returns a Fetcher caching under dir.
func NewFetcher(dir string) *Fetcher {
	return &Fetcher{Dir: dir}
}

// Dependency is a dependency of a chart that has to be fetched.
type Dependency struct {
	// Chart is the chart's folder, relative to the source root.
	Chart string
	// Name, Version and Repository are as Chart.lock pins them.
	Name, Version, Repository string
}

func (d Dependency) String() string {
	return d.Name + " " + d.Version + " from " + source.Redact(d.Repository)
}

// maxMetadataBytes bounds a Chart.yaml or Chart.lock read by the driver.
const maxMetadataBytes = 1 << 20

// Needed lists the dependencies of the chart in dir that are not vendored
// in its charts/ folder and come from a repository: those Chart.lock pins.
// A chart whose dependencies are all vendored (or local) needs nothing and
// no Chart.lock. One whose Chart.lock is missing or does not match
// Chart.yaml is an error that says how to fix it, as helm dependency build
// refuses it.
func Needed(root, dir string) ([]Dependency, error) {
	chartFile := path.Join(dir, render.ChartFile)
	var meta chart.Metadata
	if err := readYAML(root, chartFile, &meta); err != nil {
		return nil, err
	}
	vendored, err := vendoredCharts(root, path.Join(dir, "charts"))
	if err != nil {
		return nil, &render.Error{Source: render.Source{File: path.Join(dir, "charts")}, Err: err}
	}
	var remote []*chart.Dependency
	for _, d := range meta.Dependencies {
		if d == nil || vendored(d.Name) {
			continue
		}
		if d.Repository == "" || strings.HasPrefix(d.Repository, "file://") {
			continue // local: the render names it if it is missing
		}
		if strings.HasPrefix(d.Repository, "@") || strings.HasPrefix(d.Repository, "alias:") {
			return nil, &render.Error{Source: render.Source{File: chartFile}, Err: fmt.Errorf("dependency %s names the repository %q by a local helm repo alias, which gitk8s cannot know; write the repository's URL in Chart.yaml and run helm dependency update", d.Name, d.Repository)}
		}
		remote = append(remote, d)
	}
	if len(remote) == 0 {
		return nil, nil
	}
	lockFile := path.Join(dir, LockFile)
	var lock chart.Lock
	if err := readYAML(root, lockFile, &lock); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &render.Error{Source: render.Source{File: chartFile}, Err: fmt.Errorf("dependency %s comes from %s and is not in charts/, and there is no %s to pin its version; run helm dependency update and commit %s (or vendor charts/ with helm dependency build)", remote[0].Name, source.Redact(remote[0].Repository), LockFile, LockFile)}
		}
		return nil, err
	}
	if sum, err := lockDigest(meta.Dependencies, lock.Dependencies); err != nil || sum != lock.Digest {
		return nil, &render.Error{Source: render.Source{File: lockFile}, Err: fmt.Errorf("%s is out of sync with Chart.yaml (its digest is not that of the dependencies Chart.yaml lists); run helm dependency update and commit %s", LockFile, LockFile)}
	}
	var out []Dependency
	for _, d := range remote {
		i := slices.IndexFunc(lock.Dependencies, func(l *chart.Dependency) bool { return l != nil && l.Name == d.Name })
		if i < 0 || lock.Dependencies[i].Repository != d.Repository || lock.Dependencies[i].Version == "" {
			return nil, &render.Error{Source: render.Source{File: lockFile}, Err: fmt.Errorf("%s does not pin dependency %s from %s; run helm dependency update and commit %s", LockFile, d.Name, source.Redact(d.Repository), LockFile)}
		}
		l := lock.Dependencies[i]
		if strings.ContainsAny(l.Name, `/\`) || strings.HasPrefix(l.Name, ".") || strings.ContainsAny(l.Version, `/\`) {
			return nil, &render.Error{Source: render.Source{File: lockFile}, Err: fmt.Errorf("dependency %q version %q is not a chart name and version", l.Name, l.Version)}
		}
		out = append(out, Dependency{Chart: dir, Name: l.Name, Version: l.Version, Repository: l.Repository})
	}
	return out, nil
}

// lockDigest is the digest helm dependency update writes into Chart.lock:
// the SHA-256 of the JSON of Chart.yaml's dependencies and the lock's.
func lockDigest(req, lock []*chart.Dependency) (string, error) {
	data, err := json.Marshal([2][]*chart.Dependency{req, lock})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// vendoredCharts reports, by name, which dependencies the charts folder
// holds: a folder of the name or an archive NAME-VERSION.tgz.
func vendoredCharts(root, dir string) (func(name string) bool, error) {
	entries, err := os.ReadDir(filepath.Join(root, filepath.FromSlash(dir)))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return func(name string) bool {
		for _, e := range entries {
			n := e.Name()
			if n == name || (strings.HasSuffix(n, ".tgz") && strings.HasPrefix(n, name+"-")) {
				return true
			}
		}
		return false
	}, nil
}

// readYAML decodes a small YAML file of the source into v. A link is
// refused: the driver reads only regular files it can name.
func readYAML(root, file string, v any) error {
	abs := filepath.Join(root, filepath.FromSlash(file))
	info, err := os.Lstat(abs)
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return &render.Error{Source: render.Source{File: file}, Err: errors.New("is not a regular file; a chart with dependencies to fetch must keep its Chart.yaml and Chart.lock as files")}
	}
	if info.Size() > maxMetadataBytes {
		return &render.Error{Source: render.Source{File: file}, Err: fmt.Errorf("is larger than %d KiB", maxMetadataBytes>>10)}
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF")), v); err != nil {
		return &render.Error{Source: render.Source{File: file}, Err: fmt.Errorf("cannot be read: %w", err)}
	}
	return nil
}

// Fetch fetches what the charts in dirs need from repos, the repositories
// the sync allows, and returns, by chart folder, the archives to add to
// its charts/ folder (render.Options' ChartArchives). Every dependency is
// checked before any is fetched, so a refused one costs no request. A nil
// Fetcher fetches nothing: a dependency to fetch is then an error.
func (f *Fetcher) Fetch(ctx context.Context, root string, dirs []string, repos []Repository) (map[string][]string, error) {
	var deps []Dependency
	var errs []error
	for _, dir := range dirs {
		need, err := Needed(root, dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, d := range need {
			if _, ok := allowed(repos, d.Repository); !ok {
				errs = append(errs, &render.Error{Source: render.Source{File: path.Join(dir, LockFile)}, Err: fmt.Errorf("dependency %s: this sync may not fetch from %s; allow the repository (--helm-repo on the command line, source.chartRepositories in a daemon sync) or vendor the dependency in charts/ with helm dependency build", d, source.Redact(d.Repository))})
				continue
			}
			deps = append(deps, d)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(deps) == 0 {
		return nil, nil
	}
	if f == nil || f.Dir == "" {
		return nil, errors.New("chart dependencies: no cache folder to fetch them into")
	}
	out := map[string][]string{}
	indexes := map[string]*indexFile{}
	for _, d := range deps {
		repo, _ := allowed(repos, d.Repository)
		var file string
		var err error
		if strings.HasPrefix(d.Repository, "oci://") {
			file, err = f.fetchOCI(ctx, repo, d)
		} else {
			file, err = f.fetchHTTP(ctx, repo, d, indexes)
		}
		if err != nil {
			return nil, &render.Error{Source: render.Source{File: path.Join(d.Chart, LockFile)}, Err: fmt.Errorf("dependency %s: %w", d, err)}
		}
		out[d.Chart] = append(out[d.Chart], file)
	}
	return out, nil
}

// allowed is the entry of repos whose URL prefixes repoURL the longest.
func allowed(repos []Repository, repoURL string) (Repository, bool) {
	best := -1
	for i, r := range repos {
		prefix := strings.TrimSuffix(r.URL, "/")
		if r.URL == "" {
			continue
		}
		if repoURL == prefix || strings.HasPrefix(repoURL, prefix+"/") || strings.HasSuffix(r.URL, "://") && strings.HasPrefix(repoURL, r.URL) {
			if best < 0 || len(r.URL) > len(repos[best].URL) {
				best = i
			}
		}
	}
	if best < 0 {
		return Repository{}, false
	}
	return repos[best], true
}

func (f *Fetcher) timeout() time.Duration {
	if f.Timeout > 0 {
		return f.Timeout
	}
	return 60 * time.Second
}

// archivePath is where the archive of digest (hex SHA-256) is kept: a
// folder per digest, the file named as helm dependency build names it.
func (f *Fetcher) archivePath(digest string, d Dependency) string {
	return filepath.Join(f.Dir, "sha256", digest, d.Name+"-"+d.Version+".tgz")
}

// cached returns the archive of digest when the cache holds it intact.
func (f *Fetcher) cached(digest string, d Dependency) (string, bool) {
	file := f.archivePath(digest, d)
	data, err := os.ReadFile(file)
	if err != nil {
		return "", false
	}
	sum := sha256.Sum256(data)
	return file, hex.EncodeToString(sum[:]) == digest
}

// store writes an archive whose digest was verified into the cache.
func (f *Fetcher) store(digest string, d Dependency, data []byte) (string, error) {
	file := f.archivePath(digest, d)
	if err := writeFileAtomic(file, data); err != nil {
		return "", fmt.Errorf("cache the archive: %w", err)
	}
	return file, nil
}

// writeFileAtomic writes data to file through a temporary file and a
// rename, so that a reader never sees half of it.
func writeFileAtomic(file string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}

// readLimited reads r to its end, failing past limit bytes.
func readLimited(r io.Reader, limit int64, what string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %v", ErrUnavailable, what, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d MiB", what, limit>>20)
	}
	return data, nil
}

// CheckRepositoryURL says what is wrong with an allowed repository's URL:
// it must be https:// or http:// (a chart repository) or oci:// (a
// registry), with a host unless it is the scheme alone, and without
// credentials in it.
func CheckRepositoryURL(u string) error {
	switch u {
	case "https://", "http://", "oci://":
		return nil
	}
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok || (scheme != "https" && scheme != "http" && scheme != "oci") {
		return errors.New("a chart repository is an https:// (or http://) URL or an oci:// registry path")
	}
	host, _, _ := strings.Cut(rest, "/")
	switch {
	case host == "":
		return errors.New("the URL names no host")
	case strings.Contains(host, "@"):
		return errors.New("give credentials apart from the URL (the repository's secretRef, or --helm-username and $GITK8S_HELM_PASSWORD), never in it")
	}
	return nil
}
