package kube

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/corepipe/corepipe"
)

// ownerOf names the workload that runs pod from its controller reference
// alone. The Deployment behind a ReplicaSet is found by name: the ReplicaSet
// controller names its sets "<deployment>-<pod-template-hash>" and labels
// their pods with that hash, so the name is certain when the suffix matches
// the label. Looking the ReplicaSet up would need read access to every
// ReplicaSet in the cluster, which the agent does not get. A Job's CronJob is
// not guessed: a Job's name alone does not say whether a CronJob made it.
func ownerOf(pod *corev1.Pod) *corepipe.Owner {
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return nil
	}
	if ref.Kind == "ReplicaSet" {
		if hash := pod.Labels["pod-template-hash"]; hash != "" {
			if deploy, ok := strings.CutSuffix(ref.Name, "-"+hash); ok && deploy != "" {
				return &corepipe.Owner{Kind: "Deployment", Name: deploy}
			}
		}
	}
	return &corepipe.Owner{Kind: ref.Kind, Name: ref.Name}
}
