package extension

import (
	"errors"
	"fmt"
)

// Code is an ErrorClarification code: the number a failed status carries
// in its substatus so that a fleet can count failures by cause. The values
// are part of Berth's interface (docs/extension.md): never renumber them.
type Code int

// The clarification codes. Ranges group causes: 1x the guest agent's
// files, 2x the settings file, 3x protected settings, 4x the agent config,
// 5x writing on the host, 6x the agent service, 7x provisioning.
const (
	CodeHandlerEnvironment Code = 10 // HandlerEnvironment.json missing, unreadable or malformed
	CodeSequence           Code = 11 // no sequence number: neither ConfigSequenceNumber nor a settings file
	CodeSettingsUnreadable Code = 20 // the settings file cannot be read
	CodeSettingsNotJSON    Code = 21 // the settings file is not the settings JSON
	CodeSettingsCount      Code = 22 // runtimeSettings does not hold exactly one element
	CodeSettingsTooLarge   Code = 23 // the settings file is larger than MaxSettingsSize
	CodeThumbprintMissing  Code = 30 // protectedSettings without protectedSettingsCertThumbprint (or a malformed one)
	CodeCertificate        Code = 31 // the certificate or private key of the thumbprint is missing, unreadable or does not match
	CodeDecrypt            Code = 32 // protectedSettings cannot be decrypted: not for this certificate, or corrupt
	CodeProtectedInvalid   Code = 33 // decrypted protected settings are not the secrets object (unknown keys, wrong types)
	CodeConfigInvalid      Code = 40 // public settings are not a valid agent config (unknown keys, bad values)
	CodeSecretConflict     Code = 41 // a secret is given both ways, or for something the config does not use
	CodeHostWrite          Code = 50 // writing the config, secrets, state or binary failed
	CodeService            Code = 60 // installing, starting or stopping the agent service failed
	CodeProvision          Code = 70 // a provisioning step failed (the substatus names it)
)

var codeNames = map[Code]string{
	CodeHandlerEnvironment: "HandlerEnvironment",
	CodeSequence:           "SequenceNumber",
	CodeSettingsUnreadable: "SettingsUnreadable",
	CodeSettingsNotJSON:    "SettingsNotJSON",
	CodeSettingsCount:      "SettingsCount",
	CodeSettingsTooLarge:   "SettingsTooLarge",
	CodeThumbprintMissing:  "ThumbprintMissing",
	CodeCertificate:        "Certificate",
	CodeDecrypt:            "Decrypt",
	CodeProtectedInvalid:   "ProtectedSettingsInvalid",
	CodeConfigInvalid:      "ConfigInvalid",
	CodeSecretConflict:     "SecretConflict",
	CodeHostWrite:          "HostWrite",
	CodeService:            "Service",
	CodeProvision:          "Provision",
}

// String is the code's name, as the ErrorClarification message.
func (c Code) String() string {
	if n, ok := codeNames[c]; ok {
		return fmt.Sprintf("%s (%d)", n, int(c))
	}
	return fmt.Sprintf("code %d", int(c))
}

// Error is a handler failure with its clarification code.
type Error struct {
	Code Code
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// fail wraps err with a code; an err that already has one keeps it.
func fail(code Code, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Code: code, Err: err}
}

// failf is fail with a formatted error.
func failf(code Code, format string, args ...any) error {
	return &Error{Code: code, Err: fmt.Errorf(format, args...)}
}

// CodeOf returns err's clarification code, CodeHostWrite when it has none
// (an unexpected failure on the host).
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeHostWrite
}
