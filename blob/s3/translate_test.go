package s3

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/corepipe/corepipe"
)

// The errors a real store gives for these cases are timing-dependent (a
// deadline usually wins over the last connection error), so the mapping is
// also checked on synthetic errors.
func TestTranslate(t *testing.T) {
	s := &Store{where: "http://127.0.0.1:9000/bucket/"}
	refused := &url.Error{Op: "Put", URL: "http://127.0.0.1:9000/bucket/k", Err: &net.OpError{
		Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED),
	}}
	for _, tt := range []struct {
		name string
		err  error
		want error
	}{
		{"no such key", minio.ErrorResponse{StatusCode: 404, Code: minio.NoSuchKey}, corepipe.ErrNotFound},
		{"head not found", minio.ErrorResponse{StatusCode: 404, Code: "NotFound"}, corepipe.ErrNotFound},
		{"connection refused", refused, corepipe.ErrUnavailable},
		{"deadline", context.DeadlineExceeded, corepipe.ErrUnavailable},
		{"server not initialized", minio.ErrorResponse{StatusCode: 503, Code: "XMinioServerNotInitialized"}, corepipe.ErrUnavailable},
		{"canceled", context.Canceled, context.Canceled},
		{"access denied", minio.ErrorResponse{StatusCode: 403, Code: "AccessDenied", Message: "Access Denied."}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := s.translate("put", "cores/k", tt.err)
			msg := got.Error()
			if !strings.Contains(msg, "127.0.0.1:9000") || !strings.Contains(msg, "cores/k") {
				t.Errorf("%q does not name the endpoint and the key", msg)
			}
			if strings.Contains(msg, "http://127.0.0.1:9000/bucket/k") {
				t.Errorf("%q repeats the request URL", msg)
			}
			// A viewer is told what happened, not where.
			if safe := corepipe.ErrorMessage(got); safe == "" || strings.Contains(safe, "127.0.0.1") || strings.Contains(safe, "bucket") || strings.Contains(safe, "cores/k") {
				t.Errorf("safe message %q is empty or names the endpoint, bucket or key", safe)
			}
			for _, sentinel := range []error{corepipe.ErrNotFound, corepipe.ErrUnavailable, context.Canceled} {
				if errors.Is(got, sentinel) != (sentinel == tt.want) {
					t.Errorf("errors.Is(%q, %v) = %v", msg, sentinel, !(sentinel == tt.want))
				}
			}
		})
	}
}
