package extension

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"unsafe"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"
)

// crypt32's CryptDecryptMessage is not in x/sys/windows.
var procCryptDecryptMessage = windows.NewLazySystemDLL("crypt32.dll").NewProc("CryptDecryptMessage")

// cryptDecryptMessagePara is CRYPT_DECRYPT_MESSAGE_PARA without dwFlags
// (cbSize tells crypt32 the field is absent).
type cryptDecryptMessagePara struct {
	cbSize                   uint32
	dwMsgAndCertEncodingType uint32
	cCertStore               uint32
	rghCertStore             *windows.Handle
}

const msgEncoding = windows.X509_ASN_ENCODING | windows.PKCS_7_ASN_ENCODING

// platformDecrypt decrypts with the certificate of thumbprint in the
// LocalMachine\My store, as the Windows guest agent installs it; crypt32
// finds the private key itself (azure-extension-platform does the same).
func platformDecrypt(_, thumbprint, b64 string) ([]byte, error) {
	der, err := DecodeProtected(b64)
	if err != nil {
		return nil, err
	}
	if len(der) == 0 {
		return nil, failf(CodeDecrypt, "protectedSettings are empty")
	}
	store, err := windows.CertOpenStore(windows.CERT_STORE_PROV_SYSTEM, 0, 0, windows.CERT_SYSTEM_STORE_LOCAL_MACHINE,
		uintptr(unsafe.Pointer(windows.StringToUTF16Ptr("MY"))))
	if err != nil {
		return nil, failf(CodeCertificate, "open the LocalMachine\\My certificate store: %v; the handler must run as LocalSystem or an administrator", err)
	}
	defer windows.CertCloseStore(store, 0)
	hash, err := hex.DecodeString(thumbprint)
	if err != nil || len(hash) == 0 {
		return nil, failf(CodeThumbprintMissing, "protectedSettingsCertThumbprint is not hex")
	}
	blob := windows.CryptHashBlob{Size: uint32(len(hash)), Data: &hash[0]}
	cert, err := windows.CertFindCertificateInStore(store, msgEncoding, 0, windows.CERT_FIND_SHA1_HASH, unsafe.Pointer(&blob), nil)
	if cert == nil {
		return nil, failf(CodeCertificate, "no certificate with thumbprint %s in LocalMachine\\My: %v", thumbprint, err)
	}
	defer windows.CertFreeCertificateContext(cert)
	para := cryptDecryptMessagePara{dwMsgAndCertEncodingType: msgEncoding, cCertStore: 1, rghCertStore: &store}
	para.cbSize = uint32(unsafe.Sizeof(para))
	// Called twice: once for the size, once for the data.
	var size uint32
	if r, _, e := procCryptDecryptMessage.Call(uintptr(unsafe.Pointer(&para)), uintptr(unsafe.Pointer(&der[0])), uintptr(len(der)), 0, uintptr(unsafe.Pointer(&size)), 0); r == 0 {
		return nil, failf(CodeDecrypt, "decrypt protectedSettings with certificate %s: %v (the data are corrupt or not for this certificate)", thumbprint, e)
	}
	if size == 0 {
		return nil, nil
	}
	out := make([]byte, size)
	if r, _, e := procCryptDecryptMessage.Call(uintptr(unsafe.Pointer(&para)), uintptr(unsafe.Pointer(&der[0])), uintptr(len(der)), uintptr(unsafe.Pointer(&out[0])), uintptr(unsafe.Pointer(&size)), 0); r == 0 {
		return nil, failf(CodeDecrypt, "decrypt protectedSettings with certificate %s: %v", thumbprint, e)
	}
	return out[:size], nil
}

// registrySeq keeps the applied sequence number where the Windows guest
// agent and azure-extension-platform keep it:
// HKLM\Software\Microsoft\Windows Azure\HandlerState\<name>_<version>\SequenceNumber.
type registrySeq struct{ name, version string }

const handlerStateKey = `Software\Microsoft\Windows Azure\HandlerState\`

func newSeqStore(env Env, version string) SeqStore {
	return registrySeq{name: env.Name, version: version}
}

func (r registrySeq) key(version string) string { return handlerStateKey + r.name + "_" + version }

func (r registrySeq) Get() (int, bool, error) { return readRegistrySeq(r.key(r.version)) }

func readRegistrySeq(path string) (int, bool, error) {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, path, registry.QUERY_VALUE)
	if errors.Is(err, registry.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read the applied sequence number from HKLM\\%s: %w", path, err)
	}
	defer k.Close()
	if n, _, err := k.GetIntegerValue("SequenceNumber"); err == nil {
		return int(n), true, nil
	}
	s, _, err := k.GetStringValue("SequenceNumber")
	if err != nil {
		return 0, false, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, false, nil
	}
	return n, true, nil
}

func (r registrySeq) Set(seq int) error {
	k, _, err := registry.CreateKey(registry.LOCAL_MACHINE, r.key(r.version), registry.SET_VALUE)
	if err != nil {
		return failf(CodeHostWrite, "record the applied sequence number in HKLM\\%s: %w", r.key(r.version), err)
	}
	defer k.Close()
	if err := k.SetStringValue("SequenceNumber", strconv.Itoa(seq)); err != nil {
		return failf(CodeHostWrite, "record the applied sequence number in HKLM\\%s: %w", r.key(r.version), err)
	}
	return nil
}

func (r registrySeq) Clear() error {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, r.key(r.version), registry.SET_VALUE)
	if errors.Is(err, registry.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("forget the applied sequence number: %w", err)
	}
	defer k.Close()
	if err := k.DeleteValue("SequenceNumber"); err != nil && !errors.Is(err, registry.ErrNotExist) {
		return fmt.Errorf("forget the applied sequence number: %w", err)
	}
	return nil
}

func (r registrySeq) CopyFrom(oldVersion string) error {
	if !validVersion(oldVersion) {
		return nil
	}
	n, ok, err := readRegistrySeq(r.key(oldVersion))
	if err != nil || !ok {
		return err
	}
	return r.Set(n)
}

// secretsSDDL gives SYSTEM and Administrators full control of the secrets
// folder and its files, and nobody else anything; P stops the inherited
// ProgramData ACL, which lets every user read.
const secretsSDDL = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"

func protectDir(dir string) error {
	sd, err := windows.SecurityDescriptorFromString(secretsSDDL)
	if err != nil {
		return err
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return err
	}
	return windows.SetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
}
