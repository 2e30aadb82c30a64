// Package azstore opens Azure Blob Storage containers from a container URL
// and a storage credential as agent.yaml spells them (managed-identity,
// shared-key, sas or none), for release downloads, release publishing and the
// image cache's Azure tier. It accepts Azure's host-form URLs and the
// emulator's path-form URLs (Azurite), keeps secrets out of logs, and offers
// the few blob operations those callers share.
package azstore

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/berthhq/berth/internal/secret"
)

// Storage auth modes, as agent.yaml's `auth` key names them.
const (
	AuthManagedIdentity = "managed-identity"
	AuthSharedKey       = "shared-key"
	AuthSAS             = "sas"
	AuthNone            = "none"
)

// Environment variables that hold storage secrets when no file is named.
const (
	EnvAccountKey = "AZURE_STORAGE_KEY"
	EnvSASToken   = "AZURE_STORAGE_SAS_TOKEN"
)

// ErrExists is returned by UploadFile without Overwrite when the blob is
// already there.
var ErrExists = errors.New("blob already exists")

// LoadSecret reads a secret from file when file is set, else from the
// environment variable env. It trims surrounding white space and reports
// where the value came from ("file PATH" or "$ENV") for messages; it returns
// "" and no error when neither holds a value.
func LoadSecret(file, env string) (secret.Value, string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", "", fmt.Errorf("read secret file: %w", err)
		}
		return secret.Value(strings.TrimSpace(string(b))), "file " + file, nil
	}
	if v := strings.TrimSpace(os.Getenv(env)); v != "" {
		return secret.Value(v), "$" + env, nil
	}
	return "", "", nil
}

// Options tune a Container.
type Options struct {
	// HTTPClient carries storage requests and managed-identity token
	// requests; nil means the Azure SDK's default transport.
	HTTPClient *http.Client
	// Logger receives debug lines about the client; nil discards them.
	Logger *slog.Logger
}

// Container is an Azure Blob container (optionally a prefix inside it)
// opened with a credential.
type Container struct {
	loc    Location
	auth   string
	client *container.Client
	log    *slog.Logger
}

// New opens the container at rawURL with cred. It parses the URL, loads the
// credential's secret (keyFile/AZURE_STORAGE_KEY, sasFile/AZURE_STORAGE_SAS_TOKEN)
// and builds the client; it makes no request. An empty cred.Auth means
// managed-identity, agent.yaml's default.
func New(rawURL string, cred Credential, opts Options) (*Container, error) {
	loc, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "azstore")
	var co container.ClientOptions
	if opts.HTTPClient != nil {
		co.Transport = opts.HTTPClient
	}
	auth := cred.Auth
	if auth == "" {
		auth = AuthManagedIdentity
	}
	c := &Container{loc: loc, auth: auth, log: log}
	switch auth {
	case AuthManagedIdentity:
		if !strings.HasPrefix(loc.ServiceURL, "https://") {
			return nil, fmt.Errorf("storage %s: managed-identity auth needs an https URL; use shared-key or sas with an emulator", loc)
		}
		miOpts := &azidentity.ManagedIdentityCredentialOptions{}
		if opts.HTTPClient != nil {
			miOpts.ClientOptions = azcore.ClientOptions{Transport: opts.HTTPClient}
		}
		if cred.ClientID != "" {
			miOpts.ID = azidentity.ClientID(cred.ClientID)
		}
		tc, err := azidentity.NewManagedIdentityCredential(miOpts)
		if err != nil {
			return nil, fmt.Errorf("storage %s: managed identity: %w", loc, err)
		}
		c.client, err = container.NewClient(loc.ContainerURL(), tc, &co)
		if err != nil {
			return nil, fmt.Errorf("storage %s: %w", loc, err)
		}
		log.Debug("storage client", "url", loc.String(), "auth", auth, "clientId", cred.ClientID)
	case AuthSharedKey:
		key, from, err := LoadSecret(cred.KeyFile, EnvAccountKey)
		if err != nil {
			return nil, fmt.Errorf("storage %s: shared-key: %w", loc, err)
		}
		if key == "" {
			return nil, fmt.Errorf("storage %s: shared-key auth needs keyFile or %s", loc, EnvAccountKey)
		}
		if _, err := base64.StdEncoding.DecodeString(key.Reveal()); err != nil {
			return nil, fmt.Errorf("storage %s: shared-key: the account key from %s is not valid base64; copy key1 or key2 of account %s", loc, from, loc.Account)
		}
		skc, err := container.NewSharedKeyCredential(loc.Account, key.Reveal())
		if err != nil {
			return nil, fmt.Errorf("storage %s: shared-key from %s: invalid account key", loc, from)
		}
		c.client, err = container.NewClientWithSharedKeyCredential(loc.ContainerURL(), skc, &co)
		if err != nil {
			return nil, fmt.Errorf("storage %s: %w", loc, err)
		}
		log.Debug("storage client", "url", loc.String(), "auth", auth, "account", loc.Account, "key", key, "keyFrom", from)
	case AuthSAS:
		tok, from, err := LoadSecret(cred.SASFile, EnvSASToken)
		if err != nil {
			return nil, fmt.Errorf("storage %s: sas: %w", loc, err)
		}
		if tok == "" {
			return nil, fmt.Errorf("storage %s: sas auth needs sasFile or %s", loc, EnvSASToken)
		}
		q := strings.TrimPrefix(tok.Reveal(), "?")
		if err := checkSAS(q); err != nil {
			return nil, fmt.Errorf("storage %s: the SAS token from %s %w", loc, from, err)
		}
		c.client, err = container.NewClientWithNoCredential(loc.ContainerURL()+"?"+q, &co)
		if err != nil {
			return nil, fmt.Errorf("storage %s: sas: invalid token from %s", loc, from)
		}
		log.Debug("storage client", "url", loc.String(), "auth", auth, "sas", tok, "sasFrom", from)
	case AuthNone:
		c.client, err = container.NewClientWithNoCredential(loc.ContainerURL(), &co)
		if err != nil {
			return nil, fmt.Errorf("storage %s: %w", loc, err)
		}
		log.Debug("storage client", "url", loc.String(), "auth", auth)
	default:
		return nil, fmt.Errorf("storage %s: unknown auth %q: want %s, %s, %s or %s",
			loc, cred.Auth, AuthManagedIdentity, AuthSharedKey, AuthSAS, AuthNone)
	}
	return c, nil
}

