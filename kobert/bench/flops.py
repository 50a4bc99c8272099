"""The FLOP model: how much work one forward pass (or one GEMM) is, from the config alone."""

from __future__ import annotations

def model_flops(config, batch: int, length: int) -> int:
    """Floating-point operations of one forward pass (a multiply-add counts 2), from the config.

    With H = hidden_size, I = intermediate_size, L = layers, T = tokens per
    sequence, B = batch:
    - per layer and token, the weight matmuls: Q, K, V and the attention output
      (4 of H x H) and the FFN (H x I, then I x H): 2 * (4 H^2 + 2 H I) = 8 H^2 + 4 H I,
      i.e. 2 x the layer's weight count;
    - per layer and sequence, attention itself: scores Q K^T and the weighted sum
      P V, each T x T x H: 2 * 2 * T^2 * H = 4 T^2 H;
    - per sequence, the pooler (2 H^2, when the model has one); the head, 2 H x
      labels per sequence (per token for token classification and QA).
    Total = B * (L * (T * (8 H^2 + 4 H I) + 4 T^2 H) + 2 H^2 + head).
    Not counted (under 1 % at base): embedding lookups, biases, LayerNorm, softmax, GELU.
    KoBERT-base at 1 x 128 with 2 labels: 22.35 GFLOP; at 32 x 128: 715.1 GFLOP.
    """
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_layer = length * (8 * h * h + 4 * h * i) + 4 * length * length * h
    pooler = 2 * h * h if config.has_pooler else 0
    head = 2 * h * config.num_labels * (length if config.head_spec.per_token else 1)
    return batch * (layers * per_layer + pooler + head)


def gemm_flops(m: int, k: int, n: int) -> int:
    return 2 * m * k * n
