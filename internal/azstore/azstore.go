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
	p, err := planAuth(loc, cred)
	if err != nil {
		return nil, err
	}
	var sec secret.Value
	var from string
	if p.env != "" {
		if sec, from, err = LoadSecret(p.file, p.env); err != nil {
			return nil, fmt.Errorf("storage %s: %s: %w", loc, p.auth, err)
		}
		if sec, err = checkSecret(loc, p, sec, from); err != nil {
			return nil, err
		}
	}
	client, err := newClient(loc, p, sec, from, opts.HTTPClient)
	if err != nil {
		return nil, err
	}
	log.Debug("storage client", p.logAttrs(loc, sec, from)...)
	return &Container{loc: loc, auth: p.auth, client: client, log: log}, nil
}

// clientKind is which azblob container client an auth opens.
type clientKind int

const (
	// tokenClient sends a bearer token from the managed identity.
	tokenClient clientKind = iota + 1
	// sharedKeyClient signs each request with the account key.
	sharedKeyClient
	// anonymousClient has no credential; a SAS token, if any, rides in
	// the URL.
	anonymousClient
)

// authPlan is how New opens a container for a Credential: the client, and
// where its secret comes from.
type authPlan struct {
	auth     string // Credential.Auth, managed-identity when empty
	client   clientKind
	clientID string // the user-assigned managed identity, "" for the system one
	fileKey  string // the agent.yaml key naming the secret's file, for messages
	file     string // the secret's file, "" to read env
	env      string // the variable holding the secret; "" when the auth takes none
}

// planAuth picks the client for cred.Auth and the place of its secret,
// without reading it. An unknown auth, or managed identity over plain
// http (the SDK would refuse to send a token), is an error.
func planAuth(loc Location, cred Credential) (authPlan, error) {
	p := authPlan{auth: cred.Auth}
	if p.auth == "" {
		p.auth = AuthManagedIdentity
	}
	switch p.auth {
	case AuthManagedIdentity:
		if !strings.HasPrefix(loc.ServiceURL, "https://") {
			return authPlan{}, fmt.Errorf("storage %s: managed-identity auth needs an https URL; use shared-key or sas with an emulator", loc)
		}
		p.client, p.clientID = tokenClient, cred.ClientID
	case AuthSharedKey:
		p.client, p.fileKey, p.file, p.env = sharedKeyClient, "keyFile", cred.KeyFile, EnvAccountKey
	case AuthSAS:
		p.client, p.fileKey, p.file, p.env = anonymousClient, "sasFile", cred.SASFile, EnvSASToken
	case AuthNone:
		p.client = anonymousClient
	default:
		return authPlan{}, fmt.Errorf("storage %s: unknown auth %q: want %s, %s, %s or %s",
			loc, cred.Auth, AuthManagedIdentity, AuthSharedKey, AuthSAS, AuthNone)
	}
	return p, nil
}

// checkSecret checks the secret p's auth loaded (from says where it came
// from) and returns it as the client takes it: an account key must be
// base64, a SAS token a query string with a signature, without its "?".
// Its errors never hold the secret.
func checkSecret(loc Location, p authPlan, sec secret.Value, from string) (secret.Value, error) {
	if sec == "" {
		return "", fmt.Errorf("storage %s: %s auth needs %s or %s", loc, p.auth, p.fileKey, p.env)
	}
	switch p.client {
	case sharedKeyClient:
		if _, err := base64.StdEncoding.DecodeString(sec.Reveal()); err != nil {
			return "", fmt.Errorf("storage %s: shared-key: the account key from %s is not valid base64; copy key1 or key2 of account %s", loc, from, loc.Account)
		}
	case anonymousClient:
		sec = secret.Value(strings.TrimPrefix(sec.Reveal(), "?"))
		if err := checkSAS(sec.Reveal()); err != nil {
			return "", fmt.Errorf("storage %s: the SAS token from %s %w", loc, from, err)
		}
	}
	return sec, nil
}

// newClient builds p's client for loc with the checked secret sec (from
// says where it came from); hc, when set, carries its requests and the
// managed identity's token requests.
func newClient(loc Location, p authPlan, sec secret.Value, from string, hc *http.Client) (*container.Client, error) {
	var co container.ClientOptions
	if hc != nil {
		co.Transport = hc
	}
	var c *container.Client
	var err error
	switch p.client {
	case tokenClient:
		var tc *azidentity.ManagedIdentityCredential
		if tc, err = azidentity.NewManagedIdentityCredential(managedIdentityOptions(p.clientID, hc)); err != nil {
			return nil, fmt.Errorf("storage %s: managed identity: %w", loc, err)
		}
		c, err = container.NewClient(loc.ContainerURL(), tc, &co)
	case sharedKeyClient:
		var skc *container.SharedKeyCredential
		if skc, err = container.NewSharedKeyCredential(loc.Account, sec.Reveal()); err != nil {
			return nil, fmt.Errorf("storage %s: shared-key from %s: invalid account key", loc, from)
		}
		c, err = container.NewClientWithSharedKeyCredential(loc.ContainerURL(), skc, &co)
	case anonymousClient:
		if sec == "" {
			c, err = container.NewClientWithNoCredential(loc.ContainerURL(), &co)
			break
		}
		// The SDK's error would quote the URL, token and all.
		if c, err = container.NewClientWithNoCredential(loc.ContainerURL()+"?"+sec.Reveal(), &co); err != nil {
			return nil, fmt.Errorf("storage %s: %s: invalid token from %s", loc, p.auth, from)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("storage %s: %w", loc, err)
	}
	return c, nil
}

// managedIdentityOptions asks for the identity clientID ("" for the
// system-assigned one), through hc when set.
func managedIdentityOptions(clientID string, hc *http.Client) *azidentity.ManagedIdentityCredentialOptions {
	o := &azidentity.ManagedIdentityCredentialOptions{}
	if hc != nil {
		o.ClientOptions = azcore.ClientOptions{Transport: hc}
	}
	if clientID != "" {
		o.ID = azidentity.ClientID(clientID)
	}
	return o
}

// logAttrs are the attributes of New's debug line: what identifies the
// credential, and where its secret came from (the secret itself logs as
// REDACTED).
func (p authPlan) logAttrs(loc Location, sec secret.Value, from string) []any {
	attrs := []any{"url", loc.String(), "auth", p.auth}
	switch p.auth {
	case AuthManagedIdentity:
		attrs = append(attrs, "clientId", p.clientID)
	case AuthSharedKey:
		attrs = append(attrs, "account", loc.Account, "key", sec, "keyFrom", from)
	case AuthSAS:
		attrs = append(attrs, "sas", sec, "sasFrom", from)
	}
	return attrs
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
