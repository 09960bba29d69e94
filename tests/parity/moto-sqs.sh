#!/usr/bin/env bash
# Runs moto's SQS tests marked `aws_verified` (checked by moto's authors against real AWS) against
# a running esmd, with boto3 pointed at it through AWS_ENDPOINT_URL_SQS. Not part of `cargo test`:
# it needs a clone of getmoto/moto and the network once, for a virtualenv.
#
# usage: tests/parity/moto-sqs.sh ENDPOINT_URL
#   e.g. MOTO_GIT_DIR=../moto/.git tests/parity/moto-sqs.sh http://127.0.0.1:9324
# environment:
#   MOTO_GIT_DIR  git dir of a getmoto/moto clone (bare or not); its HEAD's tests are used
#   MOTO_VENV     virtualenv with moto, boto3, pytest, freezegun (made on first use;
#                 default ~/.cache/esmd-moto-venv)
#   ACCOUNT_ID    esmd's server.account_id (default 000000000000)
# The tests' own `account_id` fixture asks STS; here it is esmd's account id instead. Nothing else
# of the tests is changed. The last line is pytest's summary ("13 passed, ...").
set -euo pipefail
endpoint=${1:?usage: moto-sqs.sh ENDPOINT_URL}
git_dir=${MOTO_GIT_DIR:?set MOTO_GIT_DIR to a getmoto/moto git dir}
venv=${MOTO_VENV:-${HOME}/.cache/esmd-moto-venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q moto boto3 pytest freezegun
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git --git-dir="$git_dir" archive HEAD tests/__init__.py tests/markers.py tests/test_sqs | tar x -C "$work"
cat > "$work/tests/conftest.py" <<PY
import pytest

@pytest.fixture(scope="function")
def account_id():
    return "${ACCOUNT_ID:-000000000000}"
PY
echo "getmoto/moto $(git --git-dir="$git_dir" rev-parse --short HEAD), endpoint $endpoint"
cd "$work"
MOTO_TEST_ALLOW_AWS_REQUEST=true AWS_ENDPOINT_URL_SQS="$endpoint" \
  AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test} \
  AWS_DEFAULT_REGION=us-east-1 \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider -m aws_verified \
  -W ignore::pytest.PytestUnknownMarkWarning \
  tests/test_sqs/test_sqs.py tests/test_sqs/test_sqs_message_attributes.py \
  tests/test_sqs/test_sqs_multiaccount.py
