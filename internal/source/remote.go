package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Ref selects a revision of a remote repository. At most one field is set;
// none means the remote's default branch.
type Ref struct {
	// Name is a branch or, when no branch has that name, a tag.
	Name   string
	Branch string
	Tag    string
	// SemVer is a range over tags (">=1.2.0 <2", "~1.4"); the highest
	// matching tag wins.
	SemVer string
	// Commit is a full commit SHA.
	Commit string
}

func (r Ref) String() string {
	switch {
	case r.Name != "":
		return r.Name
	case r.Branch != "":
		return "branch " + r.Branch
	case r.Tag != "":
		return "tag " + r.Tag
	case r.SemVer != "":
		return "semver " + r.SemVer
	case r.Commit != "":
		return "commit " + r.Commit
	}
	return "the default branch"
}

// Auth are the credentials of a remote.
type Auth struct {
	// Username and Password (or a token as the password) for HTTPS.
	Username, Password string
	// CABundle is extra PEM certificate authorities for HTTPS.
	CABundle []byte
	// SSHKey is a PEM private key, SSHKeyPassphrase its passphrase.
	SSHKey           []byte
	SSHKeyPassphrase string
	// KnownHosts is known_hosts content; an SSH host whose key is not in it
	// is refused.
	KnownHosts []byte
}

// RemoteOptions say what to fetch.
type RemoteOptions struct {
	URL  string
	Ref  Ref
	Path string
	Auth Auth
	// Timeout bounds each network operation (default 60s).
	Timeout time.Duration
}

// Fetcher keeps a cache of remote repositories on disk, one bare
// repository per URL, so that a fetch transfers only what is new and a
// fetch of an unchanged remote costs one ref advertisement.
type Fetcher struct {
	// Dir holds the cache.
	Dir string

	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// NewFetcher returns a Fetcher caching under dir.
func NewFetcher(dir string) *Fetcher {
	return &Fetcher{Dir: dir, locks: map[string]*sync.Mutex{}}
}

// DefaultCacheDir is $XDG_CACHE_HOME/gitk8s/git (or the platform's equivalent).
func DefaultCacheDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(base, "gitk8s", "git"), nil
}

// FetchResult says what a fetch found.
type FetchResult struct {
	// Revision is the resolved commit SHA.
	Revision string
	// Previous is the commit the cache held for the same ref before, if any.
	Previous string
	// Transferred is set when objects were fetched from the remote.
	Transferred bool
	// ForcePushed is set when Previous is not an ancestor of Revision: the
	// branch was rewritten.
	ForcePushed bool
}

// ErrHostKey means an SSH host's key is unknown or has changed.
var ErrHostKey = errors.New("SSH host key not trusted")

// IsRemote tells a Git URL (https://, http://, ssh://, git://, file://
// or scp-like user@host:path) from a local path.
func IsRemote(src string) bool {
	if u, err := url.Parse(src); err == nil && u.Scheme != "" && len(u.Scheme) > 1 {
		return true
	}
	return scpLike.MatchString(src)
}

var scpLike = regexp.MustCompile(`^[A-Za-z0-9._-]+@[A-Za-z0-9._-]+:[^/]`)

// Resolve asks the remote which commit the ref points at: one ref
// advertisement, no object transfer.
func (f *Fetcher) Resolve(ctx context.Context, opts RemoteOptions) (string, error) {
	auth, hostKey, err := authFor(opts)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, timeoutOf(opts))
	defer cancel()
	remote := git.NewRemote(nil, &config.RemoteConfig{Name: "origin", URLs: []string{opts.URL}})
	refs, err := remote.ListContext(ctx, &git.ListOptions{Auth: auth, CABundle: opts.Auth.CABundle})
	if err != nil {
		return "", remoteError(opts, "list refs", err, hostKey)
	}
	hash, _, err := pick(refs, opts.Ref)
	if err != nil {
		return "", fmt.Errorf("%s: %w", Redact(opts.URL), err)
	}
	return hash, nil
}

