package controlplane

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// FakeNodeAnnotation marks the nodes kwok manages.
const FakeNodeAnnotation = "kwok.x-k8s.io/node"

// Labels and taints of the fake nodes, so that manifests can exercise
// nodeSelector, node affinity and tolerations against them. Node i (from 1)
// is in zone zone-a, zone-b or zone-c in turn; odd nodes have an SSD, even
// ones an HDD; when there are three nodes or more, the last one is reserved
// for batch work with a NoSchedule taint.
const (
	ZoneLabel      = "topology.kubernetes.io/zone"
	DiskLabel      = "gitk8s.io/disk"
	DedicatedLabel = "gitk8s.io/dedicated"
)

// createNodes registers n fake nodes in the cluster of the given context
// and waits until kwok has made them Ready.
func createNodes(ctx context.Context, kubeconfig, contextName string, n int) error {
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: contextName}).ClientConfig()
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for i := 1; i <= n; i++ {
		node := fakeNode(i, n)
		if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create node %s: %w", node.Name, err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err == nil && countReady(nodes.Items) == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fake nodes not Ready after 60s (is kwok running? see its log)")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func fakeNode(i, n int) *corev1.Node {
	zones := []string{"zone-a", "zone-b", "zone-c"}
	disk := "ssd"
	if i%2 == 0 {
		disk = "hdd"
	}
	name := fmt.Sprintf("kwok-node-%d", i)
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{FakeNodeAnnotation: "fake"},
			Labels: map[string]string{
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "kwok",
				ZoneLabel:                zones[(i-1)%len(zones)],
				DiskLabel:                disk,
			},
		},
		Status: corev1.NodeStatus{
			Capacity:    nodeResources(),
			Allocatable: nodeResources(),
		},
	}
	if n >= 3 && i == n {
		node.Labels[DedicatedLabel] = "batch"
		node.Spec.Taints = []corev1.Taint{{Key: DedicatedLabel, Value: "batch", Effect: corev1.TaintEffectNoSchedule}}
	}
	return node
}

func nodeResources() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("128Gi"),
		corev1.ResourcePods:   resource.MustParse("250"),
	}
}

func countReady(nodes []corev1.Node) int {
	ready := 0
	for _, n := range nodes {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	return ready
}
