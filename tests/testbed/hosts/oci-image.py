"""Write a one-layer container image as an OCI image archive (what ``ctr images import`` reads).

The test hosts cannot pull images (their network reaches nothing but the API server), so the
test bed builds its own from static binaries: one gzipped layer tar holding the given files (and
their parent directories), an image config, a manifest and an ``index.json`` that names the image
(``io.containerd.image.name``) for linux/amd64. Everything is made deterministic (owner root,
fixed times, sorted entries), so the same files give the same digests. Standard library only.

Usage: oci-image.py --name REF --out FILE.tar --file SRC:DEST [--file ...] [--entrypoint PATH]
                    [--env K=V ...] [--port N ...]
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

EPOCH = 0
CREATED = "1970-01-01T00:00:00Z"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"


def _info(name, kind, mode, size=0):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def layer_tar(files):
    """The layer as an uncompressed tar: every file of ``files`` (dest -> src path) and its parents."""
    dirs = set()
    for dest in files:
        parts = dest.strip("/").split("/")[:-1]
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(dirs):
            tar.addfile(_info(name + "/", tarfile.DIRTYPE, 0o755))
        for dest in sorted(files):
            src = files[dest]
            with open(src, "rb") as handle:
                data = handle.read()
            mode = 0o755 if os.access(src, os.X_OK) else 0o644
            tar.addfile(_info(dest.strip("/"), tarfile.REGTYPE, mode, len(data)), io.BytesIO(data))
    return buf.getvalue()


def blob(data, media_type, blobs):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def image_archive(name, files, entrypoint=None, env=(), ports=()):
    """The OCI image archive's bytes."""
    raw = layer_tar(files)
    blobs = {}
    layer = blob(gzip.compress(raw, mtime=EPOCH), MEDIA_LAYER, blobs)
    config = {
        "created": CREATED, "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + list(env),
                   "Entrypoint": [entrypoint] if entrypoint else None,
                   "ExposedPorts": {"%d/tcp" % port: {} for port in ports} or None,
                   "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
        "history": [{"created": CREATED, "created_by": "tests/testbed/hosts/oci-image.py"}],
    }
    config["config"] = {k: v for k, v in config["config"].items() if v is not None}
    config_desc = blob(json.dumps(config, sort_keys=True).encode(), MEDIA_CONFIG, blobs)
    manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config_desc, "layers": [layer]}
    manifest_desc = blob(json.dumps(manifest, sort_keys=True).encode(), MEDIA_MANIFEST, blobs)
    manifest_desc["platform"] = {"architecture": "amd64", "os": "linux"}
    manifest_desc["annotations"] = {"io.containerd.image.name": name,
                                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1]}
    index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [manifest_desc]}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = [("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
                   ("index.json", json.dumps(index, sort_keys=True).encode())]
        entries += [("blobs/sha256/" + digest.split(":", 1)[1], data) for digest, data in sorted(blobs.items())]
        for dirname in ("blobs/", "blobs/sha256/"):
            tar.addfile(_info(dirname, tarfile.DIRTYPE, 0o755))
        for path, data in entries:
            tar.addfile(_info(path, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    return out.getvalue(), manifest_desc["digest"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--name", required=True, help="image reference, e.g. kubeops.test/app:v1")
    parser.add_argument("--out", required=True)
    parser.add_argument("--file", action="append", required=True, help="SRC:DEST (repeatable)")
    parser.add_argument("--entrypoint")
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--port", action="append", type=int, default=[])
    args = parser.parse_args(argv)
    files = {}
    for item in args.file:
        src, _sep, dest = item.partition(":")
        if not dest.startswith("/"):
            parser.error("--file %s: DEST must be an absolute path in the image" % item)
        files[dest] = src
    data, digest = image_archive(args.name, files, args.entrypoint, args.env, args.port)
    with open(args.out + ".tmp", "wb") as handle:
        handle.write(data)
    os.replace(args.out + ".tmp", args.out)
    print("%s %s %s" % (args.name, digest, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