// Fetch brings the ref's commit into the cache (transferring nothing when
// it is there already) and writes its tree to a snapshot.
func (f *Fetcher) Fetch(ctx context.Context, opts RemoteOptions) (*Snapshot, FetchResult, error) {
	var res FetchResult
	auth, hostKey, err := authFor(opts)
	if err != nil {
		return nil, res, err
	}
	lock := f.lockFor(opts.URL)
	lock.Lock()
	defer lock.Unlock()

	ctx, cancel := context.WithTimeout(ctx, timeoutOf(opts))
	defer cancel()
	repo, err := f.open(opts.URL)
	if err != nil {
		return nil, res, err
	}
	remote, err := repo.Remote("origin")
	if err != nil {
		return nil, res, err
	}
	refs, err := remote.ListContext(ctx, &git.ListOptions{Auth: auth, CABundle: opts.Auth.CABundle})
	if err != nil {
		return nil, res, remoteError(opts, "list refs", err, hostKey)
	}
	want, refName, err := pick(refs, opts.Ref)
	if err != nil {
		return nil, res, fmt.Errorf("%s: %w", Redact(opts.URL), err)
	}
	local := plumbing.ReferenceName("refs/gitk8s/" + refKey(opts.Ref))
	if old, err := repo.Reference(local, true); err == nil {
		res.Previous = old.Hash().String()
	}

	if repo.Storer.HasEncodedObject(plumbing.NewHash(want)) != nil {
		// Not in the cache: fetch just that ref (whole history for
		// branches, so that a rewrite can be told from a fast-forward).
		spec := config.RefSpec(fmt.Sprintf("+%s:%s", refName, local))
		fo := &git.FetchOptions{RemoteName: "origin", RefSpecs: []config.RefSpec{spec}, Auth: auth, CABundle: opts.Auth.CABundle, Force: true, Tags: git.NoTags}
		if opts.Ref.Commit != "" {
			fo.RefSpecs = []config.RefSpec{"+refs/heads/*:refs/gitk8s/heads/*"}
		}
		if err := repo.FetchContext(ctx, fo); err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
			return nil, res, remoteError(opts, "fetch", err, hostKey)
		}
		res.Transferred = true
	}
	commit, err := commitOf(repo, want)
	if err != nil {
		return nil, res, fmt.Errorf("%s: %s %w", Redact(opts.URL), opts.Ref, err)
	}
	res.Revision = commit.Hash.String()
	if err := repo.Storer.SetReference(plumbing.NewHashReference(local, commit.Hash)); err != nil {
		return nil, res, err
	}
	if res.Previous != "" && res.Previous != res.Revision && refName.IsBranch() {
		if old, err := repo.CommitObject(plumbing.NewHash(res.Previous)); err == nil {
			if ok, err := old.IsAncestor(commit); err == nil && !ok {
				res.ForcePushed = true
			}
		}
	}
	snap, err := snapshotOf(ctx, repo, Redact(opts.URL), commit, opts.Ref.String(), opts.Path)
	return snap, res, err
}

// open opens (or creates) the bare cache repository of a URL.
func (f *Fetcher) open(rawURL string) (*git.Repository, error) {
	sum := sha256.Sum256([]byte(rawURL))
	dir := filepath.Join(f.Dir, hex.EncodeToString(sum[:12]))
	repo, err := git.PlainOpen(dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		repo, err = git.PlainInit(dir, true)
		if err != nil {
			return nil, err
		}
		_, err = repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{withoutUserinfo(rawURL)}})
	}
	if err != nil {
		return nil, fmt.Errorf("git cache %s: %w", dir, err)
	}
	if err := forgetCredentials(repo, rawURL); err != nil {
		return nil, fmt.Errorf("git cache %s: %w", dir, err)
	}
	return repo, nil
}

// withoutUserinfo is an HTTP(S) URL without its user and password: the
// cache's configuration on disk never holds them; authFor passes them to
// each request instead. Other URLs are returned as they are (an SSH user
// is a login name, not a secret).
func withoutUserinfo(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil || (u.Scheme != "http" && u.Scheme != "https") {
		return rawURL
	}
	u.User = nil
	return u.String()
}

