package reconcile

import "testing"

func TestSyncNameOf(t *testing.T) {
	tests := []struct{ origin, folder, want string }{
		{"https://git.example/shop.git", "deploy", "shop-deploy"},
		{"https://git.example/shop.git", "", "shop"},
		{"/srv/repos/Shop_App/", ".", "shop-app"},
		{"https://s3cr3t-token@git.example", "", "xxxxx-git-example"},
		{"https://user:s3cr3t-token@git.example/team/shop.git", "apps/web", "shop-apps-web"},
		{"lessons/deploy.yaml", "", "deploy"},
		{"svc.JSON", "", "svc"},
		{"-", "", "stdin"},
		{"deploy-and-2-more", "", "deploy-and-2-more"},
	}
	for _, tt := range tests {
		if got := SyncNameOf(tt.origin, tt.folder); got != tt.want {
			t.Errorf("SyncNameOf(%q, %q) = %q, want %q", tt.origin, tt.folder, got, tt.want)
		}
	}
}

func TestSyncNameOfSources(t *testing.T) {
	tests := []struct {
		name    string
		sources []string
		folder  string
		want    string
	}{
		{name: "one repository", sources: []string{"https://git.example/shop.git"}, folder: "deploy", want: "shop-deploy"},
		{name: "one file", sources: []string{"lessons/deploy.yaml"}, want: "deploy"},
		{name: "standard input", sources: []string{"-"}, want: "stdin"},
		{name: "two files", sources: []string{"lessons/deploy.yaml", "svc.yaml"}, want: "deploy-and-1-more"},
		{name: "three files", sources: []string{"a/Web.YML", "b.json", "c.yaml"}, want: "web-and-2-more"},
		{name: "several files with a folder", sources: []string{"deploy.yaml", "svc.yaml"}, folder: "apps", want: "deploy-and-1-more-apps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SyncNameOfSources(tt.sources, tt.folder); got != tt.want {
				t.Errorf("SyncNameOfSources(%q, %q) = %q, want %q", tt.sources, tt.folder, got, tt.want)
			}
		})
	}
}
