// Package deploy holds how corepipe is deployed — the Dockerfiles, the Helm
// chart under helm/corepipe — and, in its tests, the checks that the chart
// renders into valid, least-privileged Kubernetes objects and that the
// repository's docker-compose.yaml runs the same commands as the chart.
package deploy