// forgetCredentials rewrites the remote of a cache made before caches
// were written without credentials.
func forgetCredentials(repo *git.Repository, rawURL string) error {
	cfg, err := repo.Config()
	if err != nil {
		return err
	}
	origin, ok := cfg.Remotes["origin"]
	clean := withoutUserinfo(rawURL)
	if !ok || (len(origin.URLs) == 1 && origin.URLs[0] == clean) {
		return nil
	}
	origin.URLs = []string{clean}
	return repo.Storer.SetConfig(cfg)
}

func (f *Fetcher) lockFor(key string) *sync.Mutex {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.locks == nil {
		f.locks = map[string]*sync.Mutex{}
	}
	if _, ok := f.locks[key]; !ok {
		f.locks[key] = &sync.Mutex{}
	}
	return f.locks[key]
}

// pick finds the ref's commit (or tag object) among the advertised refs.
func pick(refs []*plumbing.Reference, ref Ref) (hash string, name plumbing.ReferenceName, err error) {
	byName := map[plumbing.ReferenceName]*plumbing.Reference{}
	for _, r := range refs {
		byName[r.Name()] = r
	}
	resolve := func(n plumbing.ReferenceName) (string, bool) {
		for i := 0; i < 5; i++ {
			r, ok := byName[n]
			if !ok {
				return "", false
			}
			if r.Type() == plumbing.HashReference {
				return r.Hash().String(), true
			}
			n = r.Target()
		}
		return "", false
	}
	switch {
	case ref.Name != "":
		name = plumbing.NewBranchReferenceName(ref.Name)
		if _, ok := byName[name]; !ok {
			name = plumbing.NewTagReferenceName(ref.Name)
		}
	case ref.Branch != "":
		name = plumbing.NewBranchReferenceName(ref.Branch)
	case ref.Tag != "":
		name = plumbing.NewTagReferenceName(ref.Tag)
	case ref.SemVer != "":
		constraint, err := semver.NewConstraint(ref.SemVer)
		if err != nil {
			return "", "", fmt.Errorf("semver range %q: %w", ref.SemVer, err)
		}
		var best *semver.Version
		for n := range byName {
			if !n.IsTag() {
				continue
			}
			v, err := semver.NewVersion(n.Short())
			if err != nil || !constraint.Check(v) {
				continue
			}
			if best == nil || v.GreaterThan(best) {
				best, name = v, n
			}
		}
		if best == nil {
			var tags []string
			for n := range byName {
				if n.IsTag() {
					tags = append(tags, n.Short())
				}
			}
			sort.Strings(tags)
			return "", "", fmt.Errorf("%w: no tag matches semver %q (tags: %v)", ErrRefNotFound, ref.SemVer, tags)
		}
	case ref.Commit != "":
		if !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(ref.Commit) {
			return "", "", fmt.Errorf("commit %q: give the full 40-character SHA", ref.Commit)
		}
		return ref.Commit, "", nil
	default:
		name = plumbing.HEAD
	}
	h, ok := resolve(name)
	if !ok {
		return "", "", fmt.Errorf("%w: %s", ErrRefNotFound, ref)
	}
	if name == plumbing.HEAD {
		if r, ok := byName[plumbing.HEAD]; ok && r.Type() == plumbing.SymbolicReference {
			name = r.Target()
		}
	}
	return h, name, nil
}

// commitOf is the commit of a hash, peeling annotated tags.
func commitOf(repo *git.Repository, hash string) (*object.Commit, error) {
	h := plumbing.NewHash(hash)
	if tag, err := repo.TagObject(h); err == nil {
		return tag.Commit()
	}
	c, err := repo.CommitObject(h)
	if err != nil {
		return nil, fmt.Errorf("is not in the repository: %w", err)
	}
	return c, nil
}

// snapshotOf writes a commit's tree to a new directory.
func snapshotOf(ctx context.Context, repo *git.Repository, origin string, commit *object.Commit, ref, path string) (*Snapshot, error) {
	tree, err := commit.Tree()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "gitk8s-"+commit.Hash.String()[:12]+"-")
	if err != nil {
		return nil, err
	}
	snap := &Snapshot{Origin: origin, Root: dir, Path: path, Ref: ref, Revision: commit.Hash.String(),
		cleanup: func() error { return os.RemoveAll(dir) }}
	if err := writeTree(ctx, repo.Storer, tree, dir); err != nil {
		_ = snap.Close()
		return nil, fmt.Errorf("%s at %s: %w", origin, commit.Hash, err)
	}
	return snap, nil
}