// checkSAS rejects strings that cannot be a SAS token, without echoing them.
func checkSAS(q string) error {
	if strings.ContainsAny(q, " \t\r\n#") {
		return errors.New("holds white space or '#': it must be the query string only (sv=…&sig=…)")
	}
	vals, err := parseQuery(q)
	if err != nil {
		return errors.New("is not a URL query string (sv=…&sig=…)")
	}
	if vals["sig"] == "" {
		return errors.New("has no sig= parameter: copy the whole token (sv=…&sig=…)")
	}
	return nil
}

func parseQuery(q string) (map[string]string, error) {
	out := map[string]string{}
	for part := range strings.SplitSeq(q, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		if k == "" {
			return nil, errors.New("empty key")
		}
		out[k] = v
	}
	return out, nil
}

// Location returns where the container is.
func (c *Container) Location() Location { return c.loc }

// Auth returns the auth mode the container was opened with.
func (c *Container) Auth() string { return c.auth }

// Client returns the azblob container client, for operations this package
// does not wrap. Blob names given to it must include Location().Prefix
// (see Location.BlobName).
func (c *Container) Client() *container.Client { return c.client }

// EnsureContainer creates the container when it is missing. A container
// that already exists is fine; so is a SAS that may not create containers
// but can list the existing one.
func (c *Container) EnsureContainer(ctx context.Context) error {
	_, err := c.client.Create(ctx, nil)
	if err == nil {
		c.log.Info("created storage container", "url", c.loc.ContainerURL())
		return nil
	}
	if bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return nil
	}
	// A container-scoped SAS cannot create containers; if the container is
	// there and readable, that is all the caller needs.
	pager := c.client.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{MaxResults: ptr(int32(1))})
	if _, lerr := pager.NextPage(ctx); lerr == nil {
		return nil
	}
	if c.auth == AuthSAS {
		return fmt.Errorf("create container %s: a container SAS cannot create its container: create it once with the account key or in the portal: %w", c.loc.ContainerURL(), err)
	}
	return fmt.Errorf("create container %s: %w", c.loc.ContainerURL(), err)
}

// BlobInfo describes a blob.
type BlobInfo struct {
	// Size is the blob's length in bytes.
	Size int64
	// MD5 is the blob's Content-MD5 property, nil when it has none.
	MD5 []byte
	// ContentType is the blob's Content-Type property.
	ContentType string
	// Metadata holds the blob's metadata with lowercase keys.
	Metadata map[string]string
}

// Stat returns what the service knows of blob name (relative to the
// Location's prefix). A missing blob gives an error wrapping fs.ErrNotExist.
func (c *Container) Stat(ctx context.Context, name string) (BlobInfo, error) {
	full := c.loc.BlobName(name)
	resp, err := c.client.NewBlobClient(full).GetProperties(ctx, nil)
	if err != nil {
		return BlobInfo{}, c.wrap("stat", full, err)
	}
	bi := BlobInfo{MD5: resp.ContentMD5, Metadata: map[string]string{}}
	if resp.ContentLength != nil {
		bi.Size = *resp.ContentLength
	}
	if resp.ContentType != nil {
		bi.ContentType = *resp.ContentType
	}
	for k, v := range resp.Metadata {
		if v != nil {
			bi.Metadata[strings.ToLower(k)] = *v
		}
	}
	return bi, nil
}

