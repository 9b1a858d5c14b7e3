#!/usr/bin/env sh
# Fetch CIFAR-10, MNIST and Fashion-MNIST into this folder, checked by MD5.
# Usage: datasets/get_datasets.sh [cifar10] [mnist] [fashion-mnist]   (none: all three)
set -e
here="$(cd "$(dirname "$0")" && pwd)"
# $PYTHON if set, else the checkout's virtualenv, else python3 on the PATH.
python="${PYTHON:-}"
if [ -z "$python" ] && [ -x "$here/../.venv/bin/python" ]; then
    python="$here/../.venv/bin/python"
fi
python="${python:-python3}"
cd "$here/.."
exec "$python" -m cs_vit.data.get_datasets --root "$here" "$@"
