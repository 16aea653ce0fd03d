"""The verifier service: receives proofs over gRPC, recomputes, attests, serves models."""
