"""What training and the app share: parts, audio front end, network, losses, weights, Embedder."""

from model.parts import EMBED_DIM, N_PARTS, PARTS, SUBSPACE_DIM

__all__ = ["EMBED_DIM", "N_PARTS", "PARTS", "SUBSPACE_DIM"]
