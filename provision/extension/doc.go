// Package extension is Berth's Azure VM extension handler: the
// `berth-agent extension install|enable|disable|uninstall|update` commands
// the guest agent runs, and the observer through which the agent service
// reports its provisioning back to the guest agent.
//
// It keeps the handler contract as WALinuxAgent and the Windows guest agent
// enforce it (docs/extension.md): HandlerEnvironment.json read with retries,
// the sequence number from ConfigSequenceNumber else the newest settings
// file, settings with exactly one runtimeSettings, protected settings
// decrypted from PKCS#7 EnvelopedData with the VM certificate, status files
// written atomically as a JSON array within 128 KB, a heartbeat file, and
// telemetry events in eventsFolder.
//
// enable does only the fast part: it writes the agent's config and secrets,
// installs and starts the agent service, and returns. The service runs the
// provisioning plan and writes the final status through Attach's observer.
package extension
