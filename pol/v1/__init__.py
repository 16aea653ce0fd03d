"""pol.v1: generated from protos/pol/v1/*.proto by scripts/codegen.py; do not edit *_pb2*.py."""
