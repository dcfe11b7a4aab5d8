// Package deploy holds how corepipe is deployed — the Dockerfiles, the Helm
// chart under helm/corepipe with its S3 and NATS policies — and, in its
// tests, the checks that the chart renders into valid, least-privileged
// Kubernetes objects, that the repository's docker-compose.yaml runs the
// same commands as the chart, that each part's credentials let it do its job
// and nothing else on a real MinIO and a real nats-server, and that the
// core-capture admission policy mutates the pods it should on a real API
// server.
package deploy
