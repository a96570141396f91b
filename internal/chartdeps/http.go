package chartdeps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	repo "helm.sh/helm/v4/pkg/repo/v1"

	"github.com/gitk8s/gitk8s/internal/source"
)

// maxIndexBytes bounds a chart repository's index.yaml.
const maxIndexBytes = 32 << 20

// maxArchiveBytes bounds one dependency archive (the renderer bounds a
// chart and its dependencies together by the same figure).
const maxArchiveBytes = 64 << 20

// indexFile is a repository's index as read in one Fetch.
type indexFile struct {
	index *repo.IndexFile
	err   error
}

// httpClient is the client of one repository: its CA bundle added to the
// system's, and each request bounded by the fetcher's timeout.
func (f *Fetcher) httpClient(r Repository) (*http.Client, error) {
	transport, err := source.TransportWithCA(r.Auth.CABundle)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: transport, Timeout: f.timeout()}, nil
}

// get fetches u, with the repository's credentials when u is on the
// repository's own host; validators make the request conditional.
func get(ctx context.Context, client *http.Client, r Repository, repoURL, u string, validators indexValidators) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if sameHost(repoURL, u) && (r.Auth.Username != "" || r.Auth.Password != "") {
		req.SetBasicAuth(r.Auth.Username, r.Auth.Password)
	}
	if validators.ETag != "" {
		req.Header.Set("If-None-Match", validators.ETag)
	}
	if validators.LastModified != "" {
		req.Header.Set("If-Modified-Since", validators.LastModified)
	}
	req.Header.Set("User-Agent", "gitk8s")
	resp, err := client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL is named by the caller, redacted
		}
		return nil, fmt.Errorf("%w: GET %s: %v", ErrUnavailable, source.Redact(u), err)
	}
	return resp, nil
}

// statusError says what a response that is not 200 means.
func statusError(resp *http.Response, u string) error {
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("GET %s: %s: the repository refused the credentials (or needs some); give them as for Git (the sync's repository secretRef, or $GITK8S_HELM_USERNAME and $GITK8S_HELM_PASSWORD on the command line)", source.Redact(u), resp.Status)
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("GET %s: %s", source.Redact(u), resp.Status)
	}
	return fmt.Errorf("%w: GET %s: %s", ErrUnavailable, source.Redact(u), resp.Status)
}

// sameHost reports whether a and b are on the same scheme, host and port.
func sameHost(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	return err1 == nil && err2 == nil && ua.Scheme == ub.Scheme && ua.Host == ub.Host
}

// index reads the index of the repository at repoURL, once per Fetch, as
// a conditional GET against the copy the cache holds.
func (f *Fetcher) index(ctx context.Context, client *http.Client, r Repository, repoURL string, indexes map[string]*indexFile) (*repo.IndexFile, error) {
	if ix, ok := indexes[repoURL]; ok {
		return ix.index, ix.err
	}
	ix := &indexFile{}
	ix.index, ix.err = f.readIndex(ctx, client, r, repoURL)
	indexes[repoURL] = ix
	return ix.index, ix.err
}

// indexValidators are what a cached index was served with, for the next
// request to be conditional.
type indexValidators struct {
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"lastModified,omitempty"`
}

func (f *Fetcher) readIndex(ctx context.Context, client *http.Client, r Repository, repoURL string) (*repo.IndexFile, error) {
	u := strings.TrimSuffix(repoURL, "/") + "/index.yaml"
	sum := sha256.Sum256([]byte(u))
	file := filepath.Join(f.Dir, "index", hex.EncodeToString(sum[:16])+".yaml")
	defer f.locks.Lock(file)()
	var cached indexValidators
	if data, err := os.ReadFile(file + ".json"); err == nil {
		if _, err := os.Stat(file); err == nil {
			_ = json.Unmarshal(data, &cached)
		}
	}
	resp, err := get(ctx, client, r, repoURL, u, cached)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
	case http.StatusOK:
		data, err := readLimited(resp.Body, maxIndexBytes, "the repository's index.yaml")
		if err != nil {
			return nil, err
		}
		_ = os.Remove(file + ".json")
		if err := writeFileAtomic(file, data); err != nil {
			return nil, fmt.Errorf("cache the index: %w", err)
		}
		next := indexValidators{ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified")}
		if next != (indexValidators{}) {
			data, _ := json.Marshal(next)
			_ = writeFileAtomic(file+".json", data)
		}
	default:
		return nil, statusError(resp, u)
	}
	index, err := repo.LoadIndexFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s is not a chart repository index: %v", source.Redact(u), err)
	}
	return index, nil
}

// fetchHTTP fetches d from a chart repository served over HTTP(S): the
// index names the archive's URL and its digest; an archive the cache holds
// under that digest is not fetched again, and a fetched one whose digest
// is not the index's is refused.
func (f *Fetcher) fetchHTTP(ctx context.Context, r Repository, d Dependency, indexes map[string]*indexFile) (string, error) {
	client, err := f.httpClient(r)
	if err != nil {
		return "", err
	}
	index, err := f.index(ctx, client, r, d.Repository, indexes)
	if err != nil {
		return "", err
	}
	var entry *repo.ChartVersion
	for _, v := range index.Entries[d.Name] {
		if v != nil && v.Version == d.Version {
			entry = v
			break
		}
	}
	if entry == nil {
		return "", fmt.Errorf("the repository's index has no version %s of %s; run helm dependency update against it and commit %s", d.Version, d.Name, LockFile)
	}
	if len(entry.URLs) == 0 {
		return "", fmt.Errorf("the repository's index names no URL for %s %s", d.Name, d.Version)
	}
	base, err := url.Parse(strings.TrimSuffix(d.Repository, "/") + "/")
	if err != nil {
		return "", err
	}
	ref, err := url.Parse(entry.URLs[0])
	if err != nil {
		return "", fmt.Errorf("the repository's index names a bad URL for %s %s: %v", d.Name, d.Version, err)
	}
	archiveURL := base.ResolveReference(ref)
	if archiveURL.Scheme != "https" && archiveURL.Scheme != "http" {
		return "", fmt.Errorf("the repository's index names %s for %s %s, which is not an http(s) URL", source.Redact(archiveURL.String()), d.Name, d.Version)
	}
	digest := strings.ToLower(strings.TrimPrefix(entry.Digest, "sha256:"))
	if digest != "" {
		if !isHexDigest(digest) {
			return "", fmt.Errorf("the repository's index gives %s %s the digest %q, which is not a SHA-256", d.Name, d.Version, entry.Digest)
		}
		defer f.locks.Lock(digest)()
		if file, ok := f.cached(digest, d); ok {
			return file, nil
		}
	}
	resp, err := get(ctx, client, r, d.Repository, archiveURL.String(), indexValidators{})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", statusError(resp, archiveURL.String())
	}
	data, err := readLimited(resp.Body, maxArchiveBytes, "the chart archive")
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	got := hex.EncodeToString(sum[:])
	if digest != "" && got != digest {
		return "", fmt.Errorf("the archive at %s has the digest sha256:%s, but the repository's index says sha256:%s; the repository or something on the way altered it, so it is not used", source.Redact(archiveURL.String()), got, digest)
	}
	return f.store(got, d, data)
}

// isHexDigest reports whether s is a SHA-256 in hex.
func isHexDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
