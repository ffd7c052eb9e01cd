//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package conncheck

const supported = false

func peek(uintptr) State { return Unknown }
