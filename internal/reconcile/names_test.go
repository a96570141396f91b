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