func refKey(r Ref) string {
	switch {
	case r.Name != "":
		return "name/" + r.Name
	case r.Branch != "":
		return "branch/" + r.Branch
	case r.Tag != "":
		return "tag/" + r.Tag
	case r.SemVer != "":
		return "semver/" + hex.EncodeToString([]byte(r.SemVer))
	case r.Commit != "":
		return "commit/" + r.Commit
	}
	return "default"
}

func timeoutOf(opts RemoteOptions) time.Duration {
	if opts.Timeout > 0 {
		return opts.Timeout
	}
	return 60 * time.Second
}

// hostKeyFailure holds why an SSH host key was refused, so that the error
// can be returned as such rather than as the transport's text.
type hostKeyFailure struct {
	mu  sync.Mutex
	err error
}

func (h *hostKeyFailure) get() error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// authFor builds go-git credentials for the URL's transport.
func authFor(opts RemoteOptions) (transport.AuthMethod, *hostKeyFailure, error) {
	a := opts.Auth
	ep, err := transport.NewEndpoint(opts.URL)
	if err != nil {
		return nil, nil, fmt.Errorf("git URL %s: %w", Redact(opts.URL), redact(err, opts))
	}
	switch ep.Protocol {
	case "http", "https":
		user, pass := a.Username, a.Password
		if ep.User != "" && user == "" {
			user, pass = ep.User, ep.Password
		}
		if pass == "" && user == "" {
			return nil, nil, nil
		}
		if user == "" {
			user = "git" // token auth: most servers ignore the user name
		}
		return &githttp.BasicAuth{Username: user, Password: pass}, nil, nil
	case "ssh":
		user := ep.User
		if user == "" {
			user = "git"
		}
		if len(a.SSHKey) == 0 {
			return nil, nil, fmt.Errorf("git URL %s: SSH needs a private key", Redact(opts.URL))
		}
		keys, err := gitssh.NewPublicKeys(user, a.SSHKey, a.SSHKeyPassphrase)
		if err != nil {
			return nil, nil, fmt.Errorf("SSH private key: %w", err)
		}
		failure := &hostKeyFailure{}
		callback, err := hostKeyCallback(a.KnownHosts, failure)
		if err != nil {
			return nil, nil, err
		}
		keys.HostKeyCallback = callback
		return keys, failure, nil
	}
	return nil, nil, nil
}

// hostKeyCallback checks host keys against known_hosts content; with no
// known hosts every host is refused.
func hostKeyCallback(knownHosts []byte, failure *hostKeyFailure) (ssh.HostKeyCallback, error) {
	f, err := os.CreateTemp("", "gitk8s-known-hosts-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(knownHosts); err != nil {
		f.Close()
		return nil, err
	}
	f.Close()
	check, err := knownhosts.New(f.Name())
	if err != nil {
		return nil, fmt.Errorf("known_hosts: %w", err)
	}
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := check(hostname, remote, key)
		if err == nil {
			return nil
		}
		var keyErr *knownhosts.KeyError
		if errors.As(err, &keyErr) && len(keyErr.Want) > 0 {
			err = fmt.Errorf("%w: the key of %s has changed (%s); if that is expected, update known_hosts", ErrHostKey, hostname, ssh.FingerprintSHA256(key))
		} else {
			err = fmt.Errorf("%w: %s is not in known_hosts (its key is %s); add it to trust it", ErrHostKey, hostname, ssh.FingerprintSHA256(key))
		}
		failure.mu.Lock()
		failure.err = err
		failure.mu.Unlock()
		return err
	}, nil
}

