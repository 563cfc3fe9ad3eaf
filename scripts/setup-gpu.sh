#!/usr/bin/env bash
# What wgpu needs to find an adapter: a Vulkan loader, and on a machine without a GPU
# Mesa's CPU driver (lavapipe). Machines with a GPU driver already have an ICD and are left
# alone. Needs root (or sudo) only when something is missing.
set -euo pipefail
have_icd() { ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json >/dev/null 2>&1; }
have_loader() { ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; }
if have_icd && have_loader; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "setup-gpu: no Vulkan driver found and no apt-get: install your GPU's Vulkan driver, or Mesa's lavapipe, and libvulkan1" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "==> installing a Vulkan loader and Mesa's CPU driver (lavapipe) for wgpu"
$SUDO apt-get update -qq >/dev/null || true
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
