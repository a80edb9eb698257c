// Command app is the test workload of the test hosts' pods: an HTTP server that writes to its
// volume at start and is ready once that write is there to read back.
//
//	GET /ready    200 while DATA_DIR/<hostname> holds what this process wrote, else 503
//	GET /healthz  200 while the process serves
//	GET /         JSON: hostname, start time, the lines of DATA_DIR/starts (one per start)
//
// Environment: PORT (default 8080), DATA_DIR (default /data), READY_AFTER_SECONDS (default 0:
// how long after the start /ready stays 503, to make a rollout or a health gate wait).
package main

import (
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func env(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

func main() {
	dataDir := env("DATA_DIR", "/data")
	hostname, _ := os.Hostname()
	started := time.Now().UTC()
	readyAfter, _ := strconv.Atoi(env("READY_AFTER_SECONDS", "0"))
	mark := fmt.Sprintf("%s %s\n", hostname, started.Format(time.RFC3339Nano))
	markPath := filepath.Join(dataDir, hostname)
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		log.Printf("cannot create %s: %v", dataDir, err)
	}
	if err := os.WriteFile(markPath, []byte(mark), 0o644); err != nil {
		log.Printf("cannot write %s: %v", markPath, err)
	}
	if starts, err := os.OpenFile(filepath.Join(dataDir, "starts"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
		_, _ = starts.WriteString(mark)
		_ = starts.Close()
	}

	http.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		data, err := os.ReadFile(markPath)
		switch {
		case err != nil || string(data) != mark:
			http.Error(w, fmt.Sprintf("%s does not hold this start's mark (%v)", markPath, err), http.StatusServiceUnavailable)
		case time.Since(started) < time.Duration(readyAfter)*time.Second:
			http.Error(w, "not ready yet (READY_AFTER_SECONDS)", http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(w, "ready")
		}
	})
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		starts, _ := os.ReadFile(filepath.Join(dataDir, "starts"))
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]interface{}{
			"hostname": hostname, "started": started.Format(time.RFC3339Nano),
			"starts": strings.Split(strings.TrimSpace(string(starts)), "\n"),
		})
	})

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-signals
		os.Exit(0)
	}()
	addr := ":" + env("PORT", "8080")
	log.Printf("serving on %s, data in %s", addr, dataDir)
	log.Fatal(http.ListenAndServe(addr, nil))
}