// remoteError explains a transport failure without quoting credentials.
func remoteError(opts RemoteOptions, op string, err error, hostKey *hostKeyFailure) error {
	where := Redact(opts.URL)
	credentials := opts.Auth.Password != "" || opts.Auth.Username != "" || strings.Contains(where, "@")
	switch {
	case hostKey.get() != nil:
		return fmt.Errorf("%s: %s: %w", where, op, hostKey.get())
	case errors.Is(err, transport.ErrAuthenticationRequired) && credentials:
		return fmt.Errorf("%s: %s: the credentials were refused; check the username and password or token", where, op)
	case errors.Is(err, transport.ErrAuthenticationRequired):
		return fmt.Errorf("%s: %s: authentication required: give a username and password or token", where, op)
	case errors.Is(err, transport.ErrAuthorizationFailed):
		return fmt.Errorf("%s: %s: the credentials were refused; check the username and password or token", where, op)
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return fmt.Errorf("%s: %s: repository not found", where, op)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %s: no answer within %s", where, op, timeoutOf(opts))
	}
	return fmt.Errorf("%s: %s: %w", where, op, redact(err, opts))
}

// redactedError is an error whose text hides credentials; it unwraps to
// the error it hides them from.
type redactedError struct {
	err  error
	text string
}

func (e *redactedError) Error() string { return e.text }
func (e *redactedError) Unwrap() error { return e.err }

// redact hides in err's text the credentials of every URL (as Redact does)
// and the secrets of opts wherever they appear: the passwords, and a user
// name that is the only credential given, which is then a token.
func redact(err error, opts RemoteOptions) error {
	secrets := []string{opts.Auth.Password}
	if opts.Auth.Password == "" {
		secrets = append(secrets, opts.Auth.Username)
	}
	if m := urlUserinfo.FindStringSubmatch(opts.URL); m != nil {
		user, password, hasPassword := strings.Cut(m[2], ":")
		secrets = append(secrets, password)
		if !hasPassword && !isSSH(m[1]) {
			secrets = append(secrets, user)
		}
	}
	for _, s := range secrets {
		if u, err := url.PathUnescape(s); err == nil && u != s {
			secrets = append(secrets, u)
		}
	}
	// The longest first, so that no part of one is left by a shorter one.
	sort.Slice(secrets, func(i, j int) bool { return len(secrets[i]) > len(secrets[j]) })
	text := Redact(err.Error())
	for _, s := range secrets {
		if s != "" {
			text = strings.ReplaceAll(text, s, "xxxxx")
		}
	}
	return &redactedError{err: err, text: text}
}

// urlUserinfo matches the scheme and the user information of a URL, as
// far as the last "@" before the host (as url.Parse reads it).
var urlUserinfo = regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.-]*)://([^/?#\s"'<>]*)@`)

// urlSecretQuery matches a query parameter that carries a credential, as
// some Git hosts and proxies take a token (?private_token=, ?access_token=).
var urlSecretQuery = regexp.MustCompile(`(?i)([?&](?:access_token|private_token|oauth_token|token|auth|password|passwd|secret|key|api_key|apikey|sig|signature|x-amz-signature|x-goog-signature)=)[^&#\s"'<>]+`)

// Redact hides the credentials of every URL in rawURL (a URL, or a text
// quoting some): the password, and the user too unless the URL is SSH's,
// whose user is a login such as "git", because a token is often given as
// the user (https://TOKEN@host/repo.git, https://TOKEN:x-oauth-basic@host).
// Query parameters that carry a credential (token, access_token,
// private_token, signature and the like) are hidden too. It reads the
// text, not a parsed URL, so that a URL that does not parse is redacted
// all the same.
func Redact(rawURL string) string {
	rawURL = urlSecretQuery.ReplaceAllString(rawURL, "${1}xxxxx")
	return urlUserinfo.ReplaceAllStringFunc(rawURL, func(match string) string {
		m := urlUserinfo.FindStringSubmatch(match)
		user, _, hasPassword := strings.Cut(m[2], ":")
		if !isSSH(m[1]) {
			user = "xxxxx"
		}
		if hasPassword {
			user += ":xxxxx"
		}
		return m[1] + "://" + user + "@"
	})
}

func isSSH(scheme string) bool {
	switch strings.ToLower(scheme) {
	case "ssh", "git+ssh", "ssh+git":
		return true
	}
	return false
}
