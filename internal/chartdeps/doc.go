// Package chartdeps fetches the dependencies that Helm charts pin in
// Chart.lock and do not vendor in charts/, before the render: the renderer
// child has no network, so the driver fetches, from chart repositories
// (index.yaml over HTTPS) and OCI registries, and hands the archives to
// the render as if helm dependency build had put them in charts/.
//
// A commit chooses the URLs its Chart.yaml names, so a Fetcher fetches
// only from the repositories a sync allows, sends credentials only to the
// allowed repository's host, bounds every answer, and uses an archive only
// when its SHA-256 is the one the index or the OCI manifest gives. Archives
// are cached by that digest; an unchanged dependency costs one conditional
// request.
//
//	f := chartdeps.NewFetcher(cacheDir)
//	archives, err := f.Fetch(ctx, root, render.ChartDirs(opts), allowed)
//	opts.ChartArchives = archives
//	bundle, err := render.Render(ctx, opts)
package chartdeps
