"""The miner: Algorithm 1 (faithful) and a batched search (fast), and the gRPC client loop."""
