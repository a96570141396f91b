package apply

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Remembered is what gitk8s knows about an object it applied: the hash of
// what it sent, and the hash of its own managedFields entry right after.
// Controllers writing status do not touch that entry; anyone who changes,
// removes or takes over a field gitk8s set does (kubectl edit, scale,
// label --overwrite), and a deleted object has none. So when the manifest
// hashes the same and the entry is unchanged, nothing needs sending.
type Remembered struct {
	Hash      string `json:"h"`
	Ownership string `json:"o"`
}

// Memory keeps Remembered entries per inventory. Implementations must be
// safe for concurrent use.
type Memory interface {
	// Load returns the entries stored under key, keyed by object id; a key
	// never saved gives an empty map.
	Load(key string) (map[string]Remembered, error)
	// Save replaces the entries stored under key.
	Save(key string, entries map[string]Remembered) error
}

// memoryVersion changes whenever what goes into a hash changes, so that old
// entries are not trusted.
const memoryVersion = "2"

// MemoryKey is the Memory key of an inventory in a cluster.
func MemoryKey(server, inventoryID, fieldManager string) string {
	return memoryKey(server, inventoryID, fieldManager)
}

// memoryKey names one inventory in one cluster.
func memoryKey(server, inventoryID, fieldManager string) string {
	sum := sha256.Sum256([]byte(memoryVersion + "\x00" + server + "\x00" + inventoryID + "\x00" + fieldManager))
	return hex.EncodeToString(sum[:16])
}

// MemoryInProcess keeps entries in memory, for the daemon and tests.
type MemoryInProcess struct {
	mu      sync.Mutex
	entries map[string]map[string]Remembered
}

// NewMemoryInProcess returns an empty in-process Memory.
func NewMemoryInProcess() *MemoryInProcess {
	return &MemoryInProcess{entries: map[string]map[string]Remembered{}}
}

// Load implements Memory.
func (m *MemoryInProcess) Load(key string) (map[string]Remembered, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]Remembered, len(m.entries[key]))
	for k, v := range m.entries[key] {
		out[k] = v
	}
	return out, nil
}

// Save implements Memory.
func (m *MemoryInProcess) Save(key string, entries map[string]Remembered) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries[key] = entries
	return nil
}

// MemoryDir keeps entries as one JSON file per inventory in a directory,
// for the CLI: by default under the user's cache directory. A lost or
// stale file only costs dry-runs, never correctness, since live
// resourceVersions are always checked.
type MemoryDir struct {
	Dir string
}

// DefaultMemoryDir is $XDG_CACHE_HOME/gitk8s/applied (or the platform's
// equivalent).
func DefaultMemoryDir() (*MemoryDir, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return nil, err
	}
	return &MemoryDir{Dir: filepath.Join(base, "gitk8s", "applied")}, nil
}

// Load implements Memory.
func (m *MemoryDir) Load(key string) (map[string]Remembered, error) {
	data, err := os.ReadFile(filepath.Join(m.Dir, key+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]Remembered{}, nil
	}
	if err != nil {
		return nil, err
	}
	entries := map[string]Remembered{}
	if err := json.Unmarshal(data, &entries); err != nil {
		// A damaged file is forgotten, not fatal: it only saves requests.
		return map[string]Remembered{}, nil
	}
	return entries, nil
}

// Save implements Memory, atomically.
func (m *MemoryDir) Save(key string, entries map[string]Remembered) error {
	if err := os.MkdirAll(m.Dir, 0o700); err != nil {
		return err
	}
	data, err := json.Marshal(entries)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(m.Dir, key+".*.tmp")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(m.Dir, key+".json")); err != nil {
		return fmt.Errorf("save applied-state memory: %w", err)
	}
	return nil
}

// OwnershipOf hashes a field manager's server-side apply entry of an
// object's managedFields; "" when it has none. It changes when anyone
// changes, removes or takes over a field that manager set, and not when a
// controller writes status.
func OwnershipOf(fields []metav1.ManagedFieldsEntry, fieldManager string) string {
	return ownershipOf(fields, fieldManager)
}

// ownershipOf hashes the field manager's server-side apply entry of
// managedFields; "" when it has none.
func ownershipOf(fields []metav1.ManagedFieldsEntry, fieldManager string) string {
	for _, f := range fields {
		if f.Manager != fieldManager || f.Operation != metav1.ManagedFieldsOperationApply || f.Subresource != "" {
			continue
		}
		h := sha256.New()
		fmt.Fprintf(h, "%s\x00%v\x00", f.APIVersion, f.Time)
		if f.FieldsV1 != nil {
			h.Write(f.FieldsV1.Raw)
		}
		return hex.EncodeToString(h.Sum(nil)[:16])
	}
	return ""
}

// hashObject is the hash of what is sent for an object, with the options
// that change what the server does with it.
func hashObject(data []byte, fieldManager string, force bool) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%t\x00", fieldManager, force)
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil)[:16])
}