// Open streams blob name (relative to the Location's prefix) from offset on.
// It returns the body and the blob's total size. A missing blob gives an
// error wrapping fs.ErrNotExist; an offset at or past the end gives an empty
// body (Azure answers 416, Azurite an empty 206: both look the same here).
func (c *Container) Open(ctx context.Context, name string, offset int64) (io.ReadCloser, int64, error) {
	full := c.loc.BlobName(name)
	var o blob.DownloadStreamOptions
	if offset > 0 {
		o.Range = blob.HTTPRange{Offset: offset}
	}
	resp, err := c.client.NewBlobClient(full).DownloadStream(ctx, &o)
	if err != nil {
		if bloberror.HasCode(err, bloberror.InvalidRange) {
			bi, serr := c.Stat(ctx, name)
			if serr != nil {
				return nil, 0, serr
			}
			return io.NopCloser(strings.NewReader("")), bi.Size, nil
		}
		return nil, 0, c.wrap("read", full, err)
	}
	total := int64(-1)
	if resp.ContentRange != nil {
		// bytes START-END/TOTAL
		if _, after, ok := strings.Cut(*resp.ContentRange, "/"); ok {
			if n, err := strconv.ParseInt(after, 10, 64); err == nil {
				total = n
			}
		}
	}
	if total < 0 && resp.ContentLength != nil {
		total = offset + *resp.ContentLength
	}
	return resp.Body, total, nil
}

// UploadOptions tune UploadFile.
type UploadOptions struct {
	// ContentType is stored as the blob's Content-Type.
	ContentType string
	// Overwrite replaces an existing blob; without it an existing blob
	// makes UploadFile fail with ErrExists, checked atomically by the service.
	Overwrite bool
	// Metadata is stored with the blob (keys must be valid C# identifiers).
	Metadata map[string]string
}

// UploadFile uploads the local file at path as blob name (relative to the
// Location's prefix), storing its Content-MD5.
func (c *Container) UploadFile(ctx context.Context, name, path string, o UploadOptions) error {
	full := c.loc.BlobName(name)
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("upload %s: %w", full, err)
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("upload %s: read %s: %w", full, path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("upload %s: %w", full, err)
	}
	headers := &blob.HTTPHeaders{BlobContentMD5: h.Sum(nil)}
	if o.ContentType != "" {
		headers.BlobContentType = ptr(o.ContentType)
	}
	uo := &blockblob.UploadFileOptions{HTTPHeaders: headers}
	if len(o.Metadata) > 0 {
		uo.Metadata = map[string]*string{}
		for k, v := range o.Metadata {
			uo.Metadata[k] = ptr(v)
		}
	}
	if !o.Overwrite {
		etagAny := azcore.ETagAny
		uo.AccessConditions = &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: &etagAny}}
	}
	if _, err := c.client.NewBlockBlobClient(full).UploadFile(ctx, f, uo); err != nil {
		if !o.Overwrite && bloberror.HasCode(err, bloberror.BlobAlreadyExists, bloberror.ConditionNotMet) {
			return fmt.Errorf("upload %s: %w", full, ErrExists)
		}
		return c.wrap("upload", full, err)
	}
	c.log.Debug("uploaded blob", "blob", full, "container", c.loc.ContainerURL())
	return nil
}

// Delete removes blob name (relative to the Location's prefix); a missing
// blob is not an error.
func (c *Container) Delete(ctx context.Context, name string) error {
	full := c.loc.BlobName(name)
	if _, err := c.client.NewBlobClient(full).Delete(ctx, nil); err != nil && !IsNotFound(err) {
		return c.wrap("delete", full, err)
	}
	return nil
}

// IsNotFound reports whether err says a blob or its container does not exist.
func IsNotFound(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound, bloberror.ResourceNotFound)
}

// wrap adds the operation and blob to err, turns not-found into
// fs.ErrNotExist and explains authorisation failures.
func (c *Container) wrap(op, blobName string, err error) error {
	where := c.loc.ContainerURL() + "/" + blobName
	switch {
	case IsNotFound(err):
		return fmt.Errorf("%s %s: %w (%w)", op, where, fs.ErrNotExist, err)
	case bloberror.HasCode(err, bloberror.AuthenticationFailed, bloberror.AuthorizationFailure,
		bloberror.AuthorizationPermissionMismatch, bloberror.InsufficientAccountPermissions,
		bloberror.NoAuthenticationInformation):
		return fmt.Errorf("%s %s: storage refused %s auth: check the key, the SAS permissions and expiry, or the identity's role (Storage Blob Data Reader/Contributor): %w", op, where, c.auth, err)
	}
	return fmt.Errorf("%s %s: %w", op, where, err)
}

func ptr[T any](v T) *T { return &v }
