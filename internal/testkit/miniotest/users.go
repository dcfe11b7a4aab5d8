package miniotest

import (
	"context"
	"time"

	"github.com/minio/madmin-go/v3"
)

// AddUser creates a user with accessKey and secretKey whose only rights are
// the IAM policy document policyJSON, through MinIO's admin API (as
// `mc admin user add` and `mc admin policy attach` do), so that a test can
// hold a role's policy to what the real server allows.
func (s *Server) AddUser(accessKey, secretKey, policyJSON string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm, err := madmin.New(s.addr, s.accessKey, s.secretKey, false)
	if err != nil {
		s.t.Fatalf("miniotest: admin client: %v", err)
	}
	policy := "policy-" + accessKey
	if err := adm.AddCannedPolicy(ctx, policy, []byte(policyJSON)); err != nil {
		s.t.Fatalf("miniotest: add policy for %s: %v", accessKey, err)
	}
	if err := adm.AddUser(ctx, accessKey, secretKey); err != nil {
		s.t.Fatalf("miniotest: add user %s: %v", accessKey, err)
	}
	if _, err := adm.AttachPolicy(ctx, madmin.PolicyAssociationReq{Policies: []string{policy}, User: accessKey}); err != nil {
		s.t.Fatalf("miniotest: attach policy to %s: %v", accessKey, err)
	}
}
