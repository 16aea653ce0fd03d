"""Generated gRPC code lives in pol.v1 (scripts/codegen.py writes it)."""
