//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package conncheck

import (
	"syscall"
	"unsafe"
)

const supported = true

// peek looks at one byte without consuming it and without blocking. The raw
// syscall avoids syscall.Recvfrom, whose sockaddr out-parameter allocates.
func peek(fd uintptr) State {
	var b [1]byte
	n, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
		uintptr(syscall.MSG_PEEK|syscall.MSG_DONTWAIT), 0, 0)
	switch {
	case errno == syscall.EAGAIN || errno == syscall.EWOULDBLOCK:
		return Quiet
	case errno == syscall.EINTR:
		return Unknown
	case errno != 0:
		return Closed
	case n == 0:
		return Closed
	default:
		return Pending
	}
}
