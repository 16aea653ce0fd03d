"""The wire layer both sides share, beside the generated `pol.v1` package (scripts/codegen.py):

  pol.wire      the weights codec (safetensors, canonical order restored) and chunking
  pol.reasons   the service's own refusal reasons, beside pol_core.types.Reason
  pol.status    the one mapping from reasons to gRPC status codes
  pol.client    the typed gRPC client of the verifier service
  pol.genesis   the typed genesis record, its ABI tuple and its JSON
"""
