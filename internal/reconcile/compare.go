package reconcile

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/diff"
	"github.com/gitk8s/gitk8s/internal/render"
)

// Comparison is what changed between two revisions of a source, without a
// cluster.
type Comparison struct {
	// Origin is the source; Revision and Base are the compared revisions.
	Origin, Revision, Base string
	// ChangeSet has an entry per object of either revision: Created,
	// Configured or Unchanged for the new revision's objects, Pruned for
	// those it no longer renders, each with a masked diff.
	ChangeSet *apply.ChangeSet
	// Masker knows every Secret value of both revisions.
	Masker *diff.Masker
}

// Compare renders the revision src opens and the base revision, both with
// the same render settings, and compares them object by object. Secret
// values of both are masked in every diff.
//
// Without age keys, files encrypted with SOPS are compared as they are:
// their ciphertext, masked like Secret values, so that a review shows
// which encrypted values changed without anyone decrypting them.
func Compare(ctx context.Context, src, base Source, settings RenderSettings) (*Comparison, error) {
	if strings.TrimSpace(settings.SOPS.AgeKeys) == "" {
		settings.SOPS.Ciphertext = true
	}
	snap, err := src.Open(ctx)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	bundle, err := settings.Render(ctx, settings.Options(snap))
	if err != nil {
		return nil, err
	}
	baseSnap, err := base.Open(ctx)
	if err != nil {
		return nil, err
	}
	defer baseSnap.Close()
	if baseSnap.Revision == "" {
		return nil, fmt.Errorf("comparing with another revision needs the source %s to be a Git repository", snap.Origin)
	}
	baseBundle, err := settings.Render(ctx, settings.Options(baseSnap))
	if err != nil {
		return nil, fmt.Errorf("at %s: %w", baseSnap.Revision[:12], err)
	}
	c := &Comparison{Origin: snap.Origin, Revision: snap.Revision, Base: baseSnap.Revision, Masker: diff.NewMasker(),
		ChangeSet: &apply.ChangeSet{Cluster: "revision " + baseSnap.Revision[:12]}}
	for _, obj := range append(append([]*render.Object(nil), baseBundle.Objects...), bundle.Objects...) {
		c.Masker.Learn(obj.Object)
	}
	old := map[string]*render.Object{}
	for _, obj := range baseBundle.Objects {
		old[obj.ID().String()] = obj
	}
	add := func(obj *render.Object, action apply.Action, d string) {
		c.ChangeSet.Entries = append(c.ChangeSet.Entries, &apply.ChangeSetEntry{ID: obj.ID(), Ref: obj.Ref(), Source: obj.Source, Action: action, Diff: d})
	}
	seen := map[string]bool{}
	for _, obj := range bundle.Objects {
		key := obj.ID().String()
		seen[key] = true
		prev, ok := old[key]
		switch {
		case !ok:
			add(obj, apply.Created, diff.Unified(obj.Ref(), nil, obj.Object, c.Masker))
		default:
			if d := diff.Unified(obj.Ref(), prev.Object, obj.Object, c.Masker); d != "" {
				add(obj, apply.Configured, d)
			} else {
				add(obj, apply.Unchanged, "")
			}
		}
	}
	var removed []*render.Object
	for key, obj := range old {
		if !seen[key] {
			removed = append(removed, obj)
		}
	}
	sort.Slice(removed, func(i, j int) bool { return removed[i].Ref() < removed[j].Ref() })
	for _, obj := range removed {
		add(obj, apply.Pruned, diff.Unified(obj.Ref(), obj.Object, nil, c.Masker))
	}
	return c, nil
}
