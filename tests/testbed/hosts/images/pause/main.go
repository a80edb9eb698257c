// Command pause is the test hosts' pod sandbox image (containerd's sandbox_image): it holds the
// pod's namespaces, reaps the zombies of a shared PID namespace and exits on SIGINT or SIGTERM,
// as registry.k8s.io/pause does. The hosts cannot pull that image, so the test bed builds this.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 16)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
