package kubetest

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// CreateNode registers a Ready node named name with InternalIP ip and boot
// ID boot, as its kubelet would (there is none here).
func (s *Server) CreateNode(name, ip, boot string) *corev1.Node {
	s.t.Helper()
	ctx := context.Background()
	nodes := s.Client().CoreV1().Nodes()
	n, err := nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		s.t.Fatalf("kubetest: create node %s: %v", name, err)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name}}
	n.Status.NodeInfo.BootID = boot
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.NewTime(time.Now().Add(-time.Hour))}}
	n, err = nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{})
	if err != nil {
		s.t.Fatalf("kubetest: status of node %s: %v", name, err)
	}
	return n
}

// UpdateNodeStatus changes the status of node name with change, as the
// node lifecycle controller or a restarted kubelet would.
func (s *Server) UpdateNodeStatus(name string, change func(*corev1.Node)) {
	s.t.Helper()
	ctx := context.Background()
	nodes := s.Client().CoreV1().Nodes()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		change(n)
		_, err = nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		s.t.Fatalf("kubetest: status of node %s: %v", name, err)
	}
}

// NodeLost is what the node lifecycle controller does to a node whose
// kubelet stopped reporting: its Ready condition becomes Unknown.
func NodeLost(n *corev1.Node) {
	for i := range n.Status.Conditions {
		if c := &n.Status.Conditions[i]; c.Type == corev1.NodeReady {
			c.Status, c.Reason, c.Message = corev1.ConditionUnknown, "NodeStatusUnknown", "Kubelet stopped posting node status."
			c.LastTransitionTime = metav1.Now()
		}
	}
}
