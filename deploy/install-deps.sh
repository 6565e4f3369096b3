#!/usr/bin/env bash
# Installs what building, testing and running the cluster on this host need, from
# Debian's packages. Safe to run again: it installs only what is missing.
set -euo pipefail

packages=(
  etcd-server        # the cluster's storage (tests start their own etcd processes)
  protobuf-compiler  # protoc, for the API's .proto files and etcd-client's build
  libprotobuf-dev    # google/protobuf/*.proto, which etcd-client's protos import
  curl               # health checks in the bring-up scripts
  iproute2           # ip netns / links for node networking
  nftables           # kube-proxy's rules
  busybox-static     # a tiny userland for test images
  conntrack          # kube-proxy clears stale UDP conntrack entries
  docker-registry    # a loopback registry the image tests pull from
  skopeo             # pushes the test images into it
  openssl            # the image tests' registry certificates
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "Installing: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  # An etcd installed as a package would start as a system service and take port
  # 2379; the project runs its own etcd processes, so keep the packaged one stopped.
  if [ -d /run/systemd/system ] && printf '%s\n' "${missing[@]}" | grep -qx etcd-server; then
    "${sudo_cmd[@]}" mkdir -p /etc/systemd/system
    "${sudo_cmd[@]}" ln -sf /dev/null /etc/systemd/system/etcd.service
  fi
  # Keep apt from starting packaged services on hosts without systemd as well.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee "$policy" >/dev/null
    "${sudo_cmd[@]}" chmod +x "$policy"
    trap '"${sudo_cmd[@]}" rm -f "$policy"' EXIT
  fi
  "${sudo_cmd[@]}" apt-get update -qq || echo "apt-get update failed; trying to install from the current package lists"
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is not installed: install Rust 1.88 or newer with rustup (https://rustup.rs), then run this again." >&2
  exit 1
fi
rust_minor=$(rustc --version | sed -E 's/^rustc 1\.([0-9]+).*/\1/')
if [ "${rust_minor:-0}" -lt 88 ]; then
  echo "rustc $(rustc --version) is too old: this project needs Rust 1.88 or newer (rustup update)." >&2
  exit 1
fi
