#!/usr/bin/env bash
# Build (once) and cache the container images of the "containerd" test hosts, which cannot pull
# any: the pod sandbox image ($PAUSE_IMAGE, containerd's sandbox image) and the test workload
# ($APP_IMAGE: an HTTP server with a /ready endpoint that writes to its volume; see images/app).
# Each is a static Go program in one layer, written as an OCI image archive by oci-image.py;
# build-image.sh imports them into the image's containerd (`ctr -n k8s.io images import`).
#
# Cached under $TESTBED_CACHE/node-images-<key>/ by a hash of images/, oci-image.py and the Go
# version; built in a temp dir renamed into place only when complete.
#
# Usage: build-node-images.sh        prints the directory (pause.tar, app.tar, images.json)
#        build-node-images.sh --dir  prints the directory it would use, builds nothing
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../versions.sh"

step() { printf '[testbed-images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { printf '[testbed-images] FAILED at step: %s\n' "$CURRENT_STEP" >&2; }
trap fail ERR
CURRENT_STEP=start

PAUSE_IMAGE=kubeops.test/pause:v1
APP_IMAGE=kubeops.test/app:v1
RECIPE=1
key=$( (echo "$RECIPE $PAUSE_IMAGE $APP_IMAGE $(go env GOVERSION)"; cat "$HERE/oci-image.py"
        cd "$HERE/images" && find . -type f | LC_ALL=C sort | while read -r f; do echo "$f"; cat "$f"; done) \
      | sha256sum | cut -c1-16)
dir="$TESTBED_CACHE/node-images-$key"
if [[ ${1:-} == --dir ]]; then echo "$dir"; exit 0; fi
if [[ -f "$dir/images.json" ]]; then
  step "cached: $dir"
  echo "$dir"
  exit 0
fi

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$TESTBED_CACHE"
work=$(mktemp -d "$TESTBED_CACHE/.build-images.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/out"
cd "$HERE/images"
for prog in pause app; do
  CURRENT_STEP="go build images/$prog"
  step "$CURRENT_STEP"
  go build -trimpath -ldflags "-s -w" -o "$work/$prog" "./$prog"
done
CURRENT_STEP="write the OCI image archives"
step "$CURRENT_STEP"
python3 "$HERE/oci-image.py" --name "$PAUSE_IMAGE" --out "$work/out/pause.tar" \
  --file "$work/pause:/pause" --entrypoint /pause >&2
python3 "$HERE/oci-image.py" --name "$APP_IMAGE" --out "$work/out/app.tar" \
  --file "$work/app:/app" --entrypoint /app --env DATA_DIR=/data --env PORT=8080 --port 8080 >&2
printf '{"pause": "%s", "app": "%s", "key": "%s"}\n' "$PAUSE_IMAGE" "$APP_IMAGE" "$key" > "$work/out/images.json"
CURRENT_STEP="publish $dir"
rm -rf "$dir"
mv "$work/out" "$dir"
step "built: $dir"
echo "$dir"
