// Package s3 is the BlobStore on an S3-compatible object store (MinIO, AWS
// S3), the production store: it streams multi-GiB cores in bounded memory
// and translates the store's errors into the domain's sentinels.
package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"syscall"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/blob/internal/blobkey"
)

// partSize bounds the memory of an upload of unknown size: minio-go buffers
// one part at a time. It also caps such an upload at 10 000 parts, 156 GiB,
// far above a compressed core.
const partSize = 16 << 20

const defaultEndpoint = "s3.amazonaws.com"

var _ corepipe.BlobDeleter = (*Store)(nil)

// Store keeps blobs as objects under a prefix of one bucket.
type Store struct {
	client *minio.Client
	bucket string
	// prefix is "" or ends in "/"; it is prepended to every key.
	prefix string
	// where names the store in errors: endpoint, bucket and prefix.
	where string
}

// Option configures Open.
type Option func(*options)

type options struct {
	creds *credentials.Credentials
}

// WithCredentials makes the store use a fixed access key instead of the
// environment, so tests need not mutate the process's environment.
func WithCredentials(accessKey, secretKey string) Option {
	return func(o *options) { o.creds = credentials.NewStaticV4(accessKey, secretKey, "") }
}

// Open connects to the store that u names,
// s3://bucket/prefix?endpoint=host:port&insecure=1&region=r, and creates the
// bucket if it does not exist. Without an endpoint it is AWS S3. Credentials
// come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, else
// MINIO_ROOT_USER/MINIO_ROOT_PASSWORD (or MINIO_ACCESS_KEY/MINIO_SECRET_KEY),
// else, on AWS only, the instance's IAM role.
func Open(ctx context.Context, u *url.URL, opts ...Option) (*Store, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if u.Scheme != "s3" {
		return nil, fmt.Errorf("%w s3 blob URL: scheme %q, want s3://bucket/prefix", corepipe.ErrInvalid, u.Scheme)
	}
	bucket := u.Host
	if err := s3utils.CheckValidBucketNameStrict(bucket); err != nil {
		return nil, fmt.Errorf("%w s3 blob URL: bucket %q: %w", corepipe.ErrInvalid, bucket, err)
	}
	if u.User != nil {
		// Refused rather than ignored: credentials in a URL end up in
		// flags, process listings and logs.
		return nil, fmt.Errorf("%w s3 blob URL: it holds credentials; pass them in the AWS_* or MINIO_* environment", corepipe.ErrInvalid)
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix != "" {
		if err := blobkey.Check(prefix); err != nil {
			return nil, fmt.Errorf("s3 blob URL: prefix: %w", err)
		}
		prefix += "/"
	}

	q := u.Query()
	endpoint, insecure, region := defaultEndpoint, false, ""
	for name, vals := range q {
		v := vals[len(vals)-1]
		switch name {
		case "endpoint":
			endpoint = v
		case "insecure":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("%w s3 blob URL: insecure=%q, want 1 or 0", corepipe.ErrInvalid, v)
			}
			insecure = b
		case "region":
			region = v
		default:
			// A typo ("endpont") would otherwise silently send cores to AWS.
			return nil, fmt.Errorf("%w s3 blob URL: unknown parameter %q (known: endpoint, insecure, region)", corepipe.ErrInvalid, name)
		}
	}

	if o.creds == nil {
		o.creds = envCredentials(endpoint)
	}
	client, err := minio.New(endpoint, &minio.Options{
		Creds:  o.creds,
		Secure: !insecure,
		Region: region,
	})
	if err != nil {
		return nil, fmt.Errorf("%w s3 blob URL: endpoint %q: %w", corepipe.ErrInvalid, endpoint, err)
	}
	s := &Store{
		client: client,
		bucket: bucket,
		prefix: prefix,
		where:  client.EndpointURL().String() + "/" + bucket + "/" + prefix,
	}
	if err := s.ensureBucket(ctx, region); err != nil {
		return nil, err
	}
	return s, nil
}

func envCredentials(endpoint string) *credentials.Credentials {
	providers := []credentials.Provider{&credentials.EnvAWS{}, &credentials.EnvMinio{}}
	// The instance metadata service only exists on AWS; elsewhere asking
	// it would stall every request on an unreachable 169.254.169.254.
	if host, _, _ := strings.Cut(endpoint, ":"); host == "amazonaws.com" || strings.HasSuffix(host, ".amazonaws.com") {
		providers = append(providers, &credentials.IAM{})
	}
	return credentials.NewChainCredentials(providers)
}

