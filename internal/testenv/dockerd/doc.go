// Package dockerd gives a test an isolated place for a real engine daemon
// (Host for dockerd, ContainerdHost for containerd): its own socket and
// state folders under a temporary folder, so that it runs beside other
// tests' engines and any engine the machine has, and a cleanup that stops
// every process under it and unmounts what it left mounted. It runs on
// Linux only; elsewhere the package is empty.
package dockerd
