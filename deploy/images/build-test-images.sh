#!/usr/bin/env bash
# Builds small test images from Debian's busybox-static as OCI archive tarballs, without
# docker: the layers are tar+gzip files, the config, manifest and index are written here.
#
#   deploy/images/build-test-images.sh OUT_DIR
#
# writes
#   OUT_DIR/busybox.oci.tar  rudder/busybox:test  a shell and the busybox applets (cmd: sh)
#   OUT_DIR/httpd.oci.tar    rudder/httpd:test    the same layer plus serve-hostname, whose
#                            default command serves a page naming the host (the pod) on
#                            ports 80, 3000 and 8010 ($PORTS overrides the list)
#   OUT_DIR/zhidan-server.oci.tar  mydocker.io:5000/zhidan-server:0.1  the sample
#                            application's server (manifests of issue 7): serve-hostname
#                            on ports 80 (its probes) and 3000 (its Service)
#   OUT_DIR/zhidan-web.oci.tar     mydocker.io:5000/zhidan-web:0.1     its web front: ports
#                            80 and 8010
# Import them on a node (the kubelet's image store reads OCI archives and `docker save`
# tarballs), or push them to a registry:
#   skopeo copy --dest-tls-verify=false oci-archive:OUT_DIR/httpd.oci.tar:rudder/httpd:test \
#     docker://127.0.0.1:5000/rudder/httpd:test
#   skopeo copy --dest-tls-verify=false \
#     oci-archive:OUT_DIR/zhidan-web.oci.tar:mydocker.io:5000/zhidan-web:0.1 \
#     docker://127.0.0.1:5000/zhidan-web:0.1
# The output is reproducible: the same busybox gives the same digests.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
out=$1
busybox=/bin/busybox
if [ ! -x "$busybox" ] || ! "$busybox" --list >/dev/null 2>&1; then
  echo "$busybox is missing: install Debian's busybox-static (deploy/install-deps.sh does)" >&2
  exit 1
fi
for tool in tar gzip sha256sum stat; do
  command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# A layer tar of directory $1, reproducible: sorted, root-owned, mtime 0.
make_layer() {
  local dir=$1 tarfile=$2
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=gnu \
    -C "$dir" -cf "$tarfile" .
}

# --- the busybox layer ---------------------------------------------------------------
base=$work/base
mkdir -p "$base"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,var/www,dev,proc,sys,home}
chmod 1777 "$base/tmp"
chmod 700 "$base/root"
cp "$busybox" "$base/bin/busybox"
chmod 755 "$base/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$base/bin/$applet"
done
cat >"$base/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/home:/bin/false
PASSWD
cat >"$base/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
echo 'hosts: files dns' >"$base/etc/nsswitch.conf"

# --- the httpd layer -----------------------------------------------------------------
web=$work/web
mkdir -p "$web/usr/local/bin"
cat >"$web/usr/local/bin/serve-hostname" <<'SERVE'
#!/bin/sh
# Serves a page naming this host on each port in $PORTS (default 80 3000 8010); the
# last one's httpd stays in the foreground as the container's main process.
set -e
ports=${PORTS:-80 3000 8010}
root=${WWW_ROOT:-/tmp/www}
name=$(hostname)
mkdir -p "$root"
printf '<!doctype html>\n<title>%s</title>\n<h1>Hello from %s</h1>\n' "$name" "$name" >"$root/index.html"
last=
for port in $ports; do
  if [ -n "$last" ]; then httpd -p "$last" -h "$root"; fi
  last=$port
done
echo "serving $root as $name on ports $ports"
exec httpd -f -p "$last" -h "$root"
SERVE
chmod 755 "$web/usr/local/bin/serve-hostname"

# --- images --------------------------------------------------------------------------
blobs_of() { echo "$work/layout-$1/blobs/sha256"; }

# add_blob IMAGE FILE -> prints digest hex, stores FILE in the image's layout
add_blob() {
  local image=$1 file=$2 hex
  hex=$(sha "$file")
  mkdir -p "$(blobs_of "$image")"
  cp "$file" "$(blobs_of "$image")/$hex"
  echo "$hex"
}

# build_image IMAGE REF CMD_JSON EXTRA_CONFIG_JSON LAYER_DIR...
build_image() {
  local image=$1 ref=$2 cmd=$3 extra=$4
  shift 4
  local layers_json="" diff_ids_json="" history_json="" dir i=0
  for dir in "$@"; do
    local tarfile=$work/$image-layer$i.tar
    make_layer "$dir" "$tarfile"
    local diff_id
    diff_id=$(sha "$tarfile")
    gzip -n -9 -c "$tarfile" >"$tarfile.gz"
    local hex
    hex=$(add_blob "$image" "$tarfile.gz")
    layers_json+="${layers_json:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$hex\",\"size\":$(size "$tarfile.gz")}"
    diff_ids_json+="${diff_ids_json:+,}\"sha256:$diff_id\""
    history_json+="${history_json:+,}{\"created\":\"1970-01-01T00:00:00Z\",\"created_by\":\"deploy/images/build-test-images.sh: $(basename "$dir")\"}"
    i=$((i + 1))
  done
  local config=$work/$image-config.json
  printf '{"created":"1970-01-01T00:00:00Z","architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":%s,"WorkingDir":"/"%s},"rootfs":{"type":"layers","diff_ids":[%s]},"history":[%s]}' \
    "$cmd" "$extra" "$diff_ids_json" "$history_json" >"$config"
  local config_hex
  config_hex=$(add_blob "$image" "$config")
  local manifest=$work/$image-manifest.json
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
    "$config_hex" "$(size "$config")" "$layers_json" >"$manifest"
  local manifest_hex
  manifest_hex=$(add_blob "$image" "$manifest")
  local layout=$work/layout-$image
  printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest_hex" "$(size "$manifest")" "$ref" >"$layout/index.json"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=gnu \
    -C "$layout" -cf "$out/$image.oci.tar" oci-layout index.json blobs
  echo "$out/$image.oci.tar: $ref (manifest sha256:$manifest_hex, image id sha256:$config_hex)"
}

build_image busybox rudder/busybox:test '["sh"]' '' "$base"
build_image httpd rudder/httpd:test '["/usr/local/bin/serve-hostname"]' \
  ',"ExposedPorts":{"80/tcp":{},"3000/tcp":{},"8010/tcp":{}}' "$base" "$web"
# The sample application's two images share the httpd layers; only the ports differ.
build_image zhidan-server mydocker.io:5000/zhidan-server:0.1 \
  '["/bin/env","PORTS=80 3000","/usr/local/bin/serve-hostname"]' \
  ',"ExposedPorts":{"80/tcp":{},"3000/tcp":{}}' "$base" "$web"
build_image zhidan-web mydocker.io:5000/zhidan-web:0.1 \
  '["/bin/env","PORTS=80 8010","/usr/local/bin/serve-hostname"]' \
  ',"ExposedPorts":{"80/tcp":{},"8010/tcp":{}}' "$base" "$web"