func (s *Store) ensureBucket(ctx context.Context, region string) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return s.translate("open", "", err)
	}
	if ok {
		return nil
	}
	err = s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: region})
	if err != nil && minio.ToErrorResponse(err).Code != minio.BucketAlreadyOwnedByYou {
		return s.translate("create bucket", "", err)
	}
	return nil
}

// Put streams r into key. With size -1 minio-go uploads part by part, one
// partSize buffer at a time; with a known size it keeps at most a few parts
// in flight. When a multipart upload fails, minio-go spends up to its retry
// budget (seconds) aborting it, even past ctx's deadline; an upload it could
// not abort is left for the bucket's lifecycle rule to clean up.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := blobkey.Check(key); err != nil {
		return err
	}
	_, err := s.client.PutObject(ctx, s.bucket, s.prefix+key, r, size, minio.PutObjectOptions{
		PartSize:    partSize,
		ContentType: "application/octet-stream",
	})
	if err != nil {
		return s.translate("put", key, err)
	}
	return nil
}

// Get opens key for reading. It issues the GET before returning, unlike
// minio-go's lazy GetObject, so a missing key is reported here and not on
// the first Read.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := blobkey.Check(key); err != nil {
		return nil, err
	}
	core := minio.Core{Client: s.client}
	body, _, _, err := core.GetObject(ctx, s.bucket, s.prefix+key, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.translate("get", key, err)
	}
	return body, nil
}

// Stat returns the size of key.
func (s *Store) Stat(ctx context.Context, key string) (int64, error) {
	if err := blobkey.Check(key); err != nil {
		return 0, err
	}
	info, err := s.client.StatObject(ctx, s.bucket, s.prefix+key, minio.StatObjectOptions{})
	if err != nil {
		return 0, s.translate("stat", key, err)
	}
	return info.Size, nil
}

// Delete removes key. A missing key is no error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := blobkey.Check(key); err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.bucket, s.prefix+key, minio.RemoveObjectOptions{}); err != nil {
		return s.translate("delete", key, err)
	}
	return nil
}

// List calls fn for every key under prefix, in S3's lexical order.
func (s *Store) List(ctx context.Context, prefix string, fn func(key string) error) error {
	if err := blobkey.CheckPrefix(prefix); err != nil {
		return err
	}
	objects := s.client.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{
		Prefix:    s.prefix + prefix,
		Recursive: true,
	})
	for obj := range objects {
		if obj.Err != nil {
			return s.translate("list", prefix, obj.Err)
		}
		if err := fn(strings.TrimPrefix(obj.Key, s.prefix)); err != nil {
			return err
		}
	}
	return nil
}

// translate turns a minio-go error about key into the domain's form: a
// message safe for anyone (it names no endpoint, bucket or key) with the
// code that says what callers can do about it, and for the log one line
// naming the store and the key.
func (s *Store) translate(op, key string, err error) error {
	detail := fmt.Sprintf("s3 blob store %s: %s", s.where, op)
	if key != "" {
		detail += " " + key
	}
	var resp minio.ErrorResponse
	errors.As(err, &resp)
	switch {
	case resp.Code == minio.NoSuchKey || resp.Code == "NotFound":
		return &corepipe.Error{Code: corepipe.ENOTFOUND, Message: "no such object in the blob store", Err: errors.New(detail)}
	case resp.StatusCode >= 500:
		return &corepipe.Error{Code: corepipe.EUNAVAILABLE, Message: "the blob store is unavailable",
			Err: fmt.Errorf("%s: %s (%s)", detail, resp.Message, resp.Code)}
	case resp.Code != "":
		return &corepipe.Error{Code: corepipe.EINTERNAL, Message: "the blob store refused the request",
			Err: fmt.Errorf("%s: %s (%s)", detail, resp.Message, resp.Code)}
	case unavailable(err):
		// The *url.Error repeats the method and the whole object URL;
		// the detail already names both.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return &corepipe.Error{Code: corepipe.EUNAVAILABLE, Message: "the blob store did not answer", Err: fmt.Errorf("%s: %w", detail, err)}
	}
	return &corepipe.Error{Code: corepipe.EINTERNAL, Message: "blob store error", Err: fmt.Errorf("%s: %w", detail, err)}
}

// unavailable reports whether err means the store could not be reached or
// did not answer in time, which retrying later can cure.
func unavailable(err error) bool {
	var opErr *net.OpError
	switch {
	case errors.As(err, &opErr),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	return false
}
