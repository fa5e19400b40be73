#!/usr/bin/env bash
# Fetches a registered model's weights into DEST, verified, written atomically.
#
#   scripts/fetch-weights.sh NAME [DEST]
#
# NAME: a model of core/models.tsv (the registry; tests check it against core/backbones/model_registry.cc).
# DEST: the weights directory, default $MUSC_WEIGHTS_DIR or ~/.cache/musc-serve/weights. Pass the
#       same directory as the backbone's weights path (musc-bench --weights, product configs).
#
# Order: DEST already holds it → done; else the local mirror $MUSC_WEIGHTS_MIRROR (default
# ../shared/models next to the repository) → copy; else download the official URL with curl.
# Files with a published SHA-256 (OpenAI's CLIP archives) are verified with sha256sum; Meta's
# DINO/DINOv2 files have none published, so they are only size-checked by curl.
# DINO/DINOv2 ship as PyTorch pickles (.pth), which LibTorch 1.13 cannot read: they are converted
# to the registry's .safetensors file when python3 has torch and safetensors; otherwise the
# script prints the one-line conversion to run elsewhere.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
registry="$repo/core/models.tsv"
mirror="$(realpath -m "${MUSC_WEIGHTS_MIRROR:-$repo/../shared/models}")"

die() { echo "fetch-weights: $*" >&2; exit 1; }

usage() {
  echo "usage: scripts/fetch-weights.sh NAME [DEST]" >&2
  echo "models: $(awk -F'\t' '!/^#/ && $1 != "name" {printf "%s ", $1}' "$registry")" >&2
  exit 2
}

[[ $# -ge 1 && $# -le 2 ]] || usage
name="$1"
dest="${2:-${MUSC_WEIGHTS_DIR:-$HOME/.cache/musc-serve/weights}}"

# The registry row, '-' meaning empty. Tabs are not collapsed: every field is non-empty.
row="$(awk -F'\t' -v n="$name" '!/^#/ && $1 == n' "$registry")"
[[ -n "$row" ]] || { echo "fetch-weights: unknown model '$name'" >&2; usage; }
IFS=$'\t' read -r _ kind _ _ _ _ _ _ _ _ _ _ _ weights_file download_file url sha256 <<<"$row"
undash() { [[ "$1" == "-" ]] && echo "" || echo "$1"; }
weights_file="$(undash "$weights_file")"
download_file="$(undash "$download_file")"
url="$(undash "$url")"
sha256="$(undash "$sha256")"

if [[ "$kind" == "vit-random" ]]; then
  echo "$name uses seeded random weights: nothing to fetch."
  exit 0
fi

mkdir -p "$dest"
tmp_files=()
# shellcheck disable=SC2317  # Called by the EXIT trap.
cleanup() { ((${#tmp_files[@]})) && rm -rf "${tmp_files[@]}"; return 0; }
trap cleanup EXIT
staging=""
new_staging() {  # A temporary path in DEST (so that the final rename is atomic) in $staging.
  staging="$(mktemp -p "$dest" ".fetch-weights.XXXXXX")"
  tmp_files+=("$staging")
}

checksum_note() {
  if [[ -n "$sha256" ]]; then
    echo "expected SHA-256: $sha256 (check with: sha256sum $download_file)"
  else
    echo "no official SHA-256 is published for this file"
  fi
}

verify() {  # verify FILE [SOURCE]: the published SHA-256, when there is one.
  [[ -z "$sha256" ]] && return 0
  local got
  got="$(sha256sum "$1" | cut -d' ' -f1)"
  [[ "$got" == "$sha256" ]] ||
    die "${2:-$1}: SHA-256 $got, expected $sha256 (corrupt or not the official $download_file)"
}

offline_help() {
  cat >&2 <<EOF
fetch-weights: could not download $name (no internet access here?).
  On a machine with internet access, download
    $url
  $(checksum_note)
  and put $download_file in the mirror directory
    $mirror
  (or set MUSC_WEIGHTS_MIRROR to where you put it), then run this script again; or place it
  directly in $dest.
EOF
  exit 1
}

download() {  # download URL OUT
  curl -fL --retry 2 --connect-timeout 15 --progress-bar -o "$2" "$1"
}

# --- darknet-tiny: a folder of TensorFlow.js files -----------------------------------------------
if [[ "$kind" == "darknet" ]]; then
  target="$dest/$weights_file"
  if [[ -f "$target/model.json" ]]; then
    echo "$target already present."
    exit 0
  fi
  new_staging
  rm -f "$staging" && mkdir -p "$staging"
  if [[ -f "$mirror/$weights_file/model.json" ]]; then
    echo "copying $weights_file from mirror $mirror"
    cp -R "$mirror/$weights_file/." "$staging/"
  else
    echo "downloading $name from $url"
    download "$url$download_file" "$staging/model.json" || offline_help
    # The weight shards are named in model.json's weightsManifest.
    for shard in $(grep -o '"group[0-9]*-shard[0-9]*of[0-9]*"' "$staging/model.json" | tr -d '"'); do
      download "$url$shard" "$staging/$shard" || offline_help
    done
  fi
  chmod -R u+w,go+rX "$staging"
  rm -rf "$target"
  mv "$staging" "$target"
  echo "$name: $target"
  exit 0
fi

# --- ViTs: one file -------------------------------------------------------------------------------
target="$dest/$weights_file"
if [[ -f "$target" ]]; then
  [[ "$weights_file" == "$download_file" ]] && verify "$target"
  echo "$target already present."
  exit 0
fi

official="$dest/$download_file"
if [[ ! -f "$official" ]]; then
  new_staging
  if [[ -f "$mirror/$weights_file" ]]; then
    echo "copying $weights_file from mirror $mirror"
    cp "$mirror/$weights_file" "$staging"
    [[ "$weights_file" == "$download_file" ]] && verify "$staging" "$mirror/$weights_file"
    chmod 0644 "$staging"
    mv "$staging" "$target"
    echo "$name: $target"
    exit 0
  elif [[ -f "$mirror/$download_file" ]]; then
    echo "copying $download_file from mirror $mirror"
    cp "$mirror/$download_file" "$staging"
    verify "$staging" "$mirror/$download_file"
  else
    echo "downloading $name from $url"
    download "$url" "$staging" || offline_help
    verify "$staging" "download of $url"
  fi
  chmod 0644 "$staging"
  mv "$staging" "$official"
fi

if [[ "$weights_file" == "$download_file" ]]; then
  echo "$name: $target"
  exit 0
fi

# DINO / DINOv2: convert the official state_dict pickle to safetensors (names and values as they
# are; the loader understands the original naming).
convert_cmd="import sys, torch; from safetensors.torch import save_file; \
sd = torch.load(sys.argv[1], map_location='cpu'); \
save_file({k: v.contiguous() for k, v in sd.items()}, sys.argv[2])"
if python3 -c "import torch, safetensors" 2>/dev/null; then
  new_staging
  echo "converting $download_file to $weights_file"
  python3 -c "$convert_cmd" "$official" "$staging"
  chmod 0644 "$staging"
  mv "$staging" "$target"
  echo "$name: $target"
  exit 0
fi
cat >&2 <<EOF
fetch-weights: $official is a PyTorch pickle, which LibTorch 1.13 cannot read, and python3 here
has no torch + safetensors to convert it. On a machine with both (pip install torch safetensors):
  python3 -c "$convert_cmd" $download_file $weights_file
then put $weights_file in $dest (or in the mirror $mirror).
EOF
exit 3
