#!/usr/bin/env bash
# Installs what the desktop needs on Debian or Ubuntu: a virtual X display (Xvfb), its VNC
# server (x11vnc), input (xdotool), a window manager (openbox), a terminal to type into
# (xterm), the noVNC web client, fonts, and xdpyinfo for troubleshooting.
#
# Idempotent: installs only what is missing, so running it again does nothing.
# Usage: scripts/install-desktop.sh          (as root, or with sudo available)
set -euo pipefail

if ! command -v apt-get >/dev/null; then
  echo "install-desktop: apt-get not found; install these with your package manager:" >&2
  echo "  Xvfb x11vnc xdotool openbox xterm novnc DejaVu fonts xdpyinfo" >&2
  exit 1
fi

need=()
command -v Xvfb >/dev/null || need+=(xvfb)
command -v x11vnc >/dev/null || need+=(x11vnc)
command -v xdotool >/dev/null || need+=(xdotool)
command -v openbox >/dev/null || need+=(openbox)
command -v xterm >/dev/null || need+=(xterm)
command -v xdpyinfo >/dev/null || need+=(x11-utils)
[ -f /usr/share/novnc/vnc.html ] || need+=(novnc)
[ -d /usr/share/fonts/truetype/dejavu ] || need+=(fonts-dejavu-core)

if [ ${#need[@]} -eq 0 ]; then
  echo "install-desktop: everything is already installed"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-desktop: run as root (sudo not found)" >&2; exit 1; }
  sudo=(sudo)
fi

echo "install-desktop: installing ${need[*]}"
"${sudo[@]}" apt-get update -qq
# env, not export: sudo does not pass the caller's environment on.
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${need[@]}"
echo "install-desktop: done; DESKTOP_MODE=auto now starts a shared desktop"
