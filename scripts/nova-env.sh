#!/usr/bin/env bash
# Build the separate virtualenv for the real-Nova test tier (tests/nova/): Nova and Placement with what
# Nova's functional-test base class needs. Nova pins its own stack (eventlet, oslo.*, SQLAlchemy < 2.1), so it
# never shares .venv with Forewarn. Usage: scripts/nova-env.sh [VENV]   (default: .venv-nova beside this repo's .venv)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$here/.venv-nova}"
python="${PYTHON:-python3.11}"
uv="$here/.venv/bin/uv"
if [ ! -x "$venv/bin/python" ]; then
    "$uv" venv --python "$python" "$venv"
fi
# pyopenssl: left alone, the resolver pairs pyopenssl 22 with cryptography 51, which fails at import
# (`module 'lib' has no attribute 'GEN_EMAIL'`).
"$uv" pip install --python "$venv/bin/python" \
    'nova==34.0.0' openstack-placement \
    'SQLAlchemy<2.1' 'pyopenssl>=25' \
    fixtures testtools oslotest testscenarios testresources ddt wsgi-intercept requests-mock \
    osprofiler python-barbicanclient os-traits os-resource-classes \
    pytest openstacksdk boto3 pydantic pandas pydantic-settings tenacity
# Forewarn itself, without its heavy optional stack: the adapter only needs openstacksdk and pydantic.
"$uv" pip install --python "$venv/bin/python" --no-deps -e "$here"
echo "nova tier ready: $venv"
